# sed: sed -i on shared files: in place (a new file renamed over the old one), with a backup, on a
# symlink and a hard link, on root's files in nobody's directories, in root's directory (nobody
# cannot make the temporary file there) and in the sticky directory (nobody cannot rename over
# root's file there). sed names its temporary file at random: errors show it as sedXXXXXX.

step() { echo "== $*"; }
fails() { "$@" || echo "-> $1 failed with status $?"; }
st() { stat -c '%n %F %a %u:%g %s %h' "$@"; }
tmpname() { sed 's/sed[[:alnum:]]\{6\}/sedXXXXXX/g'; }

step sed -i on a shared file
sed -i 's/alpha/ALPHA/' docs/a.txt
cat docs/a.txt
st docs/a.txt
sed -i -e '1i first line' -e '$a last line' -e 's/bravo/BRAVO/' docs/b.txt
cat docs/b.txt

step with a backup, and several files at once
sed -i.orig 's/hello/HELLO/' src/hello.in
cat src/hello.in src/hello.in.orig
sed -i 's/^/> /' README Makefile
cat README
head -n 2 Makefile

step a symlink: replaced by a file, or followed
sed -i --follow-symlinks 's/>/>>/' link-to-readme
st link-to-readme README
cat README
sed -i 's/>>/>>>/' link-to-readme
st link-to-readme README
cat link-to-readme README

step a hard link keeps the old content
ln docs/a.txt a.hard
sed -i 's/ALPHA/alpha again/' docs/a.txt
cat docs/a.txt a.hard
st docs/a.txt a.hard

step "root's files in nobody's directories: read, then replaced by the caller's file"
sed -i 's/utility/UTILITY/' src/util.in
sed -i 's/read-only/was read-only/' ro.txt
st src/util.in ro.txt
cat src/util.in ro.txt

step files one cannot read, or whose directory one cannot write
fails sed -i 's/delta/DELTA/' docs/sub/deep/d.txt 2>&1 | tmpname
fails sed -i 's/secret/SECRET/' private/secret 2>&1 | tmpname
fails sed -i 's/charlie/CHARLIE/' docs/sub/c.txt 2>&1 | tmpname
cat docs/sub/c.txt

step "the sticky directory: nobody may not replace root's file"
fails sed -i 's/file/FILE/' sticky/nobodys 2>&1 | tmpname
fails sed -i 's/file/FILE/' sticky/roots 2>&1 | tmpname
# A refused rename leaves sed's temporary file behind.
rm -f sticky/sed??????
cat sticky/nobodys sticky/roots
st sticky/nobodys sticky/roots

step sed -n with w, and sed on a file made in the view
printf 'one\ntwo\nthree\n' > made.txt
sed -n '/t/w made.t' made.txt
sed -i '2d' made.txt
cat made.txt made.t
