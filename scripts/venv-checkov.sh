#!/usr/bin/env bash
# Creates (or refreshes) .venv-checkov/ with checkov, pinned in scripts/requirements-checkov.txt.
# A virtualenv of its own: checkov's dependency pins conflict with aws-sam-cli's and moto's. Like
# scripts/venv.sh it installs only when the pins change, so later runs need no network.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
stamp=.venv-checkov/.requirements.sha256
want=$(sha256sum scripts/requirements-checkov.txt | cut -d' ' -f1)
if [ -x .venv-checkov/bin/checkov ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "==> installing pinned checkov into .venv-checkov/ (scripts/requirements-checkov.txt)"
"$python" -m venv .venv-checkov
.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements-checkov.txt
echo "$want" > "$stamp"
