package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/fsvirt/fsvirt/conformance/driver"
	"github.com/fsvirt/fsvirt/impl"
)

// Builtin is an implementation the suite knows by name.
type Builtin struct {
	Name string
	Doc  string
	// Recipe is the command prefix the implementation is (for Command), or "".
	Recipe string
	// New makes the implementation.
	New Factory
	// Available says why the implementation cannot run here, or nil.
	Available func(ctx context.Context) error
}

// Recipes are the command prefixes of the implementations that are commands:
// the shell fragments to pass to `fsvirt conformance --impl-cmd`.
const (
	// OverlayfsRecipe mounts kernel overlayfs over the shared directory in a
	// mount namespace of its own (root). redirect_dir=on lets directories of
	// the lower layer be renamed (EXDEV otherwise).
	OverlayfsRecipe = `unshare --mount --propagation private -- /bin/sh -c 'mkdir "$2/upper" "$2/work" && ` +
		`mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work,redirect_dir=on" "$1" && ` +
		`shift 2 && exec "$@"' overlayfs {dir} {tmp}`
	// FuseOverlayfsRecipe mounts fuse-overlayfs likewise; its daemon keeps
	// the namespace alive, so the recipe unmounts when the command is done.
	FuseOverlayfsRecipe = `unshare --mount --propagation private -- /bin/sh -c 'd=$1 t=$2; shift 2; ` +
		`mkdir "$t/upper" "$t/work" && fuse-overlayfs -o "lowerdir=$d,upperdir=$t/upper,workdir=$t/work" "$d" || exit 125; ` +
		`"$@"; s=$?; umount "$d"; exit $s' fuse-overlayfs {dir} {tmp}`
	// BwrapRecipe is bubblewrap (0.11 or later) with a temporary overlay on
	// the shared directory; it is not built in.
	BwrapRecipe = `bwrap --dev-bind / / --overlay-src {dir} --tmp-overlay {dir} --`
)

// Builtins lists the built-in implementations. driverArgv starts the driver
// program, for those that run it as a command.
func Builtins(driverArgv []string) []Builtin {
	always := func(context.Context) error { return nil }
	command := func(name, recipe, tool string) Builtin {
		return Builtin{Name: name, Recipe: recipe, New: Command(recipe, driverArgv),
			Available: func(ctx context.Context) error {
				if _, err := exec.LookPath(tool); err != nil {
					return err
				}
				if os.Geteuid() != 0 {
					return errors.New("needs root (a mount namespace)")
				}
				return probe(ctx, recipe)
			}}
	}
	overlay := command("overlayfs", OverlayfsRecipe, "unshare")
	overlay.Doc = "kernel overlayfs in a mount namespace of its own (root)"
	fuse := command("fuse-overlayfs", FuseOverlayfsRecipe, "fuse-overlayfs")
	fuse.Doc = "fuse-overlayfs in a mount namespace of its own (root)"
	return []Builtin{
		{Name: "fsvirt", Doc: "fsvirt process mode (impl.Run): the driver program in a fresh view",
			New: fsvirtProcess(driverArgv), Available: always},
		{Name: "fsvirt-thread", Doc: "fsvirt thread mode (impl.Pool): the driver as a Go function in Pool.Invoke",
			New: FsvirtThread, Available: always},
		overlay,
		fuse,
		{Name: "copy", Doc: "a private full copy of the tree for every run: the reference", New: Copy, Available: always},
		{Name: "none", Doc: "the shared tree itself, no isolation: must fail", New: None, Available: always},
	}
}

// FsvirtThread is fsvirt's thread mode: a pool of two workers on dir, each
// run a function in Pool.Invoke.
func FsvirtThread(dir string) (Impl, error) {
	pool, err := impl.NewPool(impl.Config{Workers: 2, Trees: []string{dir}})
	if err != nil {
		return nil, err
	}
	return poolImpl{InProcess(func(ctx context.Context, fn func() error) error {
		return pool.Invoke(ctx, func(*impl.Invocation) error { return fn() })
	}), pool}, nil
}

type poolImpl struct {
	Impl
	pool *impl.Pool
}

func (p poolImpl) Close() error { return p.pool.Close() }

// fsvirtProcess runs the driver program under impl.Run, as `fsvirt run --tree DIR --` does.
func fsvirtProcess(driverArgv []string) Factory {
	return func(string) (Impl, error) { return processImpl(driverArgv), nil }
}

type processImpl []string

func (p processImpl) Run(ctx context.Context, a driver.Args) ([]byte, error) {
	scratch, err := os.MkdirTemp("", "fsvirt-conform-run-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	files := make([]*os.File, 3)
	for i, name := range []string{"case.json", "stdout", "stderr"} {
		if files[i], err = os.Create(filepath.Join(scratch, name)); err != nil {
			return nil, err
		}
		defer files[i].Close()
	}
	if _, err := files[0].Write(mustMarshal(a.Case)); err != nil {
		return nil, err
	}
	args := append(append([]string{}, p...), "--root", a.Root, "--run", strconv.Itoa(a.Run), "--sync", a.Sync, files[0].Name())
	res, err := impl.Run(ctx, impl.RunConfig{Trees: []string{a.Root}, Path: p[0], Args: args,
		Stdout: files[1], Stderr: files[2]})
	stdout, readErr := os.ReadFile(files[1].Name())
	if err == nil && res.ExitStatus != 0 {
		stderr, _ := os.ReadFile(files[2].Name())
		err = fmt.Errorf("exit status %d: %s", res.ExitStatus, tail(string(stderr)))
	}
	return stdout, errors.Join(err, readErr)
}
