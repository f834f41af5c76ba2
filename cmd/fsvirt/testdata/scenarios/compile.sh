# compile: a compile and link in a directory made in the view: gcc -c of two files, gcc -o, ar and
# a static library, and the programs run by paths at least as long as /dev/fd/N (see make-view).

step() { echo "== $*"; }

step compile and link in a view-only directory
mkdir d
cd d
printf '#include <stdio.h>\nint f(void);\nint main(void) { printf("f() = %%d\\n", f()); return 0; }\n' > a.c
printf 'int f(void) { return 42; }\n' > b.c
gcc -c a.c b.c
gcc -o prog a.o b.o
ls -1
"$PWD/prog"

step a program under a subdirectory, a static library
mkdir bin
gcc -o bin/program a.o b.o
./bin/program
ar rcs libb.a b.o
ar t libb.a
gcc -o bin/static a.c -L. -lb
./bin/static
cmp prog bin/program && echo "prog and bin/program are the same"

step "from the tree's root, into the view-only directory"
cd ..
d/bin/program
gcc -o d/bin/from-root d/a.c d/b.c
sh -c 'cd d && exec ./bin/from-root'
ls -1 d d/bin
