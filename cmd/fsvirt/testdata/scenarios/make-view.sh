# make-view: make builds a tiny C program in a directory made in the view, and runs it; make's
# recipes and gcc's children (cc1, as, collect2, ld) all work from that directory. A program made
# in the view runs by a path at least as long as /dev/fd/N (README, "Limits": a shorter one, as
# ./a.out, fails with ENOEXEC), so $PWD/a.out rather than ./a.out.

step() { echo "== $*"; }

step write the sources and the Makefile
mkdir proj
cd proj
cat > hello.c <<'C'
#include <stdio.h>

int greeting(void);

int main(void)
{
	printf("hello from a.out: %d\n", greeting());
	return 0;
}
C
cat > greet.c <<'C'
int greeting(void) { return 42; }
C
printf '%s\n' 'CFLAGS = -O2 -Wall' '' \
	'a.out: hello.o greet.o' '	$(CC) -o $@ hello.o greet.o' '' \
	'%.o: %.c' '	$(CC) $(CFLAGS) -c $<' '' \
	'run: a.out' '	$(CURDIR)/a.out' '' \
	'clean:' '	rm -f a.out *.o' '' \
	'.PHONY: run clean' > Makefile
ls -1

step build and run
make CC=gcc
"$PWD/a.out"
make CC=gcc run
make CC=gcc

step change a source: make rebuilds what depends on it
echo 'int greeting(void) { return 43; }' > greet.c
# Older than the new greet.c whatever the clock's grain.
touch -d @1 greet.o a.out
make CC=gcc
../proj/a.out
ls -1

step clean
make clean
ls -1
