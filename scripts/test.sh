#!/usr/bin/env bash
# Install what the tests need (Debian's Chromium and Japanese fonts, PostgreSQL 15, Nagios
# Core 4 and nginx to run throw-away copies of, the package with its test extra in .venv) and
# run every test.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql)
[ -x /usr/sbin/nagios4 ] || missing+=(nagios4-core)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  # The tests start their own PostgreSQL, Nagios and nginx: keep the packages from starting the
  # system's copies (policy-rc.d refuses every service start during the install).
  added_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  [ -z "$added_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
