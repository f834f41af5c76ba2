package main

import (
	"os"
	"path/filepath"
	"testing"
)

// execProbeArgv runs execProbe with the scenarios' environment.
func execProbeArgv() []string {
	return append(append([]string{"env", "-i"}, scenarioEnv...), "python3", "-c", execProbe)
}

// execProbe copies /bin/true into the view under a short and a long name, and /bin/ls under a
// long one, executes each with a bare execve (os.execv: no shell or execvp) and prints how each
// went: a failed exec says whether the task's descriptors are as before, and ls lists those the
// new program has (0 to 2, and 3 for the directory it lists: none left from the exec).
const execProbe = `import os, shutil
os.closerange(3, 4096) # what the test's caller left open
shutil.copy("/bin/true", "t")
os.mkdir("progs")
shutil.copy("/bin/true", "progs/true-copy")
shutil.copy("/bin/ls", "progs/ls-copy")
for path, argv in [("./t", ["./t"]), ("./progs/true-copy", ["true"]), ("./progs/ls-copy", ["ls", "/proc/self/fd"])]:
    pid = os.fork()
    if pid == 0:
        before = sorted(os.listdir("/proc/self/fd"))
        try:
            os.execv(path, argv)
        except OSError as e:
            kept = sorted(os.listdir("/proc/self/fd")) == before
            os.write(1, ("%s: errno %d, descriptors %s\n" % (path, e.errno, "kept" if kept else "changed")).encode())
            os._exit(100)
    _, status = os.waitpid(pid, 0)
    print(path, "exit", os.waitstatus_to_exitcode(status), flush=True)
`

// TestExecShortPathLimit documents a known limitation (README, "Limits of this version"): a
// program that exists only in the private layer is executed through /dev/fd/N, written over the
// caller's path string, so a path shorter than /dev/fd/N ("./t") fails with EOPNOTSUPP (errno
// 95; not ENOEXEC, on which execvp and shells would run the binary as a shell script), where the
// kernel on a copy runs it. The scenarios run programs made in the view by longer
// paths. This test asserts today's behaviour: when the limit is lifted, it fails, and the want
// below becomes "./t exit 0".
func TestExecShortPathLimit(t *testing.T) {
	requireEngine(t)
	if !inScenarioPath("python3") {
		t.Skip("python3 is not installed (scripts/test.sh installs it)")
	}
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			f := newFixture(t)
			args := []string{"run", "--tree", f.tree, "--store", f.store, "--policy", policy, "--"}
			r := fsvirtIn(t, f.tree, append(args, execProbeArgv()...)...)
			assertStoreEmpty(t, f.store)
			const want = "./t: errno 95, descriptors kept\n./t exit 100\n./progs/true-copy exit 0\n" +
				"0\n1\n2\n3\n./progs/ls-copy exit 0\n"
			if r.code != 0 || r.stdout != want {
				t.Errorf("exit status %d, stdout:\n%s\nstderr:\n%s\nwant exit status 0, stdout:\n%s", r.code, r.stdout, r.stderr, want)
			}
			assertNotExist(t, filepath.Join(f.tree, "t"))
		})
	}
}

// TestExecShortPathOnCopy is TestExecShortPathLimit's reference: on a directory of its own the
// kernel runs both programs.
func TestExecShortPathOnCopy(t *testing.T) {
	if !inScenarioPath("python3") {
		t.Skip("python3 is not installed (scripts/test.sh installs it)")
	}
	dir := t.TempDir()
	r := runIn(t, dir, execProbeArgv())
	if want := "./t exit 0\n./progs/true-copy exit 0\n0\n1\n2\n3\n./progs/ls-copy exit 0\n"; r.code != 0 || r.stdout != want {
		t.Errorf("exit status %d, stdout:\n%s\nstderr:\n%s\nwant exit status 0, stdout:\n%s", r.code, r.stdout, r.stderr, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "t")); err != nil {
		t.Error(err)
	}
}

// TestExecArgv0AndInterpreter: a program made in the view, run by a path that is also its argv[0]
// (a shell runs "dir/prog" with execve(argv[0], argv, envp)), sees the name it was run by, not
// the /dev/fd/N that fsvirt executes it through, unless the exec comes from a child of vfork,
// which shares its parent's memory (dash runs commands so): then argv[0] is the path fsvirt
// rewrote (README, "Limits of this version"). A script whose interpreter only the view has fails
// with ENOENT, as the kernel cannot find the interpreter on the host, and the task's memory is as
// it was: the shell names the script in its message.
func TestExecArgv0AndInterpreter(t *testing.T) {
	requireEngine(t)
	const script = `mkdir dir && cp /bin/dash dir/myshell
(exec dir/myshell -c 'echo "argv0 $0"')
dir/myshell -c 'echo "vfork argv0 $0"'
printf '#!%s/dir/myshell\necho script ran\n' "$PWD" > dir/view-interp && chmod +x dir/view-interp
dir/view-interp 2>&1
echo "status $?"`
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			f := newFixture(t)
			r := fsvirtIn(t, f.tree, "run", "--tree", f.tree, "--store", f.store, "--policy", policy, "--", "/bin/dash", "-c", script)
			assertStoreEmpty(t, f.store)
			want := "argv0 dir/myshell\nvfork argv0 ///dev/fd/3\n/bin/dash: 5: dir/view-interp: not found\nstatus 127\n"
			if r.code != 0 || r.stdout != want {
				t.Errorf("exit status %d, stdout:\n%s\nstderr:\n%s\nwant stdout:\n%s", r.code, r.stdout, r.stderr, want)
			}
			assertNotExist(t, filepath.Join(f.tree, "dir"))
		})
	}
}
