package bench

import (
	"encoding/json"
	"fmt"
	"io"
)

// FiguresFile is the file, in fsvirt bench's --out directory, that cmd/fsvirt-plot draws the
// figures from. The plotting library stays out of fsvirt itself: every fsvirt run, and the
// fsvirt-init it re-executes, would otherwise load it.
const FiguresFile = "figures.json"

// Figures is what the figures show of a Report.
type Figures struct {
	Threads    []int
	Executions []int
	Workloads  []string
	Modes      []string // the modes that were run or tried, in the report's order
	Rows       []Row
	Scaling    []Row
}

// FiguresOf extracts from rep what the figures show.
func FiguresOf(rep *Report) Figures {
	f := Figures{Threads: rep.Config.Threads, Executions: rep.Config.Executions, Rows: rep.Rows,
		Scaling: rep.Scaling}
	for _, w := range rep.Config.Workloads {
		f.Workloads = append(f.Workloads, w.Name)
	}
	for _, st := range rep.Modes {
		f.Modes = append(f.Modes, st.Mode.Name)
	}
	return f
}

// WriteFigures writes f as JSON.
func WriteFigures(w io.Writer, f Figures) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(f)
}

// ReadFigures reads what WriteFigures wrote.
func ReadFigures(r io.Reader) (Figures, error) {
	var f Figures
	if err := json.NewDecoder(r).Decode(&f); err != nil {
		return f, fmt.Errorf("%s: %w", FiguresFile, err)
	}
	if len(f.Threads) == 0 || len(f.Workloads) == 0 {
		return f, fmt.Errorf("%s: no thread counts or workloads: not written by fsvirt bench", FiguresFile)
	}
	return f, nil
}

// WriteFigureLinks writes the summary's section that shows the figures named.
func WriteFigureLinks(w io.Writer, names []string) error {
	if len(names) == 0 {
		return nil
	}
	_, err := fmt.Fprintf(w, "\n## Figures\n\n")
	for _, n := range names {
		if err == nil {
			_, err = fmt.Fprintf(w, "![%s](%s)\n", n, n)
		}
	}
	return err
}
