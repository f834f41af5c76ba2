# python: a Python program writes, renames, lists, walks, globs and removes files in the tree's
# root: os, shutil, pathlib and tempfile, with python3 -c and with a script made in the view.

step() { echo "== $*"; }

step python3 -c
python3 -c 'import os; print(sorted(os.listdir(".")))'
python3 -c 'import os; print(os.getcwd().endswith("/tree"), os.path.isdir("docs"), os.path.islink("link-to-readme"))'

step a script written in the view
cat > tool.py <<'PY'
import os
import pathlib
import shutil
import stat
import tempfile


def show(path):
    st = os.lstat(path)
    kind = stat.filemode(st.st_mode)
    size = st.st_size if stat.S_ISREG(st.st_mode) else "-"
    print(f"{path}: {kind} size={size} nlink={st.st_nlink if not stat.S_ISDIR(st.st_mode) else '-'}")


# write files, and a directory tree
os.makedirs("py/a/b", exist_ok=True)
for i in range(5):
    with open(f"py/a/f{i}.txt", "w") as f:
        f.write(f"file {i}\n")
with open("README", "a") as f:
    f.write("appended by python\n")
print(open("README").read(), end="")
show("README")

# rename: files, a shared directory, over an existing file
os.rename("py/a/f0.txt", "py/a/g0.txt")
os.rename("docs", "py/docs")
os.replace("py/a/f1.txt", "py/a/f2.txt")
try:
    os.rename("py/a", "py/docs")
except OSError as e:
    print("rename onto a non-empty dir:", type(e).__name__, e.errno)
print(sorted(os.listdir("py/a")))
print(sorted(os.listdir("py/docs")))

# scandir
with os.scandir("py") as it:
    for e in sorted(it, key=lambda e: e.name):
        print(e.name, e.is_dir(), e.is_file(), e.is_symlink(), e.is_dir(follow_symlinks=False))
with os.scandir("py/docs") as it:
    for e in sorted(it, key=lambda e: e.name):
        print(e.name, e.is_dir(), e.is_file(), e.is_symlink())

# walk
for root, dirs, files in sorted(os.walk(".")):
    if root.startswith("./.") or "/__pycache__" in root:
        continue
    print(root, sorted(dirs), sorted(files))

# atomic replace of a shared file through a temporary file
fd, tmp = tempfile.mkstemp(dir="src", prefix=".tmp-")
with os.fdopen(fd, "w") as f:
    f.write("rewritten atomically\n")
os.chmod(tmp, 0o644)
os.replace(tmp, "src/util.in")
print(open("src/util.in").read(), end="")
print(sorted(os.listdir("src")))

# shutil; nobody may not remove root's docs/sub
try:
    shutil.rmtree("py/docs/sub")
except OSError as e:
    print("rmtree py/docs/sub:", type(e).__name__, e.errno, e.filename)
shutil.copytree("src", "src2", symlinks=True)
shutil.copy2("README", "src2/README")
shutil.move("src2", "py/src2")
shutil.rmtree("gone")
print(sorted(os.listdir("py")), os.path.exists("gone"))

# pathlib
print(sorted(str(p) for p in pathlib.Path(".").glob("**/*.txt")))
print(sorted(str(p) for p in pathlib.Path("py").rglob("*")))
p = pathlib.Path("py/notes.md")
p.write_text("# notes\n")
p.with_suffix(".txt").write_bytes(p.read_bytes() * 2)
print(p.read_text(), end="")
print(p.with_suffix(".txt").stat().st_size)
pathlib.Path("py/a/f3.txt").unlink()
pathlib.Path("py/a/f4.txt").rename("py/f4.txt")
pathlib.Path("py/a/b").rmdir()
pathlib.Path("py/new/deep").mkdir(parents=True)
print(sorted(str(p) for p in pathlib.Path("py").iterdir()))

# links, modes, times, truncate, fifo, errors
os.symlink("../README", "py/readme.link")
os.link("py/notes.md", "py/notes.hard")
print(os.readlink("py/readme.link"), os.path.realpath("py/readme.link") == os.path.realpath("README"))
show("py/notes.md")
os.chmod("py/notes.md", 0o600)
os.utime("py/notes.md", (1_000_000_000, 1_000_000_000))
print(oct(os.stat("py/notes.md").st_mode & 0o777), os.stat("py/notes.hard").st_mtime)
os.truncate("src/hello.in", 5)
print(open("src/hello.in").read())
os.mkfifo("py/fifo")
show("py/fifo")
for call, args in [(os.mkdir, ("src",)), (os.rmdir, ("py",)), (os.unlink, ("nothing",)),
                   (open, ("py/a", "w")), (os.listdir, ("README",))]:
    try:
        call(*args)
    except OSError as e:
        print(call.__name__, args[0], type(e).__name__, e.errno)
PY
python3 tool.py
rm tool.py
