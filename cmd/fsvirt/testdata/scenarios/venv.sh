# venv: python3 -m venv --without-pip makes a virtual environment in the view; its python runs by
# its path, after activate, and on a script made in the view. venv writes
# the tree's path into a few files: at the end they name /TREE instead, so that both sides list
# the same tree.

step() { echo "== $*"; }
fails() { "$@" || echo "-> $1 failed with status $?"; }

step create
python3 -m venv --without-pip venv
ls -1A venv venv/bin
readlink venv/bin/python venv/bin/python3 venv/lib64
grep -v '^command = ' venv/pyvenv.cfg

# dash runs a command in a child of vfork; a program made in the view and run from one sees the
# path fsvirt executes it by, /dev/fd/N, as its argv[0] (README, "Limits of this version"), and
# python then finds no venv next to it. A subshell that executes it does not share its memory.
step its python, by its path
(exec venv/bin/python -c 'import sys; print(sys.prefix != sys.base_prefix, sys.prefix)')
(exec "$PWD/venv/bin/python3" -c 'import sys; print(sys.prefix != sys.base_prefix, sys.prefix)')

step a module in its site-packages
(exec venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
# Found in the tree, not asked of python: whatever it answers, nothing is written outside the tree.
site=$(echo venv/lib/python3.*/site-packages)
mkdir "$site/greeting"
printf 'def hello():\n    return "hello from the venv"\n' > "$site/greeting/__init__.py"
(exec venv/bin/python -c 'import greeting; print(greeting.hello())') || echo "-> venv/bin/python failed with status $?"
fails python3 -c 'import greeting' 2>&1 | tail -n 1

step activate
. venv/bin/activate
command -v python
python -c 'import sys, greeting; print(sys.prefix, greeting.hello())'
deactivate
command -v python || echo "no python on PATH after deactivate"

# A script whose #! names the venv's python is not run: the kernel looks a script's interpreter
# up on the host, where the venv is not (README, "Limits of this version"; impl's
# TestExecScriptInterpreterInView). Through python itself it runs.
step "a script run by the venv's python"
printf 'import sys, greeting\nprint("tool:", sys.prefix, greeting.hello())\n' > venv/bin/greet-tool
(exec venv/bin/python venv/bin/greet-tool) || echo "-> venv/bin/python failed with status $?"
rm venv/bin/greet-tool

step "the tree's path in the venv"
grep -rl "$PWD" venv | sort
grep -rl "$PWD" venv | xargs sed -i "s|$PWD|/TREE|g"
