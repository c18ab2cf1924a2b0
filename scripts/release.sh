#!/usr/bin/env bash
# Builds a release into dist/<version>/ (the bootstrap zips, the packaged SAM template, the StackSet
# and artifact-bucket templates, README, LICENSE, CHANGELOG, SHA256SUMS) and snapshots the
# templates into releases/<version>/: see scripts/release.py --help.
#
#   scripts/release.sh [--s3-bucket BUCKET --region REGION]   (publish to the Serverless Application
#                                                              Repository: needs an AWS account)
#   scripts/release.sh --snapshot-only                        (only releases/<version>/)
#
# Installs what it uses into .venv/: the pinned tools (scripts/venv.sh) and, to build, cargo-lambda
# with zig (scripts/requirements-build.txt), as scripts/test-artifact.sh does. Needs Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

export SAM_CLI_TELEMETRY=0
build=yes
for arg in "$@"; do
  case "$arg" in
    --snapshot-only|-h|--help) build=no ;;
  esac
done

bash scripts/venv.sh
if [ "$build" = yes ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements-build.txt
fi
# cargo-lambda, and the `python -m ziglang` it falls back to for zig, from the virtualenv.
export PATH="$repo/.venv/bin:$PATH"
exec .venv/bin/python scripts/release.py "$@"
