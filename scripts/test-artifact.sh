#!/usr/bin/env bash
# Proves the artifact `sam build` ships: builds template.yaml's function with `sam build` (SAM's
# rust-cargolambda builder, i.e. `cargo lambda build --release`, with the settings of
# Cargo.toml's [package.metadata.lambda.build] and [profile.release]) and runs the end-to-end
# tests (tests/emulator.rs) against that bootstrap instead of the one cargo builds for the tests.
#
# The architecture is overridden to x86_64 for this build only, in a copy of the template under
# target/: the emulator here runs x86_64 binaries, and the aarch64 standard library
# (`rustup target add aarch64-unknown-linux-gnu`) cannot be fetched on the CI machines. The
# shipped template stays arm64; both architectures are built by the same command from the same
# profile. Cost: one more release build (see README, "Deploying").
#
#   scripts/test-artifact.sh [--build-only]   (--build-only: the x86_64 sam build, no tests; its
#   template, target/sam-artifact/build/template.yaml, also serves `sam local invoke` on an
#   x86_64 host without QEMU)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
build_only=no
[ "${1:-}" = --build-only ] && build_only=yes

export SAM_CLI_TELEMETRY=0
bash scripts/venv.sh
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements-build.txt
# cargo-lambda (and the `python -m ziglang` it falls back to for zig) from the virtualenv.
export PATH="$repo/.venv/bin:$PATH"

work=target/sam-artifact
rm -rf "$work/build"
mkdir -p "$work"
# The template with the architecture swapped and the code directory made absolute (CodeUri is
# relative to the template's own directory). Fail loudly if either line changed shape.
grep -q '^      Architectures: \[arm64\]$' template.yaml
grep -q '^      CodeUri: \.$' template.yaml
sed -e 's/^      Architectures: \[arm64\]$/      Architectures: [x86_64]/' \
    -e "s|^      CodeUri: \\.\$|      CodeUri: $repo|" template.yaml > "$work/template.yaml"

echo "==> sam build (x86_64 copy of template.yaml)"
start=$(date +%s)
.venv/bin/sam build ConnectorFunction --template-file "$work/template.yaml" --build-dir "$work/build" \
  --no-cached --region us-east-1
echo "    sam build took $(( $(date +%s) - start )) s"

artifact="$work/build/ConnectorFunction/bootstrap"
test -x "$artifact"
# Lambda's provided.al2023 has glibc 2.34 and a fixed set of libraries: a binary that loads on this
# machine (glibc 2.36) can still fail there. Checked on the ELF itself (scripts/artifact_elf.py).
echo "==> ELF check of $artifact (glibc symbol versions, NEEDED libraries)"
.venv/bin/python scripts/artifact_elf.py "$artifact"
[ "$build_only" = yes ] && exit 0
echo "==> end-to-end tests against $artifact"
CAS_BOOTSTRAP="$repo/$artifact" cargo test --locked --test emulator
