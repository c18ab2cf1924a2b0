#!/usr/bin/env bash
# Benchmark (issue 12): the release bootstrap and the Python peer (crhelper + boto3) side by
# side under the Lambda Runtime Interface Emulator against moto server, AWS calls counted at a
# proxy. Prints a markdown table. Not part of the test command.
#
#   scripts/bench.sh                         builds target/release/bootstrap, then measures it
#   scripts/bench.sh path/to/bootstrap       measures that binary (no build)
#   scripts/bench.sh [BOOTSTRAP] --runs 9    any further options go to bench/bench.py (--help),
#                                            e.g. --tls (HTTPS everywhere), --warm-rounds 3
#   BENCH_LABEL=before scripts/bench.sh ...  the product's column header (default: product)
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0

bash scripts/venv.sh
stamp=.venv/.bench-requirements.sha256
want=$(sha256sum bench/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing the Python peer's packages into .venv/ (bench/requirements.txt)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
  echo "$want" > "$stamp"
fi

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  bootstrap=$1
  shift
else
  echo "==> cargo build --release --locked" >&2
  cargo build --release --locked >&2
  bootstrap=target/release/bootstrap
fi
exec .venv/bin/python bench/bench.py --target "${BENCH_LABEL:-product}=$bootstrap" "$@"
