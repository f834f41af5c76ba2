# git: init, add, commit, log, status, mv, rm, branch and checkout in the tree's root. The
# identity, dates and configuration are fixed, so both sides make the same objects. The tree's
# root is nobody's: safe.directory lets root use it too. What nobody cannot read is excluded.

step() { echo "== $*"; }
fails() { "$@" || echo "-> $1 failed with status $?"; }

export HOME="$PWD/.home" GIT_CONFIG_NOSYSTEM=1
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'
export GIT_AUTHOR_DATE='2020-01-02T03:04:05Z' GIT_COMMITTER_DATE='2020-01-02T03:04:05Z'
mkdir .home

step init and first commit
git init -q -b main .
printf '/private/\n/docs/sub/deep/\n' >> .git/info/exclude
git config user.name 'Scenario Test'
git config user.email 'scenario@example.com'
git config --list --local | sort
git status --porcelain
git add -A
git commit -q -m 'initial: the shared tree'
git log --oneline
git ls-files -s

step modify, commit -a
echo "changed under git" >> README
chmod +x src/hello.in
fails chmod +x src/util.in
git status --porcelain
git diff --stat
git commit -q -a -m 'second: README and a mode'
git log --oneline --stat

step git mv, git rm, a new directory
git mv src/hello.in src/hi.in
git rm -q docs/b.txt
git rm -q -r gone
mkdir -p lib/deep
echo "library" > lib/deep/lib.txt
ln -s deep/lib.txt lib/link
git add lib
git status --porcelain
git commit -q -m 'third: renames and removals'
git log --oneline --name-status -1
git ls-files | sort

step branch, checkout, merge
git checkout -q -b feature
echo "feature work" > feature.txt
git add feature.txt
git commit -q -m 'feature'
git checkout -q main
test -e feature.txt || echo "feature.txt is not on main"
git merge -q --no-edit feature
git log --oneline --graph
cat feature.txt
git checkout -q HEAD~3 -- README
git status --porcelain
git stash -q
git status --porcelain
git stash pop -q
git status --porcelain
git reset -q --hard
git status --porcelain --ignored

step fsck, count-objects
git fsck --no-progress --strict 2>&1
git count-objects | sed 's/, [0-9]* kilobytes//'
git cat-file -p HEAD

# The index holds inode numbers and times, which differ between any two trees: list it above, then
# leave it out of the listing.
rm .git/index
