# tar: create a compressed archive of a shared subtree, extract it into a new directory and over
# the shared one (an archive of "." too), and compare. Options that make the archive reproducible: the same bytes on
# both sides. As nobody, tar cannot read docs/sub/deep/d.txt: fails prints the error.

step() { echo "== $*"; }
fails() { "$@" || echo "-> $1 failed with status $?"; }
same() { if diff -r "$1" "$2"; then echo "$2 matches $1"; else echo "-> diff failed with status $?"; fi; }
repro() { tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner "$@"; }

step archive a shared subtree
fails repro -czf docs.tgz docs src
tar -tzvf docs.tgz
sha256sum docs.tgz

step extract into a new directory
mkdir x
tar -xzf docs.tgz -C x
same docs x/docs
same src x/src
fails stat -c '%n %a %Y' x/docs x/docs/sub/deep/d.txt x/src/hello.in
readlink x/docs/link-up

step extract an archive of "." into the unchanged shared directory it was made from
# tar checks, before it sets the directory's times, that it is the directory it found, which the
# view copies as the files go in.
fails tar -cf dot.tar -C src .
tar -tf dot.tar | sort
fails tar -xf dot.tar -C src
fails stat -c '%n %a %Y' src src/hello.in

step change the tree, archive again, extract over the shared directory
echo "changed after the first archive" >> docs/a.txt
rm docs/b.txt
fails repro -cf docs.tar docs
tar -tvf docs.tar
mv docs docs.orig
mkdir docs
echo "will be overwritten" > docs/a.txt
tar -xf docs.tar
same docs.orig docs
tar -xzf docs.tgz
cat docs/a.txt docs/b.txt
stat -c '%n %Y' docs/a.txt docs

step append and update
echo "appended member" > extra.txt
repro -rf docs.tar extra.txt
tar -tf docs.tar
rm extra.txt
tar -xf docs.tar extra.txt
cat extra.txt

step archive from stdin and to stdout
repro -cf - README Makefile | tar -tvf -
repro -cf - bin | (mkdir y && cd y && tar -xf -)
find y -exec stat -c '%n %F %a' {} + | sort
y/bin/run.sh extracted
