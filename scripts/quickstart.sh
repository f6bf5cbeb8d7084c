#!/usr/bin/env bash
# Install xmonbridge into .venv, initialise ./instance, create the first administrator
# (its password is printed once) and serve http://127.0.0.1:8000 in simulate mode.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  # Debian ships venv separately.
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e .

export XMONBRIDGE_INSTANCE="${XMONBRIDGE_INSTANCE:-$PWD/instance}"
export TWILIO_MODE="${TWILIO_MODE:-simulate}"
.venv/bin/xmonbridge init
.venv/bin/xmonbridge create-user admin --name 管理者 --admin --approver --if-missing
exec .venv/bin/xmonbridge serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
