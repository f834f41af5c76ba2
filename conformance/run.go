package conformance

import (
	"context"
	"io"
	"testing"
)

// Run checks the implementation f makes against the built-in cases, one
// subtest per case, and fails the test for every case that fails.
func Run(t *testing.T, f Factory) {
	t.Helper()
	cases, err := Cases()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSuite(cases)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	im, err := f(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if cl, ok := im.(io.Closer); ok {
		t.Cleanup(func() {
			if err := cl.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	for _, c := range cases {
		t.Run(c.Category+"/"+c.Name, func(t *testing.T) {
			for _, f := range s.Check(context.Background(), im, c).Failures {
				t.Error(f)
			}
		})
	}
}
