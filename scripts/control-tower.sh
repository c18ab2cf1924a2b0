#!/usr/bin/env bash
# Control Tower proactive controls: runs the Control Tower rules that ship with cfn-guard (npm
# package @cdklabs/cdk-validator-cfnguard, pinned below; a test tool, never shipped) over
# template.yaml, deploy/stackset.yaml, deploy/artifact-bucket.yaml and deploy/fleet.yaml, each resource resolved as a
# CloudFormation hook sees it (scripts/control_tower.py), and compares the failures with the
# accepted exceptions in tests/control_tower_exceptions.yaml. Fails on a failure not listed there
# and on a listed exception that no longer fails.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.0.62
# sha256 of the npm tarball (npm pack @cdklabs/cdk-validator-cfnguard@0.0.62).
SHA256=660c14562d4c79d524d0623d80d494e41797acae9da23ecb10915d7f66ada80c
TOOLS=.control-tower
STAMP=$TOOLS/.installed-$VERSION

if [[ ! -f $STAMP ]]; then
  rm -rf "$TOOLS"
  mkdir -p "$TOOLS"
  tarball=$(cd "$TOOLS" && npm pack "@cdklabs/cdk-validator-cfnguard@$VERSION" --silent --loglevel=error | tail -1)
  echo "$SHA256  $TOOLS/$tarball" | sha256sum --check --quiet
  tar -xzf "$TOOLS/$tarball" -C "$TOOLS" package/bin/ubuntu/x86_64/cfn-guard package/rules/control-tower/cfn-guard/
  rm "$TOOLS/$tarball"
  touch "$STAMP"
fi

.venv/bin/python scripts/control_tower.py \
  --cfn-guard "$TOOLS/package/bin/ubuntu/x86_64/cfn-guard" \
  --rules "$TOOLS/package/rules/control-tower/cfn-guard" "$@"
