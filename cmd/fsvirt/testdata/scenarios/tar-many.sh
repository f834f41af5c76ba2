# tar-many: tar c of a few hundred shared files (many/, made by the setup: d0..d8 nobody's, d9
# root's), tar x into a new directory and over the shared one; then the same for a few hundred
# files made in the view. The archives are reproducible: the same bytes on both sides.

step() { echo "== $*"; }
fails() { "$@" || echo "-> $1 failed with status $?"; }
repro() { tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner "$@"; }
same() { if diff -r "$1" "$2"; then echo "$2 matches $1"; else echo "-> diff failed with status $?"; fi; }

step archive the shared files
repro -cf many.tar many
tar -tf many.tar | wc -l
sha256sum many.tar

step extract into a new directory
mkdir out
tar -xf many.tar -C out
same many out/many
find out -type f | wc -l

step change the shared directory, then extract over it
rm -r many/d0 many/d1
echo "changed in the view" > many/d2/f1.txt
fails rm many/d9/f1.txt
fails tar -xf many.tar
same out/many many
cat many/d2/f1.txt

step a few hundred files made in the view
mkdir gen
for d in a b c d e f g h i j; do
	mkdir gen/$d
	for i in $(seq 1 30); do echo "generated $d/$i" > gen/$d/g$i; done
done
repro -czf gen.tgz gen
tar -tzf gen.tgz | wc -l
sha256sum gen.tgz
mv gen gen.orig
tar -xzf gen.tgz
same gen.orig gen
rm -r gen.orig

step "tar c | tar x of both"
mkdir both
repro -cf - many gen | (cd both && tar -xf -)
find both -type f | wc -l
same many both/many
