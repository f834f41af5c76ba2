package vmtest

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// libDirs are where the host's dynamic loader finds libraries (Debian, amd64, merged /usr).
var libDirs = []string{"/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib"}

// toolEntry is one file the VM gets from the host: a symlink when target is set, else a copy
// of the host file at src.
type toolEntry struct {
	name, src, target string
}

// hostTools returns what the VM needs to run the host programs at paths: each program at its
// path, symlinks with their absolute targets, and the shared libraries of ELF programs (their
// loader and DT_NEEDED entries, transitively) at their real paths, with /etc/ld.so.cache.
func hostTools(paths []string) ([]toolEntry, error) {
	var out []toolEntry
	seen := map[string]bool{}
	var add func(p string) error
	add = func(p string) error {
		if seen[vmPath(p)] { // /bin/cp and /usr/bin/cp are one file on Debian and in the VM
			return nil
		}
		seen[vmPath(p)] = true
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return err
			}
			out = append(out, toolEntry{name: p, target: real})
			return add(real)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", p)
		}
		out = append(out, toolEntry{name: p, src: p})
		libs, err := elfDeps(p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, lib := range libs {
			if err := add(lib); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("host tool %q: not an absolute path", p)
		}
		if err := add(filepath.Clean(p)); err != nil {
			return nil, fmt.Errorf("host tool: %w", err)
		}
	}
	if len(out) > 0 {
		if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
			out = append(out, toolEntry{name: "/etc/ld.so.cache", src: "/etc/ld.so.cache"})
		}
	}
	return out, nil
}

// inRealDir returns p with its directory's symlinks resolved (/lib/x/libc.so.6 becomes
// /usr/lib/x/libc.so.6 on a merged /usr), keeping its last element, which may be a symlink the
// loader looks up by name.
func inRealDir(p string) (string, error) {
	dir, err := filepath.EvalSymlinks(filepath.Dir(p))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(p)), nil
}

// elfDeps returns the paths of the loader and libraries the ELF file p needs, or nothing when p
// is not ELF (a script).
func elfDeps(p string) ([]string, error) {
	f, err := elf.Open(p)
	var fe *elf.FormatError
	if errors.As(err, &fe) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var deps []string
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return nil, err
		}
		interp, err := inRealDir(string(b[:len(b)-1])) // NUL-terminated
		if err != nil {
			return nil, fmt.Errorf("loader: %w", err)
		}
		deps = append(deps, interp)
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return nil, err
	}
	for _, name := range needed {
		i := slices.IndexFunc(libDirs, func(dir string) bool {
			_, err := os.Stat(filepath.Join(dir, name))
			return err == nil
		})
		if i < 0 {
			return nil, fmt.Errorf("library %s not found in %v", name, libDirs)
		}
		lib, err := inRealDir(filepath.Join(libDirs[i], name))
		if err != nil {
			return nil, err
		}
		deps = append(deps, lib)
	}
	return deps, nil
}
