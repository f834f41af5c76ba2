package bench

import (
	"math"
	"slices"
	"time"
)

// Summary describes a sample of invocation times.
type Summary struct {
	N              int
	Mean, P50, P99 time.Duration
	Min, Max       time.Duration
}

// Summarize computes the summary of ds, which it sorts in place. Percentiles are nearest-rank:
// the smallest value with at least p% of the sample at or below it.
func Summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	slices.Sort(ds)
	var sum float64
	for _, d := range ds {
		sum += float64(d)
	}
	return Summary{
		N:    len(ds),
		Mean: time.Duration(math.Round(sum / float64(len(ds)))),
		P50:  Percentile(ds, 50),
		P99:  Percentile(ds, 99),
		Min:  ds[0],
		Max:  ds[len(ds)-1],
	}
}

// Percentile returns the nearest-rank p-th percentile of sorted, 0 < p <= 100.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Ratio is a/b, or NaN when b is not positive.
func Ratio(a, b float64) float64 {
	if b <= 0 {
		return math.NaN()
	}
	return a / b
}
