package conformance

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/fsvirt/fsvirt/conformance/driver"
)

//go:embed testdata/cases/*.json
var builtinCases embed.FS

// Cases returns the built-in cases, by category in the order of
// [driver.Categories], then by name.
func Cases() ([]*driver.Case, error) {
	sub, err := fs.Sub(builtinCases, "testdata/cases")
	if err != nil {
		return nil, err
	}
	return loadCases(sub)
}

// LoadCases reads every *.json case in dir.
func LoadCases(dir string) ([]*driver.Case, error) {
	return loadCases(os.DirFS(dir))
}

func loadCases(fsys fs.FS) ([]*driver.Case, error) {
	files, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.json cases")
	}
	var cases []*driver.Case
	names := map[string]bool{}
	for _, f := range files {
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		c, err := driver.ParseCase(strings.TrimSuffix(path.Base(f), ".json"), data)
		if err != nil {
			return nil, err
		}
		if names[c.Name] {
			return nil, fmt.Errorf("case %s: name used twice", c.Name)
		}
		names[c.Name] = true
		cases = append(cases, c)
	}
	slices.SortStableFunc(cases, func(a, b *driver.Case) int {
		if d := slices.Index(driver.Categories, a.Category) - slices.Index(driver.Categories, b.Category); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	return cases, nil
}
