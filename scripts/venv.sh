#!/usr/bin/env bash
# Creates (or refreshes) the repository's virtualenv .venv/ with the pinned test and local-run
# tools: moto server, aws-sam-cli (which ships the Lambda Runtime Interface Emulator), cfn-lint.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
stamp=.venv/.requirements.sha256
want=$(sha256sum scripts/requirements.txt | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "==> installing pinned Python tools into .venv/ (scripts/requirements.txt)"
"$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
echo "$want" > "$stamp"
