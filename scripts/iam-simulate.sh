#!/usr/bin/env bash
# Proves the connector role's grants (and the user's boundary, and the fleet's reader role and who
# may assume it) with an IAM policy simulator: installs the pinned @cloud-copilot/iam-simulate
# (tests/iam/package-lock.json; a test tool, never shipped), resolves both templates' policies for
# every scenario and the case table (tests/iam/resolve.py), then runs each case in strict mode
# (tests/iam/simulate.mjs). Exits non-zero on any case that does not decide as tests/iam/cases.yaml
# expects.
set -euo pipefail
cd "$(dirname "$0")/.."

IAM=tests/iam
STAMP=$IAM/node_modules/.installed-from-lock.sha256
lock_hash=$(sha256sum "$IAM/package-lock.json" | cut -d' ' -f1)
# npm ci wipes and reinstalls node_modules: only when the lock file changed since the last one.
if [[ ! -f $STAMP || $(cat "$STAMP") != "$lock_hash" ]]; then
  npm ci --prefix "$IAM" --no-audit --no-fund --loglevel=error >/dev/null
  echo "$lock_hash" >"$STAMP"
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
.venv/bin/python "$IAM/resolve.py" "$out"
node "$IAM/simulate.mjs" "$out"
