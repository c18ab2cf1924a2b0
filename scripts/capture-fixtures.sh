#!/usr/bin/env bash
# Captures, once per release, the AWS state each earlier release leaves behind as
# tests/fixtures/<version>/<scenario>.json (format: tests/fixtures/README.md): each release is
# checked out into /work/rel/<version>, built there (CARGO_TARGET_DIR=/work/rel-target), and run
# under the Lambda Runtime Interface Emulator against moto server. Not part of scripts/test.sh.
# Arguments go to scripts/capture_fixtures.py (--help, --release, --scenario, --no-build, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0
bash scripts/venv.sh
exec .venv/bin/python scripts/capture_fixtures.py "$@"
