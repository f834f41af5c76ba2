# ops: the path operations of issue 4, one coreutils command at a time, in the tree's root.
# Each step prints what it checks; a command that fails, or that nobody may not run on root's
# files, prints its error and status.

step() { echo "== $*"; }
fails() { "$@" || echo "-> $1 failed with status $?"; }
# stat without sizes of directories, which depend on the file system's layout.
st() { stat -c '%n %F %a %u:%g' "$@"; }
sz() { stat -c '%n %s %h' "$@"; }

step cwd and relative paths
pwd
cd docs/sub
pwd
fails cat ../a.txt deep/d.txt
cd ../..
pwd
cd -
cd ../..

step read the shared tree
cat README
ls -1a . docs
readlink link-to-readme dangling abs-link docs/link-up
cat link-to-readme
test -L link-to-readme && echo "link-to-readme is a symlink"
test -d docs/link-up && echo "docs/link-up leads to a directory"
ls -1 docs/link-up/
fails cat dangling
test -e dangling || echo "dangling does not exist"
fails st README docs docs/link-up ro.txt private private/secret

step modify a shared file, stat shows the view
echo "appended in the view" >> README
cat README
sz README

step mkdir -p, rmdir
mkdir -p new/a/b
echo x > new/a/b/f
ls -1 new/a/b
fails rmdir new/a
fails mkdir src
rm new/a/b/f
rmdir new/a/b new/a
ls -1a new
rmdir new
test -e new || echo "new is gone"

step delete a shared file, then re-create it
rm docs/a.txt
test -e docs/a.txt || echo "docs/a.txt is gone"
fails cat docs/a.txt
ls -1 docs
echo "re-created" > docs/a.txt
cat docs/a.txt
st docs/a.txt

step rmdir of a shared directory
fails rmdir gone
rm gone/x gone/y
ls -1a gone
rmdir gone
test -e gone || echo "gone is gone"
mkdir gone
st gone
ls -1a gone
rmdir empty
fails rmdir docs/sub

step rm -rf of a shared subtree
fails rm -rf docs/sub/deep
ls -1 docs/sub
test -e docs/sub/deep/d.txt || echo "deep/d.txt is gone"

step mv a file, mv a whole shared directory
mv src/hello.in src/hello2.in
ls -1 src
mv docs documents
test -e docs || echo "docs is gone"
ls -1R documents
cat documents/b.txt documents/sub/c.txt
readlink documents/link-up
ls -1 documents/link-up/
mv documents/b.txt .
mv b.txt documents/bravo.txt
fails mv no-such-file somewhere

step cp and cp -a
cp README README.copy
cp -a src src-copy
cp -a documents/link-up link-copy
st README.copy src-copy src-copy/hello2.in link-copy
readlink link-copy
cmp README README.copy && echo "README.copy matches"

step hard links
ln README.copy README.hard
sz README.copy README.hard
echo "through the hard link" >> README.hard
cat README.copy
fails ln src/util.in util.hard
fails sz src/util.in util.hard
echo "appended through util.hard" >> util.hard
cat src/util.in
rm util.hard
sz src/util.in

step symlinks
ln -s documents/bravo.txt bravo.link
readlink bravo.link
cat bravo.link
ln -s "$PWD/README" abs-into-tree
cat abs-into-tree
ln -sf README bravo.link
readlink bravo.link
mkdir -p made/inner
ln -s made/inner inner.link
echo "via the link" > inner.link/file
cat made/inner/file
ls -1 inner.link/
readlink -f inner.link/file
fails ln -s README README

step chmod, chown to self, readlink, test
chmod 600 documents/bravo.txt
fails chmod +x src/util.in
fails chmod 755 ro.txt
chmod 711 documents
chmod -R go-rwx src-copy
st documents/bravo.txt src/util.in ro.txt documents src-copy src-copy/util.in
chown "$(id -u):$(id -g)" README src
fails chown "$(id -u):$(id -g)" ro.txt
st README src ro.txt
test -x src/util.in && echo "src/util.in is executable now"

step touch -d, truncate -s
touch -d '2001-02-03 04:05:06 UTC' README documents
stat -c '%n %Y' README documents
touch fresh
test -f fresh && echo "fresh exists"
touch -d @0 fresh
stat -c '%n %Y %s' fresh
truncate -s 4 src/hello2.in
truncate -s 10000 sparse
sz src/hello2.in sparse
cat src/hello2.in; echo
fails truncate -s 0 ro.txt
sz ro.txt

step mkfifo
mkfifo fifo
test -p fifo && echo "fifo is a FIFO"
st fifo
fails mkfifo fifo

step ls of merged directories
ls -1a .
ls -1p documents
ls -1A src made

step run a script created in the view, and a modified shared executable
printf '#!/bin/sh\necho "newscript: $1"\n' > newscript.sh
chmod +x newscript.sh
./newscript.sh hello
bin/run.sh before
fails sh -c "echo 'echo \"run.sh: changed in the view\"' >> bin/run.sh"
bin/run.sh after
sh bin/run.sh via-sh
fails ./README

step replace a shared file by rename
echo "replacement" > README.new
mv README.new README
cat README link-to-readme
sz README
