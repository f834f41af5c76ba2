package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fsvirt/fsvirt/impl"
	"github.com/fsvirt/fsvirt/internal/layer"
	"golang.org/x/sys/unix"
)

// jsonSchema is the version of run's --json output (docs/json.md, docs/fsvirt-run.schema.json).
// It changes when a field changes meaning or goes; a field added does not change it.
const jsonSchema = 1

// summary is the --json output of run.
type summary struct {
	Schema int `json:"schema"`
	// Outcome is "exited" (ExitStatus is the command's), "signaled" (a signal killed it:
	// Signal; ExitStatus 128+Signal), "not_run" (it could not be executed: 126, or 127 not
	// found; Error says why) or "failed" (fsvirt failed: 125; Error says why).
	Outcome    string `json:"outcome"`
	ExitStatus int    `json:"exit_status"` // fsvirt's own exit status
	Signal     int    `json:"signal,omitempty"`
	SignalName string `json:"signal_name,omitempty"`
	Error      string `json:"error,omitempty"`

	Changes []change `json:"changes"`
	// Present once the view ran.
	Calls       *map[string]int `json:"calls,omitempty"` // a pointer: {} is written, not left out
	CopyUps     *int            `json:"copy_ups,omitempty"`
	BytesCopied *int64          `json:"bytes_copied,omitempty"`
	Usage       *impl.Usage     `json:"usage,omitempty"`
	Limits      *limitsJSON     `json:"limits,omitempty"` // absent: none

	Keep  string     `json:"keep,omitempty"`  // --keep DIR
	Layer string     `json:"layer,omitempty"` // --layer DIR
	Apply *applyJSON `json:"apply,omitempty"` // --apply, once attempted
}

// limitsJSON are --max-bytes and --max-files; 0: not bounded.
type limitsJSON struct {
	Bytes int64 `json:"bytes"`
	Files int64 `json:"files"`
}

// change is one changed path; Kind is "added", "modified" or "deleted".
type change struct {
	Kind string `json:"kind"`
	Path string `json:"path"`
}

type applyJSON struct {
	Applied   bool           `json:"applied"`
	Conflicts []conflictJSON `json:"conflicts"`
}

type conflictJSON struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// fill takes what the view did from res.
func (s *summary) fill(res *impl.Result) {
	for _, c := range res.Changes {
		s.Changes = append(s.Changes, change{Kind: layer.KindWord(c.Kind), Path: c.Path})
	}
	calls := res.Stats.Calls
	if calls == nil {
		calls = map[string]int{}
	}
	s.Calls = &calls
	s.CopyUps, s.BytesCopied = &res.Stats.CopyUps, &res.Stats.BytesCopied
	u := res.Usage
	s.Usage = &u
}

// jsonOut is where --json, --json-fd and --json-file send the summary.
type jsonOut struct {
	w    []io.Writer
	file string
}

// newJSONOut checks the destinations before the command runs: a descriptor that is not open,
// or a file in a directory that does not exist, is refused then rather than after the run.
func newJSONOut(toStderr bool, fd int, file string, stderr io.Writer) (*jsonOut, error) {
	o := &jsonOut{file: file}
	if toStderr {
		o.w = append(o.w, stderr)
	}
	if fd != -1 {
		if fd < 0 {
			return nil, fmt.Errorf("--json-fd %d: not a descriptor number", fd)
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return nil, fmt.Errorf("--json-fd %d: not an open descriptor (%v)", fd, err)
		}
		o.w = append(o.w, os.NewFile(uintptr(fd), "json-fd"))
	}
	if file != "" {
		fi, err := os.Stat(filepath.Dir(file))
		if err == nil && !fi.IsDir() {
			err = errors.New("not a directory")
		}
		if err != nil {
			return nil, fmt.Errorf("--json-file %s: its directory: %v", file, err)
		}
	}
	return o, nil
}

// emit writes s, completed with the outcome that res and err (cmdRun's) say, as one line to
// every destination; the file is written aside and renamed into place.
func (o *jsonOut) emit(s *summary, res *impl.Result, err error) {
	if len(o.w) == 0 && o.file == "" {
		return
	}
	var ee exitError
	switch {
	case err == nil:
		s.Outcome, s.ExitStatus = "exited", 0
	case errors.As(err, &ee) && res != nil && res.NotRun != "":
		s.Outcome, s.ExitStatus, s.Error = "not_run", ee.code, res.NotRun
	case errors.As(err, &ee) && res != nil && res.Signal != 0:
		s.Outcome, s.ExitStatus, s.Signal, s.SignalName = "signaled", ee.code, res.Signal, signalName(res.Signal)
		s.Error = res.Stopped // why fsvirt killed it, if it did
	case errors.As(err, &ee) && res != nil:
		s.Outcome, s.ExitStatus = "exited", ee.code
	case errors.As(err, &ee): // the command was not found or cannot be executed
		s.Outcome, s.ExitStatus = "not_run", ee.code
	default:
		s.Outcome, s.ExitStatus, s.Error = "failed", impl.ExitFailure, oneLine(err)
	}
	b, _ := json.Marshal(s)
	b = append(b, '\n')
	for _, w := range o.w {
		w.Write(b)
	}
	if o.file != "" {
		tmp := o.file + ".tmp"
		if os.WriteFile(tmp, b, 0o644) == nil {
			os.Rename(tmp, o.file)
		}
	}
}

func signalName(n int) string {
	if name := unix.SignalName(unix.Signal(n)); name != "" {
		return name
	}
	return fmt.Sprintf("SIG%d", n)
}
