#!/usr/bin/env bash
# `sam local invoke` for real, on the bootstrap `sam build` built, through podman's Docker API,
# against moto server and a local stand-in for CloudFormation's response URL: Create, Update, the
# key check and Delete of events/ in portal mode (scripts/local_invoke_moto.py). Prints each answer,
# the AWS state after it and the time the invokes took; exits non-zero unless every CloudFormation
# event got exactly one SUCCESS answer with the expected PhysicalResourceId and Data (`sam` itself
# exits 0 even when the function never answered).
#
#   scripts/local-invoke.sh [BOOTSTRAP]
#     BOOTSTRAP  default target/sam-artifact/build/ConnectorFunction/bootstrap, what
#                scripts/test-artifact.sh builds with `sam build` (x86_64). Its architecture must
#                be this machine's: no QEMU here (docs/architectures.md).
#
# Installs what it needs (as root, once; skipped when present): podman, runc, netavark,
# aardvark-dns, iptables and busybox-static from Debian. Everything else stays in .local-invoke/
# (git-ignored): podman's containers.conf and storage, its API socket, the stand-in image's files,
# moto's log and each invoke's SAM/function log. No registry is reachable, so the image SAM wants
# (public.ecr.aws/lambda/provided:al2023-<arch>) is a local stand-in: FROM scratch, a static
# busybox (SAM's Dockerfile on it RUNs mv and chmod), this machine's glibc libraries and CA bundle,
# Lambda's environment. It is Debian's glibc 2.36, not Amazon Linux's 2.34: scripts/artifact_elf.py
# checks that separately. Everything started here (podman service, the idle container that keeps
# the bridge up, moto) is stopped on exit, failure or interrupt.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
repo=$(pwd)
bootstrap=$(realpath -m "${1:-target/sam-artifact/build/ConnectorFunction/bootstrap}")
[ -x "$bootstrap" ] || { echo "no executable bootstrap at $bootstrap (run scripts/test-artifact.sh first)" >&2; exit 1; }
start_all=$(date +%s)
export SAM_CLI_TELEMETRY=0
bash scripts/venv.sh

case "$(uname -m)" in
  x86_64) arch=x86_64 machine='X86-64' ;;
  aarch64) arch=arm64 machine='AArch64' ;;
  *) echo "unsupported host architecture $(uname -m)" >&2; exit 1 ;;
esac
header=$(LC_ALL=C readelf -h "$bootstrap" 2>&1 || true)
if ! grep -q "Machine:.*$machine" <<< "$header"; then
  echo "$bootstrap is not a $arch binary: SAM would run it in a $arch container here (see docs/architectures.md)" >&2
  exit 1
fi

echo "==> podman (Debian packages)"
packages="podman runc netavark aardvark-dns iptables busybox-static"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  [ "$(id -u)" = 0 ] || { echo "missing Debian packages:$missing (install them as root)" >&2; exit 1; }
  echo "    installing:$missing"
  t=$(date +%s)
  # An empty package list (a fresh container) needs one update first.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  echo "    apt took $(( $(date +%s) - t )) s"
fi

# Podman's configuration, storage and state in a folder of our own; nothing in /etc changes. The
# machine's limits (nofile 20000, no CAP_SYS_RESOURCE) and its mixed cgroup v1/v2 break podman's
# defaults (crun's setrlimit, systemd cgroups): runc, cgroupfs, explicit ulimits. Netavark, or
# the shipped CNI config is used and fails (no bridge plugin).
state="$repo/.local-invoke"
mkdir -p "$state/storage" "$state/run" "$state/tmp" "$state/logs"
# One run at a time: runs share the folder, the container name and the socket.
exec 9> "$state/lock"
flock 9
cat > "$state/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
tmp_dir = "$state/tmp"
[network]
network_backend = "netavark"
EOF
cat > "$state/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$state/storage"
runroot = "$state/run"
EOF
export CONTAINERS_CONF="$state/containers.conf" CONTAINERS_STORAGE_CONF="$state/storage.conf"
socket="$state/podman.sock"
export DOCKER_HOST="unix://$socket"
anchor=cas-local-invoke-bridge
service_pid="" moto_pid="" driver_pid="" pids=""

# Ends, by PID, whatever still runs from our folder — found by the folder's path in its command
# line: a podman service (killing one can leave a second one re-parented to PID 1), conmon. Only a
# run of this script (holding the lock) starts such processes.
sweep() {
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local left="" d
    for d in /proc/[0-9]*; do
      [ "${d#/proc/}" = $$ ] && continue
      { tr '\0' ' ' < "$d/cmdline"; } 2>/dev/null | grep -qF -- "$state/" && left="$left ${d#/proc/}"
    done
    [ -z "$left" ] && return 0
    # shellcheck disable=SC2086
    kill $left 2>/dev/null || true
    sleep 0.3
  done
}

# Ends what this script started: the driver, moto, the containers (all in our own storage: the idle
# one, any SAM left), the podman service, then the sweep.
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # The driver leads a process group of its own, with the `sam` it runs: end both, and wait, so
  # that no `sam` creates a container after the clean-up below.
  if [ -n "$driver_pid" ] && kill -TERM -- "-$driver_pid" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 -- "-$driver_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$driver_pid" 2>/dev/null || true
  fi
  if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; fi
  podman rm --all --force --time 0 >/dev/null 2>&1 || true
  if [ -n "$service_pid" ]; then kill "$service_pid" 2>/dev/null || true; wait "$service_pid" 2>/dev/null || true; fi
  sweep
  rm -rf "$socket" "$pids" "$state/work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# What a run killed with -9 left: its processes (moto and the driver by the PIDs it recorded, when
# they still run those programs; `sam` with the driver's group), its socket, its containers.
pids="$state/pids"
if [ -f "$pids" ]; then
  while read -r name pid program; do
    { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$program" || continue
    echo "    ending $name (PID $pid), left by an earlier run"
    if [ "$name" = driver ]; then kill -KILL -- "-$pid" 2>/dev/null || true; else kill "$pid" 2>/dev/null || true; fi
  done < "$pids"
fi
: > "$pids"
sweep
rm -rf "$state/work"
rm -f "$socket"
podman rm --all --force --time 0 >/dev/null 2>&1 || true
# (9>&-: the lock stays with this script, not with what it starts.)
(exec podman system service --time=0 "unix://$socket" > "$state/logs/podman-service.log" 2>&1 9>&-) &
service_pid=$!

# The stand-in for SAM's base image, rebuilt only when its inputs change (and SAM's image on it
# with them: SAM rebuilds its own only when missing).
image="public.ecr.aws/lambda/provided:al2023-$arch"
rapid="public.ecr.aws/lambda/provided:al2023-rapid-$arch"
case "$arch" in
  x86_64) libdir=/lib/x86_64-linux-gnu loader=/lib64/ld-linux-x86-64.so.2 ;;
  arm64) libdir=/lib/aarch64-linux-gnu loader=/lib/ld-linux-aarch64.so.1 ;;
esac
rie=$(ls "$repo"/.venv/lib/python*/site-packages/samcli/local/rapid/aws-lambda-rie-"$arch")
ca=/etc/ssl/certs/ca-certificates.crt
libs="$loader"
for l in libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2 libutil.so.1 \
         libnss_files.so.2 libnss_dns.so.2; do
  libs="$libs $libdir/$l"
done
# shellcheck disable=SC2086
inputs=$( { echo v1; sha256sum /bin/busybox $ca "$rie" $(readlink -f $libs); } | sha256sum | cut -c1-16)
have=$(podman image inspect --format '{{index .Labels "cas.local-invoke.inputs"}}' "$image" 2>/dev/null || true)
if [ "$have" != "$inputs" ]; then
  echo "==> building the stand-in for $image"
  ctx="$state/image"
  rm -rf "$ctx"
  mkdir -p "$ctx"/rootfs/{bin,lib64,var/runtime,var/task,var/rapid,opt,tmp,etc/pki/tls/certs,etc/ssl/certs}
  cp /bin/busybox "$ctx/rootfs/bin/"
  for t in sh mv chmod cp rm ls cat sleep; do ln -s busybox "$ctx/rootfs/bin/$t"; done
  # shellcheck disable=SC2086
  for l in $libs; do cp -L "$l" "$ctx/rootfs/lib64/"; done
  [ "$arch" = arm64 ] && mkdir -p "$ctx/rootfs/lib" && ln -s ../lib64/ld-linux-aarch64.so.1 "$ctx/rootfs/lib/"
  cp -L "$ca" "$ctx/rootfs/etc/pki/tls/certs/ca-bundle.crt"
  ln -s ../../pki/tls/certs/ca-bundle.crt "$ctx/rootfs/etc/ssl/certs/ca-bundle.crt"
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$ctx/rootfs/etc/passwd"
  printf 'root:x:0:\n' > "$ctx/rootfs/etc/group"
  cat > "$ctx/Containerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV LANG=en_US.UTF-8 TZ=:/etc/localtime PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin \
    LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib \
    LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime
LABEL cas.local-invoke.inputs=$inputs
WORKDIR /var/task
ENTRYPOINT ["/var/rapid/aws-lambda-rie"]
EOF
  podman rmi --force "$rapid" "$image" >/dev/null 2>&1 || true
  podman build --quiet --tag "$image" "$ctx" >/dev/null
  rm -rf "$ctx"
fi

# Podman's bridge exists only while a container is on it: an idle one keeps it (and its gateway
# address, where moto and the recorder listen) up between the invokes.
podman run --detach --name "$anchor" --entrypoint /bin/sleep "$image" 3600 >/dev/null 9>&-
gateway=$(podman network inspect podman --format '{{range .Subnets}}{{.Gateway}}{{end}}')
# A free port on the gateway, once the bridge has the address.
moto_port=$(.venv/bin/python -c "
import socket, sys, time
for _ in range(50):
    try:
        with socket.socket() as s:
            s.bind(('$gateway', 0))
            print(s.getsockname()[1])
            break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit(\"podman's bridge never got its gateway address $gateway\")
")
# Managed policies (SecurityAudit) exist only with this variable.
(MOTO_IAM_LOAD_MANAGED_POLICIES=true exec .venv/bin/moto_server -H "$gateway" -p "$moto_port" \
  > "$state/logs/moto.log" 2>&1 9>&-) &
moto_pid=$!
echo "moto $moto_pid moto_server" >> "$pids"
for _ in $(seq 100); do
  .venv/bin/python -c "import socket; socket.create_connection(('$gateway', $moto_port), 1).close()" 2>/dev/null && break
  kill -0 "$moto_pid" 2>/dev/null || { echo "moto server did not start (see $state/logs/moto.log)" >&2; exit 1; }
  sleep 0.1
done
echo "==> moto server on $gateway:$moto_port (the container's http://host.containers.internal:$moto_port)"
for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.1; done
[ -S "$socket" ] || { echo "podman system service did not start (see $state/logs/podman-service.log)" >&2; exit 1; }
echo "    set-up took $(( $(date +%s) - start_all )) s"

setsid .venv/bin/python scripts/local_invoke_moto.py "$bootstrap" --gateway "$gateway" --moto-port "$moto_port" \
  --logs "$state/logs" --work "$state/work" 9>&- &
driver_pid=$!
echo "driver $driver_pid local_invoke_moto.py" >> "$pids"
wait "$driver_pid"
