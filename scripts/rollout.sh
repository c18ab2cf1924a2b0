#!/usr/bin/env bash
# Organization rollout with a service-managed StackSet: see scripts/rollout.py --help.
# Installs only what the rollout itself needs into .venv/rollout/: boto3 and PyYAML
# (scripts/requirements-rollout.txt) and, when `deploy` must build the zip (no --zip, no --dry-run),
# cargo-lambda with zig (scripts/requirements-build.txt). Needs Python 3, and Rust to build.
set -euo pipefail
cd "$(dirname "$0")/.."

# Only `deploy` builds the zip, and not with --zip or --dry-run.
build=no
case "${1:-}" in deploy|--?*) build=yes ;; esac   # no command at all is `deploy`, as in the first releases
for arg in "$@"; do
  case "$arg" in
    --zip|--zip=*|--dry-run|-h|--help) build=no ;;
  esac
done

venv=.venv/rollout
requirements=(scripts/requirements-rollout.txt)
[ "$build" = yes ] && requirements+=(scripts/requirements-build.txt)
stamp="$venv/.requirements.sha256"
want=$(cat "${requirements[@]}" | sha256sum | cut -d' ' -f1)
if ! [ -x "$venv/bin/python" ] || ! grep -qx "$want" "$stamp" 2>/dev/null; then
  echo "==> installing the rollout's dependencies into $venv/ (${requirements[*]})"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]/#/-r}"
  echo "$want" >> "$stamp"
fi
# cargo-lambda, and the `python -m ziglang` it falls back to for zig, from that virtualenv.
export PATH="$PWD/$venv/bin:$PATH"
exec "$venv/bin/python" scripts/rollout.py "$@"
