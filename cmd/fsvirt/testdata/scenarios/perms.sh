# perms: what the kernel lets a user do to the shared tree. Root may do everything; nobody may
# not write root's files, make or remove names in root's directories, remove root's file from the
# sticky directory, change the mode, owner or times of files it does not own, hard-link root's
# files (fs.protected_hardlinks), read what only root may read, nor make device nodes (mknod
# wants CAP_MKNOD). try prints each command's status.

step() { echo "== $*"; }
try() { if "$@"; then echo "-> $1: ok"; else echo "-> $1: failed with status $?"; fi; }
st() { stat -c '%n %F %a %u:%g %s' "$@"; }

step who
id -u
id -g
test -w ro.txt && echo "ro.txt is writable"
test -w src/util.in && echo "src/util.in is writable"
test -r docs/sub/deep/d.txt && echo "docs/sub/deep/d.txt is readable"
test -x private && echo "private is searchable"
test -w docs/sub && echo "docs/sub is writable"

step "write root's files"
try sh -c 'echo appended >> ro.txt'
try sh -c 'echo appended >> src/util.in'
try sh -c 'echo replaced > docs/sub/c.txt'
try truncate -s 3 bin/run.sh
try sh -c 'echo by anyone >> sticky/roots'
cat ro.txt src/util.in docs/sub/c.txt sticky/roots
st ro.txt src/util.in docs/sub/c.txt bin/run.sh sticky/roots

step read what only root may read
try cat docs/sub/deep/d.txt
try ls private
try stat -c '%n %s' private/secret
try cat private/secret
try test -e private/secret
try sh -c 'cd private'

step "make and remove names in root's directories"
try mkdir docs/sub/new
try touch docs/sub/new-file
try ln -s c.txt docs/sub/c.link
try mkfifo bin/fifo
try rm docs/sub/c.txt
try rmdir docs/sub/deep
try mv docs/sub/c.txt docs/c.txt
ls -1A docs/sub bin

step "rename a root's directory: within its parent, and to another parent (its .. changes)"
try mv docs/sub docs/sub2
try mv docs/sub2 docs/sub
try mv docs/sub sub-moved
ls -1A . docs

step "root's file in nobody's directory: replace and remove it"
echo "a new file" > src/util.new
try mv src/util.new src/util.in
st src/util.in
cat src/util.in
try rm -f gone/y
ls -1A gone

step the sticky directory
try rm sticky/roots
try mv sticky/roots sticky/roots.moved
try mv sticky/nobodys sticky/nobodys.moved
echo "made in the sticky directory" > sticky/made
try rm sticky/made
ls -1A sticky

step mode, owner and times of files one does not own
try chmod 600 ro.txt
try chmod 600 README
try chown 65534:65534 ro.txt
try chown 0:0 README
try chgrp 0 README
try chown "$(id -u):$(id -g)" README
try touch -d @0 ro.txt
try touch ro.txt
try touch -d @0 README
try touch sticky/roots sticky/roots.moved
st ro.txt README
stat -c '%n %Y' README

step "hard links (fs.protected_hardlinks: the owner, or one who may read and write the file)"
try ln ro.txt ro.hard
try ln README README.hard
try ln sticky/roots roots.hard
try ln sticky/roots.moved roots.hard
# cp reports per entry, in the directory's listing order, which no two file systems share.
try cp -al docs/sub sub.links 2>&1 | sort
stat -c '%n %h' ro.txt README

step device nodes and FIFOs
try mknod null.dev c 1 3
try mknod fifo p
try mkfifo fifo2
test -c null.dev && st null.dev
st fifo fifo2

step "remove root's files from nobody's directory"
try rm -f ro.txt src/util.in
try rm -rf private
try rm -rf docs
ls -1A .
