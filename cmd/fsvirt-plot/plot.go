package main

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strconv"

	"github.com/fsvirt/fsvirt/internal/bench"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// drawFigures draws the research's figures into dir and returns their file names: for each
// thread count, mean time per invocation against executions, one figure per workload and one line
// per mode; peak memory per mode; and throughput against supervisor threads.
func drawFigures(dir string, rep bench.Figures) ([]string, error) {
	var names []string
	save := func(p *plot.Plot, name string, w, h vg.Length) error {
		if err := p.Save(w, h, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("figure %s: %w", name, err)
		}
		names = append(names, name)
		return nil
	}
	for _, t := range rep.Threads {
		for _, wl := range rep.Workloads {
			p := plot.New()
			p.Title.Text = fmt.Sprintf("%s, %d threads", wl, t)
			p.X.Label.Text = "executions"
			p.Y.Label.Text = "mean time per invocation (µs)"
			p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, logTicks{}
			p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, logTicks{}
			p.Legend.Top, p.Legend.Left = true, true
			var lines []any
			for _, mode := range rep.Modes {
				var pts plotter.XYs
				for _, n := range rep.Executions {
					if r := bench.FindRow(rep.Rows, mode, wl, t, n); r != nil && r.Mean > 0 {
						pts = append(pts, plotter.XY{X: float64(n), Y: float64(r.Mean) / 1e3})
					}
				}
				if len(pts) > 0 {
					lines = append(lines, mode, pts)
				}
			}
			if len(lines) == 0 {
				continue
			}
			if err := plotutil.AddLinePoints(p, lines...); err != nil {
				return names, err
			}
			// Room above the lines for the legend, and around a single execution count.
			p.Y.Max *= 30
			p.X.Min, p.X.Max = p.X.Min/1.5, p.X.Max*1.5
			if err := save(p, fmt.Sprintf("time-%s-t%d.png", wl, t), 6*vg.Inch, 4.5*vg.Inch); err != nil {
				return names, err
			}
		}
		if err := memoryFigure(rep, t, save); err != nil {
			return names, err
		}
	}
	if len(rep.Scaling) > 0 {
		p := plot.New()
		r0 := rep.Scaling[0]
		p.Title.Text = fmt.Sprintf("supervisor threads: %s, %s, %d workers", r0.Mode, r0.Workload, r0.Threads)
		p.X.Label.Text = "supervisor threads"
		p.Y.Label.Text = "invocations per second"
		var pts plotter.XYs
		for _, r := range rep.Scaling {
			pts = append(pts, plotter.XY{X: float64(r.Supervisors), Y: r.Throughput})
		}
		p.Y.Min = 0
		if err := plotutil.AddLinePoints(p, "throughput", pts); err != nil {
			return names, err
		}
		if err := save(p, "supervisors.png", 5*vg.Inch, 3.5*vg.Inch); err != nil {
			return names, err
		}
	}
	return names, nil
}

// memoryFigure draws, for each mode, the largest peak RSS of the bench process and of one
// invocation's process over the workloads at t threads.
func memoryFigure(rep bench.Figures, t int, save func(*plot.Plot, string, vg.Length, vg.Length) error) error {
	var names []string
	var self, child plotter.Values
	for _, mode := range rep.Modes {
		var s, c int64
		found := false
		for _, r := range rep.Rows {
			if r.Mode == mode && r.Threads == t {
				s, c, found = max(s, r.PeakRSSKiB), max(c, r.ChildRSSKiB), true
			}
		}
		if found {
			names = append(names, mode)
			self = append(self, float64(s)/1024)
			child = append(child, float64(c)/1024)
		}
	}
	if len(names) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("peak memory per mode, %d threads", t)
	p.Y.Label.Text = "peak RSS (MiB)"
	w := vg.Points(14)
	bs, err := plotter.NewBarChart(self, w)
	if err != nil {
		return err
	}
	bs.Color, bs.Offset = color.RGBA{R: 60, G: 110, B: 200, A: 255}, -w/2
	bc, err := plotter.NewBarChart(child, w)
	if err != nil {
		return err
	}
	bc.Color, bc.Offset = color.RGBA{R: 230, G: 140, B: 40, A: 255}, w/2
	p.Add(bs, bc)
	p.Legend.Add("bench process", bs)
	p.Legend.Add("one invocation's process", bc)
	p.Legend.Top = true
	p.NominalX(names...)
	p.Y.Max *= 1.3 // room for the legend
	return save(p, fmt.Sprintf("memory-t%d.png", t), 7*vg.Inch, 4*vg.Inch)
}

// logTicks labels 1, 2 and 5 times each power of ten, so that a log axis spanning less than a
// decade still has labels.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	if lo <= 0 || hi <= lo {
		return ticks
	}
	for p := math.Pow(10, math.Floor(math.Log10(lo))); p <= hi; p *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := m * p; v >= lo && v <= hi {
				ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
			}
		}
	}
	return ticks
}
