# coreutils: the everyday file-handling commands, in the tree's root: cp -a, cp -al, mv, rm -rf,
# ln, ln -s, install, sed -i, sort -o, tee, split, and a rename over a shared file. As nobody,
# some of them are refused on root's files: fails prints the error and status.

step() { echo "== $*"; }
fails() { "$@" || echo "-> $1 failed with status $?"; }
st() { stat -c '%n %F %a %u:%g' "$@"; }

step cp -a of a shared directory, then change the copy
fails cp -a docs docs.bak
if diff -r docs docs.bak; then echo "docs.bak matches docs"; else echo "-> diff failed with status $?"; fi
echo "only in the copy" >> docs.bak/a.txt
cat docs/a.txt docs.bak/a.txt
fails st docs.bak docs.bak/sub/deep/d.txt docs.bak/link-up
stat -c '%n %Y' docs.bak/b.txt docs.bak/sub

step cp -al: a tree of hard links
fails cp -al src src.links
stat -c '%n %h' src/hello.in src.links/hello.in
fails stat -c '%n %h' src/util.in src.links/util.in
echo "through src.links" >> src.links/hello.in
cat src/hello.in

step cp -r and cp into a directory
cp -r bin bin2
cp README ro.txt bin2/
ls -1 bin2
st bin2/run.sh bin2/ro.txt

step mv within and across directories, mv -T, mv over a file
fails mv docs/a.txt docs/sub/
fails mv docs/sub docs-sub
mv -T bin2 tools
mv -f tools/README tools/ro.txt
fails ls -1R docs-sub tools
cat tools/ro.txt

step rm -rf of shared and private subtrees
fails rm -rf docs.bak/sub private gone
fails rm -r nothing-here
rm -rf nothing-here
ls -1A docs.bak .

step ln and ln -s
ln README README.hard
ln -s README README.sym
ln -s ../README docs/up.sym
ln -sfn docs-sub dir.sym
ln -sfn tools dir.sym
ls -1 dir.sym/
ln -s /nonexistent absent.sym
readlink README.sym docs/up.sym dir.sym absent.sym
cat docs/up.sym
stat -c '%n %h' README README.hard

step install, sed -i, sort -o, tee, split
install -D -m 640 README installed/README
install -d -m 750 installed/dir
st installed installed/README installed/dir
sed -i 's/shared/edited/' README
cat README README.hard README.sym
printf 'zulu\nalpha\nmike\n' > list
sort -o list list
cat list
sed -i '1d' docs/b.txt
cat docs/b.txt
echo "tee'd" | fails tee -a src/util.in new-by-tee
cat src/util.in new-by-tee
seq 1 25 | split -l 10 - part.
ls -1 part.*
cat part.ac

step rename a new file over a shared one, and over a shared symlink
echo "new content" > tmp.README
mv -f tmp.README README
cat README README.hard
echo "no longer a link" > tmp.link
mv -f tmp.link link-to-readme
st link-to-readme
cat link-to-readme

step listings
ls -1A . docs src
