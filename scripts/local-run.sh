#!/usr/bin/env bash
# Runs the product's main job locally: the release bootstrap under the Lambda Runtime Interface
# Emulator, against moto server (AWS) and a local endpoint standing in for CloudFormation's
# presigned URL, walking events/create.json → update.json → delete.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0
bash scripts/venv.sh
echo "==> cargo build --release (the first build of the AWS SDK takes 10+ minutes)"
cargo build --release --locked
exec .venv/bin/python scripts/local_run.py target/release/bootstrap "$@"
