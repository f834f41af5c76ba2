package propcheck

import (
	"fmt"

	"github.com/fsvirt/fsvirt"
	"github.com/fsvirt/fsvirt/model"
)

// Step runs op in inv on the shadow model, sut and ref, as [Run] does at
// every step, and returns sut's outcome, the outcome it must equal and a note
// on how the model says the view serves op. The outcome to equal is ref's, or
// the model's prediction when op uses a stale fd (see [model.Decision]): the
// model, not the reference, is the specification there. When the model says
// op's outcome is not part of the contract ([model.Model.Defined]), Step runs
// nothing and returns defined false with the reason in note.
func Step(shadow *model.Model, sut, ref fsvirt.FS, inv fsvirt.Inv, op fsvirt.Op) (got, want fsvirt.Outcome, note string, defined bool) {
	if !shadow.Defined(inv, op) {
		return got, want, "undefined", false
	}
	predicted, dec := shadow.Apply(inv, op)
	got, want = sut.Do(inv, op), ref.Do(inv, op)
	note = dec.Mapping.String()
	if dec.Stale {
		want, note = predicted, note+", stale fd: compared with the model"
	}
	return got, want, note, true
}

// DiffViews probes inv's whole view in sut and in ref, as [Run]'s invariant
// check does (getcwd, then every entry's lstat, listing, content, symlink
// target and, with xattrs, extended attributes), and describes the first
// difference. The probe opens and closes handles, and changes nothing.
func DiffViews(sut, ref fsvirt.FS, inv fsvirt.Inv, xattrs bool) error {
	got, want := probe(sut, inv, xattrs), probe(ref, inv, xattrs)
	for i := range max(len(got), len(want)) {
		if i >= len(got) || i >= len(want) || got[i] != want[i] {
			return fmt.Errorf("inv %d: views differ at probe %d:\n  sut: %s\n  ref: %s", inv, i, at(got, i), at(want, i))
		}
	}
	return nil
}
