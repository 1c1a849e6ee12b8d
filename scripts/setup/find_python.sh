#!/usr/bin/env bash
# Print the path of a Python 3.12 interpreter: $PYTHON if set, then python3.12 and python3 on PATH, then pyenv's
# versions. Exit 1 with what to install when there is none.
set -u
wanted=3.12
works() { [ -n "$1" ] && "$1" -c "import sys; sys.exit(sys.version_info[:2] != (3, 12))" >/dev/null 2>&1; }
if [ -n "${PYTHON:-}" ]; then
  works "$PYTHON" && { command -v "$PYTHON"; exit 0; }
  echo "PYTHON=$PYTHON is not a Python $wanted" >&2; exit 1
fi
for candidate in python3.12 python3; do
  path=$(command -v "$candidate" 2>/dev/null) && works "$path" && { echo "$path"; exit 0; }
done
# pyenv's shims on PATH answer only for the selected version: ask pyenv for its installed 3.12 releases
root=$( (pyenv root) 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for path in $(ls -d "$root"/versions/3.12*/bin/python3.12 2>/dev/null | sort -V -r); do
  works "$path" && { echo "$path"; exit 0; }
done
cat >&2 <<MSG
No Python $wanted found (tried \$PYTHON, python3.12 and python3 on PATH, and pyenv's versions in $root/versions).
Install one, e.g.:  pyenv install 3.12   or   apt-get install python3.12 python3.12-venv   or   conda create -n py312 python=3.12
then run make again (or: make PYTHON=/path/to/python3.12 ...).
MSG
exit 1
