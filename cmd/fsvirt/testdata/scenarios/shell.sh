# shell: a shell session that cds into directories that exist only in the view and works with
# relative paths: up into shared directories and back, cd -, subshells and children, a symlink
# to a view-only directory, a renamed and a removed working directory.

step() { echo "== $*"; }
fails() { "$@" || echo "-> $1 failed with status $?"; }

step into a new directory tree
mkdir -p proj/src/lib
cd proj
pwd
echo "in proj" > notes.txt
cd src/lib
pwd
echo "lib" > lib.txt
cat ../../notes.txt
cd ..
pwd
ls -1 . lib
cat lib/lib.txt ./lib/../lib/lib.txt

step from a view-only directory to a shared one and back
cd ../../docs
pwd
cat a.txt ../proj/notes.txt
echo "from docs" > ../proj/from-docs.txt
cd ../proj/src
pwd
cd -
cd -
ls -1 ..

step children and subshells inherit the directory
(cd lib && pwd && cat lib.txt)
sh -c 'pwd; cat lib/lib.txt; echo "by a child" > child.txt'
sh -c 'sh -c "cd lib && pwd && echo deeper > grandchild.txt"'
echo "$(pwd) $(cat child.txt)"
ls -1 . lib

step absolute paths and back
here=$(pwd)
cd /
cd "$here"
pwd
cd "$OLDPWD"
pwd
cd "$here/lib"
pwd

step a symlink to a view-only directory
cd ../../..
ln -s proj/src link-to-src
cd link-to-src
pwd
pwd -P
ls -1
cd ..
pwd
cd -P link-to-src/..
pwd
cd ..

step the working directory renamed
mkdir -p moving/inner
cd moving/inner
echo "before the move" > f
mv ../../moving ../../moved
pwd
pwd -P
cat f
echo "after the move" > g
ls -1
cd ../..
ls -1 moved/inner

step the working directory removed
mkdir -p doomed/inner
cd doomed/inner
rm -rf ../../doomed
fails ls -a .
fails touch x
cd ../..
test -e doomed || echo "doomed is gone"
ls -1
