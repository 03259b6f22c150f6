#!/usr/bin/env bash
# Create (or reuse) the project's Python 3.10 environment and point .venv at it.
# The environment lives in a cache folder keyed by the hash of requirements.txt, so a fresh clone on the
# same machine (as CI makes) reuses it; a stamp file marks a completed install, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

req_hash=$(sha256sum < requirements.txt | cut -c1-16)
cache_root="${DETNAS_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/detnas_d2/envs}"
env_dir="$cache_root/py310-$req_hash"
stamp="$env_dir/.detnas_install_complete"

find_python310() {
  local searched=()
  for cand in "${DETNAS_PYTHON:-}" python3.10; do
    [ -n "$cand" ] || continue
    searched+=("$cand (PATH)")
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
      command -v "$cand"; return 0
    fi
  done
  local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
  for cand in "$pyenv_root"/versions/3.10*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10; do
    searched+=("$cand")
    if [ -x "$cand" ] && "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  {
    echo "error: no Python 3.10 interpreter found (sal-detectron2 wheels are built for Python 3.10)."
    echo "searched: ${searched[*]}"
    echo "install Python 3.10 (e.g. 'pyenv install 3.10') or set DETNAS_PYTHON=/path/to/python3.10"
  } >&2
  return 1
}

mkdir -p "$cache_root"
exec 9>"$env_dir.lock"
flock 9  # one bootstrap at a time per environment
if [ ! -f "$stamp" ]; then
  py=$(find_python310)
  echo "[bootstrap] creating environment $env_dir with $py (one-time, a few minutes)"
  # The stamp is written last: an interrupted install is never trusted and is rebuilt from scratch.
  rm -rf "$env_dir"
  "$py" -m venv "$env_dir"
  "$env_dir/bin/python" -m pip install -q --upgrade pip
  "$env_dir/bin/python" -m pip install -q -r requirements.txt
  touch "$stamp"
fi
flock -u 9

ln -sfn "$env_dir" .venv
# The package itself is installed editable per checkout (seconds), since each clone has its own source folder.
# The check runs from / without PYTHONPATH: from the checkout root, Python would find the checkout's own detnas_d2
# on sys.path and call it installed while the console scripts and the benchmarks (run from benchmarks/) lack it.
here=$(pwd -P)
# A console script added to setup.py since the last install is missing from .venv/bin: reinstall then too.
missing_scripts=$(sed -n 's/^ *"\([a-z0-9-]*\) = .*/\1/p' setup.py | while read -r name; do [ -x ".venv/bin/$name" ] || echo "$name"; done)
if [ -n "$missing_scripts" ] || ! (cd / && env -u PYTHONPATH "$here/.venv/bin/python" -c "import importlib.util as u, os, sys; s = u.find_spec('detnas_d2'); sys.exit(0 if s and os.path.dirname(os.path.dirname(os.path.realpath(s.origin))) == '$here' else 1)") 2>/dev/null; then
  echo "[bootstrap] pip install -e . (this checkout: $here)"
  # an editable install builds a wheel: setuptools' bdist_wheel needs the wheel package (venv does not ship it)
  .venv/bin/python -c "import wheel" 2>/dev/null || .venv/bin/python -m pip install -q wheel
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
fi
