#!/usr/bin/env bash
# Print the path of the project's virtual environment, building it from the lock file first if
# it is missing. It lives outside the clone, keyed by the hash of requirements.txt +
# requirements.lock + the Python version, so every clone and CI run on a machine shares it and a
# changed lock file gets a fresh one. Progress goes to stderr; only the path goes to stdout.
#   NNC_VENV_ROOT   where environments are kept (default: ~/.cache/nn-compression)
#   PYTHON          the interpreter to build from (default: python3)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-python3}
pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
hash=$(cat "$root/requirements.txt" "$root/requirements.lock" <(echo "$pyver") | sha256sum | cut -c1-12)
base=${NNC_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/nn-compression}
venv=$base/venv-py$pyver-$hash
mkdir -p "$base"
exec 9>"$base/.lock-$hash"
flock 9   # one builder at a time; the others wait and then reuse it
if [ ! -f "$venv/.complete" ]; then
  echo "building $venv from requirements.lock (first time on this machine: ~8 GB, a few minutes)" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install --progress-bar off -r "$root/requirements.txt" \
      -c "$root/requirements.lock" >&2
  "$venv/bin/python" -m pip check >&2 || true
  touch "$venv/.complete"
fi
echo "$venv"
