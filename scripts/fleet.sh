#!/usr/bin/env bash
# The fleet's status and the portal pastes: see scripts/fleet.py --help and docs/fleet.md.
# Uses the rollout's virtualenv, .venv/rollout/, with what scripts/requirements-rollout.txt pins
# (fleet.py needs only boto3 from it); installs it there first if it is missing or out of date.
# Needs Python 3. Read only: it changes nothing in any account.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv/rollout
requirements=(scripts/requirements-rollout.txt)
stamp="$venv/.requirements.sha256"
want=$(cat "${requirements[@]}" | sha256sum | cut -d' ' -f1)
if ! [ -x "$venv/bin/python" ] || ! grep -qx "$want" "$stamp" 2>/dev/null; then
  echo "==> installing the fleet's dependencies into $venv/ (${requirements[*]})" >&2
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]/#/-r}"
  echo "$want" >> "$stamp"
fi
exec "$venv/bin/python" scripts/fleet.py "$@"
