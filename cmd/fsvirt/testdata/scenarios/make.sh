# make: build the tree's Makefile (two pattern-rule targets, a directory prerequisite and a
# target depending on both), run it again (up to date), then after changes, then clean. Times
# are set where they decide what make rebuilds, so that no run depends on the clock's grain.

step() { echo "== $*"; }

step first build
make
cat out/all.txt

step second run: up to date
make
make out/all.txt

step a target older than its prerequisite
touch -d @1 out/util.txt out/all.txt
make

step a shared prerequisite changed in the view: its new time must show
echo "more" >> src/hello.in
touch -d '2024-01-01 00:00 UTC' out/hello.txt out/all.txt
make
cat out/all.txt
make -q && echo "make -q: up to date"

step dry run and forced rebuild
make -n clean
make -B out/hello.txt

step clean, then build silently
make clean
test -e out || echo "out is gone"
make -s
cat out/all.txt
ls -1 out
