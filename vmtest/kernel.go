package vmtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Kernel is a kernel unpacked by scripts/vm-kernels.sh into a directory holding vmlinuz,
// release, version and, when the kernel builds overlayfs as a module, overlay.ko.
type Kernel struct {
	Dir     string
	Image   string // path of vmlinuz
	Overlay string // path of the uncompressed overlay.ko, or "" when there is none
	Release string // uname -r, e.g. "5.10.0-46-cloud-amd64"
	Package string // Debian package and version, or "" when unknown
}

// CacheDir returns where scripts/vm-kernels.sh unpacks kernels: $FSVIRT_VM_CACHE, else
// ~/.cache/fsvirt-vmtest.
func CacheDir() (string, error) {
	if dir := os.Getenv("FSVIRT_VM_CACHE"); dir != "" {
		return dir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("kernel cache: %w (set FSVIRT_VM_CACHE)", err)
	}
	return filepath.Join(home, ".cache", "fsvirt-vmtest"), nil
}

// FindKernel loads the kernel named by name: a directory path when name contains a slash,
// else a version ("5.10") looked up in [CacheDir].
func FindKernel(name string) (*Kernel, error) {
	if strings.Contains(name, "/") {
		return LoadKernel(name)
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	k, err := LoadKernel(filepath.Join(cache, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("kernel %s is not cached (run scripts/vm-kernels.sh %s): %w", name, name, err)
	}
	return k, err
}

// LoadKernel reads the kernel unpacked in dir.
func LoadKernel(dir string) (*Kernel, error) {
	k := &Kernel{Dir: dir, Image: filepath.Join(dir, "vmlinuz")}
	if _, err := os.Stat(k.Image); err != nil {
		return nil, fmt.Errorf("kernel image: %w", err)
	}
	release, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return nil, fmt.Errorf("kernel release: %w", err)
	}
	k.Release = strings.TrimSpace(string(release))
	if version, err := os.ReadFile(filepath.Join(dir, "version")); err == nil {
		k.Package = strings.TrimSpace(string(version))
	}
	overlay := filepath.Join(dir, "overlay.ko")
	if _, err := os.Stat(overlay); err == nil {
		k.Overlay = overlay
	}
	return k, nil
}

// CachedKernels returns the kernels unpacked in [CacheDir], ordered by directory name.
func CachedKernels() ([]*Kernel, error) {
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(cache)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	var kernels []*Kernel
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if k, err := LoadKernel(filepath.Join(cache, e.Name())); err == nil {
			kernels = append(kernels, k)
		}
	}
	sort.Slice(kernels, func(i, j int) bool { return kernels[i].Dir < kernels[j].Dir })
	return kernels, nil
}
