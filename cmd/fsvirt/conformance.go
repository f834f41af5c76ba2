package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/fsvirt/fsvirt/conformance"
	"github.com/fsvirt/fsvirt/conformance/driver"
)

const conformanceUsage = `Usage: fsvirt conformance [flags]

Runs the conformance suite: every case (a starting tree, a script of file-system operations, what
they must observe) runs in the implementation under test, in a fresh private view of a shared
directory, and on a private full copy of it (the reference). A case passes when the observations
are the reference's, the case's own expectations hold, and the shared directory is unchanged.
Isolation cases run two views at once and check that neither sees the other.

Flags:
  --impl NAME       a built-in implementation (repeatable; "all": every one available here):
%s  --impl-cmd CMD    any implementation as a command prefix, a shell fragment that runs the
                    appended command in a fresh private view of {dir}; {tmp} is a fresh empty
                    directory outside it (repeatable). Example: 'fsvirt run --tree {dir} --'
  --cases DIR       run the *.json cases in DIR instead of the built-in ones
  --run REGEXP      run only the cases whose category/name matches
  --json            print one JSON report per implementation instead of text
  --table           after the reports, print a Markdown table: passed/total per category

Without --impl or --impl-cmd, the implementation is fsvirt. Output per implementation: cases
passed and failed by category, each failure, and "NAME: N passed, M failed"; then the totals,
"N passed, M failed". Exit status 1 when a case failed. docs/conformance.md has the case format
and recipes for other implementations.
`

func cmdConformance(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "driver" { // what the suite runs inside an implementation
		if code := driver.Main(ctx, args[1:], os.Stdin, stdout, stderr); code != 0 {
			return exitError{code}
		}
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("conformance: %w", err)
	}
	driverArgv := []string{exe, "conformance", "driver"}
	builtins := conformance.Builtins(driverArgv)

	fs := flag.NewFlagSet("conformance", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var impls, cmds stringList
	fs.Var(&impls, "impl", "")
	fs.Var(&cmds, "impl-cmd", "")
	casesDir := fs.String("cases", "", "")
	match := fs.String("run", "", "")
	asJSON := fs.Bool("json", false, "")
	table := fs.Bool("table", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var names strings.Builder
			for _, b := range builtins {
				fmt.Fprintf(&names, "                      %-15s %s\n", b.Name, b.Doc)
			}
			fmt.Fprintf(stdout, conformanceUsage, names.String())
			return nil
		}
		return fmt.Errorf("conformance: %v (see fsvirt conformance --help)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("conformance: unexpected argument %q (see fsvirt conformance --help)", fs.Arg(0))
	}
	if len(impls) == 0 && len(cmds) == 0 {
		impls = stringList{"fsvirt"}
	}

	type target struct {
		name    string
		factory conformance.Factory
		avail   func(context.Context) error
	}
	var targets []target
	for _, name := range impls {
		found := false
		for _, b := range builtins {
			if name == b.Name || name == "all" {
				targets = append(targets, target{b.Name, b.New, b.Available})
				found = true
			}
		}
		if !found {
			return fmt.Errorf("conformance: --impl %q: no such implementation (see fsvirt conformance --help)", name)
		}
	}
	for _, cmd := range cmds {
		targets = append(targets, target{cmd, conformance.Command(cmd, driverArgv), nil})
	}

	cases, err := conformance.Cases()
	if *casesDir != "" {
		cases, err = conformance.LoadCases(*casesDir)
	}
	if err != nil {
		return fmt.Errorf("conformance: %w", err)
	}
	if *match != "" {
		re, err := regexp.Compile(*match)
		if err != nil {
			return fmt.Errorf("conformance: --run: %w", err)
		}
		cases = filterCases(cases, re)
	}
	suite, err := conformance.NewSuite(cases)
	if err != nil {
		return fmt.Errorf("conformance: %w", err)
	}
	defer suite.Close()

	var reports []*conformance.Report
	passed, failed := 0, 0
	for _, t := range targets {
		rep := &conformance.Report{Impl: t.name}
		if t.avail != nil {
			if err := t.avail(ctx); err != nil {
				rep.Skipped = oneLine(err)
			}
		}
		if rep.Skipped == "" {
			if rep, err = suite.CheckAll(ctx, t.name, t.factory); err != nil {
				return fmt.Errorf("conformance: %w", err)
			}
		}
		reports = append(reports, rep)
		passed, failed = passed+rep.Passed, failed+rep.Failed
		if *asJSON {
			b, err := json.Marshal(rep)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s\n", b)
			continue
		}
		if err := rep.WriteText(stdout); err != nil {
			return err
		}
	}
	if *table {
		fmt.Fprintln(stdout)
		if err := conformance.WriteTable(stdout, reports); err != nil {
			return err
		}
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	}
	if failed > 0 {
		return exitError{1}
	}
	return nil
}

func filterCases(cases []*driver.Case, re *regexp.Regexp) []*driver.Case {
	var out []*driver.Case
	for _, c := range cases {
		if re.MatchString(c.Category + "/" + c.Name) {
			out = append(out, c)
		}
	}
	return out
}
