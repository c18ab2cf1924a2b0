#!/usr/bin/env bash
# Organization rollout with a service-managed StackSet: see scripts/rollout.py --help.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
exec .venv/bin/python scripts/rollout.py "$@"
