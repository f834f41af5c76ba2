package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/fsvirt/fsvirt/impl"
	"github.com/fsvirt/fsvirt/internal/notify"
)

func cmdSyscalls(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("syscalls", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: fsvirt syscalls [--json]\n\nPrints the x86-64 syscall table fsvirt's filter is built from: name, number, and\nhow each is handled (virtualized, passed, denied with an errno). Syscalls not listed are\npassed; syscalls of other architectures (i386, x32) are denied with ENOSYS.")
			return nil
		}
		return fmt.Errorf("syscalls: %v", err)
	}
	rows := impl.Syscalls()
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tNR\tHANDLING\tNOTE")
	for _, r := range rows {
		h := r.Handling
		if r.Errno != "" {
			h += " (" + r.Errno + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Name, r.Nr, h, r.Note)
	}
	fmt.Fprintln(tw, "(other)\t-\tpassed\t")
	fmt.Fprintln(tw, "(i386, x32)\t-\tdenied (ENOSYS)\tnon-native architectures")
	return tw.Flush()
}

func cmdFeatures(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		fmt.Fprintln(stdout, "Usage: fsvirt features\n\nPrints the kernel release and, for each optional kernel feature, whether fsvirt uses it,\nand the Landlock ABI version the kernel has (0: none).\nFSVIRT_DISABLE=name,... turns features off (to exercise fallbacks).")
		return nil
	}
	fmt.Fprintf(stdout, "kernel %s\n", notify.KernelRelease())
	notify.Features().Each(func(name string, on bool) {
		fmt.Fprintf(stdout, "%s=%s\n", name, map[bool]string{true: "on", false: "off"}[on])
	})
	fmt.Fprintf(stdout, "landlock-abi=%d\n", notify.Features().LandlockABI)
	if err := notify.ProbeError(); err != nil {
		return err
	}
	return notify.Require()
}
