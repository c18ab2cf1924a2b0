"""Where the product's cold time goes: runs a bootstrap built with symbols (strip = false) under
the same emulator, moto server and proxy as bench.py, wrapped in a profiler, for one cold
Create and one warm Create.

  profile.py BOOTSTRAP --tool callgrind [--tls]   instruction counts (valgrind): one dump per
                                                  invocation (init + cold Create, warm Create)
  profile.py BOOTSTRAP --tool perf [--tls]        CPU samples (perf record -e cpu-clock -g); read with
                                                  perf report -i .bench/profile/perf.data --comm bootstrap…
  profile.py BOOTSTRAP --tool strace [--tls]      every system call, timestamped (strace -f -tt -T)

A build with symbols, without disturbing target/:
  CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=/tmp/prof cargo build --release --locked
Read the callgrind dumps with callgrind_annotate --inclusive=yes FILE (see bench/README.md).
"""

import argparse
import glob
import os
import signal
import stat
import subprocess
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bootstrap")
    parser.add_argument("--tool", choices=("callgrind", "perf", "strace"), default="callgrind")
    parser.add_argument("--tls", action="store_true", help="HTTPS everywhere, as in bench.py --tls")
    parser.add_argument("--out", default=os.path.join(bench.REPO, ".bench", "profile"))
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    for old in glob.glob(os.path.join(out, f"{args.tool}.*")):
        os.remove(old)

    binary = os.path.abspath(args.bootstrap)
    if args.tool == "callgrind":
        # One dump at the end of each invocation (the handler's future is dropped once per request).
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.%p",
                   "--dump-after=*drop_in_place<cloud_app_security_connector::handler::Handler::handle*",
                   binary]
    elif args.tool == "perf":
        # perf cannot run inside the emulator's PID namespace: it samples the whole machine from
        # outside, around the two invocations (software clock: no hardware counters in a VM).
        command = [binary]
    else:
        command = ["strace", "-f", "-tt", "-T", "-s", "160", "-o", f"{out}/strace.txt", binary]
    wrapper = os.path.join(out, "bootstrap-wrapper")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec " + " ".join(f"'{c}'" for c in command) + "\n")
    os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IEXEC)

    options = types.SimpleNamespace(tls=args.tls, peer_python=sys.executable, warm_rounds=0)
    b = bench.Bench(options, out)
    b.start_services()
    emulator = None
    try:
        env = b.env(peer=False)
        env["AWS_LAMBDA_FUNCTION_TIMEOUT"] = "300"
        emulator = bench.Emulator(wrapper, env, os.path.join(out, "emulator.log"))
        url = b.https_url if args.tls else b.http_url
        perf = None
        if args.tool == "perf":
            perf = subprocess.Popen(["perf", "record", "-a", "-g", "-e", "cpu-clock", "-F", "10000",
                                     "-o", f"{out}/perf.data"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        for phase, name in (("cold", "profile-cold"), ("warm", "profile-warm")):
            s = b.invoke(emulator, "Create", name, url)
            print(f"{phase} Create: invoke → answer {s['answer_ms']:.0f} ms, init {s['init_ms']} ms, "
                  f"handler {s['handler_ms']} ms (under {args.tool})")
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()
        for name in ("profile-cold", "profile-warm"):
            b.invoke(emulator, "Delete", name, url)
    finally:
        if emulator:
            emulator.stop()
        b.stop_services()
    print(f"output: {out}")
    for f in sorted(glob.glob(os.path.join(out, f"{args.tool}*"))):
        print("  ", os.path.basename(f))


if __name__ == "__main__":
    main()
