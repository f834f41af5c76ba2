# find: walking the merged tree with find, its tests and actions, and find -delete. As nobody,
# find cannot read private, and cannot delete in root's directories: fails prints the error.

step() { echo "== $*"; }
fails() { "$@" || echo "-> $1 failed with status $?"; }

step walk the shared tree
find . | sort
find . -name '*.txt' | sort
find . -type d | sort
find . -type l | sort
find . -type f -perm -u+x | sort
find . -empty | sort
find . -path ./docs -prune -o -type f -print | sort
find -L . -type l | sort
find . -maxdepth 1 -type f -name '*.txt' -exec cat {} + | sort

step walk after changes
mkdir -p added/one/two
echo one > added/one/f.txt
echo two > added/one/two/g.txt
rm docs/a.txt
mv src/util.in src/util.txt
ln -s ../docs added/docs.link
find . -name '*.txt' | sort
find . -newer Makefile -type f | sort
find added docs -print | sort
find . -type f -name '*.txt' -exec sh -c 'echo "$1: $(wc -c < "$1")"' sh {} \; | sort

step find -delete
fails find docs -name '*.txt' -delete
find docs | sort
find gone -delete
test -e gone || echo "gone is gone"
find added -type f -delete
find added | sort
fails find . -depth -type d -empty -delete
find . -type d | sort
