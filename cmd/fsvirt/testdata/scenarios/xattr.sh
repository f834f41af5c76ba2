# xattr: the path xattr calls through getfattr and setfattr, on a shared file, on a file the view
# changed, and on a new one; cp -a keeps xattrs, mv keeps them.

step() { echo "== $*"; }
fails() { "$@" || echo "-> $1 failed with status $?"; }

step read a shared xattr
getfattr -d xattr.txt
getfattr -n user.fsvirt --only-values xattr.txt; echo
fails getfattr -n user.missing xattr.txt

step set, replace and remove on a shared file
setfattr -n user.added -v one xattr.txt
setfattr -n user.fsvirt -v private xattr.txt
getfattr -d xattr.txt
setfattr -x user.added xattr.txt
getfattr -d xattr.txt
fails setfattr -x user.added xattr.txt

step xattrs on a new file, a directory and after cp -a and mv
echo new > new.txt
setfattr -n user.new -v value new.txt
mkdir dir
setfattr -n user.dir -v on-a-dir dir
setfattr -n user.readme -v shared-readme README
cp -a xattr.txt copied.txt
mv new.txt dir/moved.txt
getfattr -R -d -m - dir copied.txt README | sed '/^$/d'
fails setfattr -h -n user.onlink -v x link-to-readme
