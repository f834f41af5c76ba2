// Command fsvirt-plot draws the figures of an fsvirt bench run from the figures.json it wrote,
// and links them from its summary.md. It is a program of its own so that fsvirt, which every
// `fsvirt run` and its re-executed fsvirt-init start in full, does not carry the plotting library.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsvirt/fsvirt/internal/bench"
)

const usage = `Usage: fsvirt-plot DIR

Draws the figures of the fsvirt bench run whose results are in DIR (its --out directory) from
DIR/figures.json: for each thread count, mean time per invocation against executions (one
figure per workload, one line per mode) and peak memory per mode; and throughput against
supervisor threads. Writes them into DIR as PNG files and adds a "Figures" section that shows
them to DIR/summary.md (once).

Example:
  fsvirt bench --quick --out /tmp/bench && fsvirt-plot /tmp/bench
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "fsvirt-plot: %v\n", err)
		os.Exit(2)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if len(args) != 1 {
		return errors.New("want one argument, the directory of an fsvirt bench run (see --help)")
	}
	dir := args[0]
	f, err := os.Open(filepath.Join(dir, bench.FiguresFile))
	if err != nil {
		return err
	}
	figs, err := bench.ReadFigures(f)
	f.Close()
	if err != nil {
		return err
	}
	names, err := drawFigures(dir, figs)
	if err != nil {
		return err
	}
	summary := filepath.Join(dir, "summary.md")
	if md, err := os.ReadFile(summary); err == nil && !strings.Contains(string(md), "\n## Figures\n") {
		sf, err := os.OpenFile(summary, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		err = bench.WriteFigureLinks(sf, names)
		if cerr := sf.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	for _, n := range names {
		fmt.Fprintln(stdout, filepath.Join(dir, n))
	}
	return nil
}
