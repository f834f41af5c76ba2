# git-clone: a local git clone of repo.git, a repository in the shared tree (git hard-links its
# objects, which the view must keep identical), a commit in the clone and a push back into the
# shared repository; then a clone of root.git, root's copy of it, whose objects nobody may not
# hard-link (fs.protected_hardlinks), so that git copies them.

step() { echo "== $*"; }

export HOME="$PWD/.home" GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME='Scenario Test' GIT_AUTHOR_EMAIL='scenario@example.com'
export GIT_COMMITTER_NAME='Scenario Test' GIT_COMMITTER_EMAIL='scenario@example.com'
export GIT_AUTHOR_DATE='2020-01-02T03:04:05Z' GIT_COMMITTER_DATE='2020-01-02T03:04:05Z'
mkdir .home
# safe.directory: each user works in the other's repositories (in the global configuration: git
# clears GIT_CONFIG_* for the upload-pack of a local clone). No reflogs: they would name the tree's
# path, which differs between the sides.
git config --global safe.directory '*'
git config --global core.logAllRefUpdates false

# links DIR lists the objects of the repository DIR with their link counts.
links() { find "$1/objects" -type f | sort | xargs stat -c '%n %h'; }

step the shared repository
git -C repo.git log --oneline
links repo.git

step clone it
git clone -q repo.git clone
# The remote's URL is the tree's absolute path: make it relative.
git -C clone remote set-url origin ../repo.git
links repo.git
links clone/.git
cd clone
git log --oneline
git status --porcelain
ls -1R
cat README

step commit in the clone
echo "changed in the clone" >> README
printf 'int answer(void) { return 42; }\n' > src/answer.c
git add src/answer.c
git commit -q -a -m 'third: in the clone'
git log --oneline --stat
git fsck --no-progress --strict 2>&1

step push back into the shared repository
git push -q origin main 2>&1
git -C ../repo.git log --oneline
git -C ../repo.git fsck --no-progress --strict 2>&1
cd ..
links repo.git

step "clone root's copy"
git clone -q root.git clone2
git -C clone2 remote set-url origin ../root.git
links clone2/.git
git -C clone2 log --oneline
cat clone2/README

# The index holds inode numbers and times, which differ between any two trees: leave it out of
# the listing.
rm clone/.git/index clone2/.git/index
