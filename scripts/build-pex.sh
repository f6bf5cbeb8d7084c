#!/usr/bin/env bash
# Build dist/xmonbridge.pex: one executable file holding xmonbridge and every dependency, for
# CPython 3.11 on x86_64 Linux (Debian 12's /usr/bin/python3). Copy it to a box and run
# `./xmonbridge.pex init`, `./xmonbridge.pex create-user …`, `./xmonbridge.pex serve`.
#
#   bash scripts/build-pex.sh [--venv DIR] [--output FILE]
#
# Without --venv, a build virtualenv build/pex-venv is made (or updated) with pip from PyPI:
# pex, wheel and xmonbridge's dependencies. With --venv DIR, DIR must already hold them (the
# test virtualenv .venv does, through the `test` extra) and nothing is downloaded.
#
# Steps: (1) a wheel of xmonbridge from a clean copy of the sources; (2) its dependencies,
# taken as wheels from the build virtualenv with pex's --venv-repository; (3) the PEX, resolved
# from those wheels alone (--no-pypi).
set -euo pipefail

venv=""
output=""
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) venv="$(realpath -m "$2")"; shift 2 ;;
    --output) output="$(realpath -m "$2")"; shift 2 ;;
    *) echo "usage: bash scripts/build-pex.sh [--venv DIR] [--output FILE]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
output="${output:-$PWD/dist/xmonbridge.pex}"

download=""
if [ -z "$venv" ]; then
  venv=build/pex-venv
  download=1
  if [ ! -x "$venv/bin/python" ]; then
    python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
    "$python" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q --upgrade 'pex>=2.95.1' wheel
fi
py="$venv/bin/python"
if ! "$py" -c 'import sys; sys.exit(sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11))'; then
  echo "build-pex: $py is not CPython 3.11; the PEX is for Debian 12's Python 3.11." >&2
  exit 1
fi
for module in pex wheel; do
  if ! "$py" -c "import $module" 2>/dev/null; then
    echo "build-pex: $venv has no $module; install it there (pip install pex wheel) or leave out --venv." >&2
    exit 1
  fi
done

mkdir -p build
work="$(mktemp -d "$PWD/build/pex-work.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# (1) Copy the sources first: setuptools reuses build/lib between builds, so a module deleted
# from the tree would otherwise come back in the wheel.
mkdir "$work/src"
tar -cf - --exclude=__pycache__ --exclude='*.pyc' setup.py setup.cfg README.md xmonbridge | tar -xf - -C "$work/src"
"$py" -m pip wheel -q --no-deps --no-build-isolation --no-index -w "$work/wheel" "$work/src"
wheel_file="$(ls "$work"/wheel/xmonbridge-*.whl)"
if [ -n "$download" ]; then
  # Installing the wheel brings its dependencies into the build virtualenv.
  "$py" -m pip install -q "$wheel_file"
fi

# (2) The wheel's own requirements (not the test extra), as wheels from the virtualenv.
"$py" - "$wheel_file" > "$work/requirements.txt" <<'EOF'
import sys
import zipfile
from email.parser import Parser

with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(wheel.read(name).decode())
for requirement in metadata.get_all("Requires-Dist") or []:
    if "extra ==" not in requirement:
        print(requirement)
EOF
"$venv/bin/pex" --no-pypi --venv-repository "$venv" -r "$work/requirements.txt" \
  --no-pre-install-wheels --layout packed -o "$work/deps" >/dev/null

# (3) --sh-boot: /bin/sh finds the unpacked copy under PEX_ROOT and runs it directly, so a run
# after the first costs milliseconds (a notification storm runs `notify` hundreds of times).
version="$(basename "$wheel_file" | cut -d- -f2)"
mkdir -p "$(dirname "$output")"
"$venv/bin/pex" --no-pypi --find-links "$work/deps/.deps" --find-links "$work/wheel" \
  "xmonbridge==$version" --console-script xmonbridge \
  --python "$py" --interpreter-constraint 'CPython==3.11.*' --python-shebang '/usr/bin/env python3' \
  --venv --sh-boot -o "$output.tmp" >/dev/null
mv "$output.tmp" "$output"
echo "built $output ($(du -h "$output" | cut -f1), sha256 $(sha256sum "$output" | cut -d' ' -f1))"
