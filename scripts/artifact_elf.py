"""Proves a Lambda bootstrap loads on provided.al2023: reads the ELF's dynamic section, its dynamic
symbols and its version-needed entries (`readelf`, GNU binutils), and fails when

- a symbol needs a GLIBC_x.y version newer than 2.34 (the glibc of Amazon Linux 2023, which
  provided.al2023 runs on), naming the symbol — the loader would refuse the binary with
  "version `GLIBC_2.35' not found" before main, and CloudFormation would wait for an answer that
  never comes; or
- a NEEDED shared library is not one provided.al2023 has (ALLOWED_LIBRARIES).

Prints the architecture, the newest GLIBC version found and the NEEDED list.

A machine's own glibc (Debian 12: 2.36) runs binaries that need up to its own version, so running
the artifact here (the emulator, `sam local invoke`) does not prove this.

  python3 scripts/artifact_elf.py target/sam-artifact/build/ConnectorFunction/bootstrap
"""

import re
import shutil
import subprocess
import sys

# provided.al2023's glibc (Amazon Linux 2023 ships glibc 2.34).
MAX_GLIBC = (2, 34)
# The libraries a provided.al2023 function may load without bundling them. The image is Amazon
# Linux 2023's minimal base plus the runtime interface: of what a program links against, it holds
# glibc — whose libraries are libc, libm, libpthread, libdl, librt, libutil, libresolv and the
# dynamic loader (x86_64 and arm64 names) — and libgcc_s (the unwinder every Rust binary with
# panic unwinding needs, a dependency of glibc's own packaging there). Anything else (OpenSSL,
# libz, ...) is not guaranteed in the image and would have to ship in the zip: our TLS is rustls
# with aws-lc, built in.
ALLOWED_LIBRARIES = frozenset({
    "libc.so.6", "libm.so.6", "libgcc_s.so.1", "libpthread.so.0", "libdl.so.2", "librt.so.1",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "libutil.so.1", "libresolv.so.2",
})

NEEDED = re.compile(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]")
VERNEED_FILE = re.compile(r"^\s*(?:0x)?[0-9a-fA-F]+:\s+Version: \d+\s+File: (\S+)\s+Cnt: \d+")
VERNEED_NAME = re.compile(r"^\s*(?:0x)?[0-9a-fA-F]+:\s+Name: (\S+)\s+Flags:")
# An undefined (imported) dynamic symbol with its version: `... UND name@GLIBC_2.34 (6)`.
DYNSYM = re.compile(r"^\s*\d+:\s+[0-9a-fA-F]+\s+\d+\s+\S+\s+\S+\s+\S+\s+UND\s+([^\s@]+)@{1,2}(\S+)")
MACHINE = re.compile(r"^\s*Machine:\s+(.+?)\s*$")
GLIBC = re.compile(r"^GLIBC_(\d+(?:\.\d+)*)$")


class Elf:
    """What the loader needs from the system to run a binary."""

    def __init__(self):
        self.machine = None
        self.needed = []  # NEEDED libraries, in order
        self.versions = {}  # library -> version names required from it
        self.symbols = []  # (symbol, version) of imported versioned symbols


def parse(text):
    """Reads `readelf -W --file-header --dynamic --version-info --dyn-syms` output."""
    elf, library = Elf(), None
    for line in text.splitlines():
        if m := MACHINE.match(line):
            elf.machine = elf.machine or m.group(1)
        elif m := NEEDED.search(line):
            elf.needed.append(m.group(1))
        elif m := VERNEED_FILE.match(line):
            library = m.group(1)
            elf.versions.setdefault(library, [])
        elif (m := VERNEED_NAME.match(line)) and library is not None:
            elf.versions[library].append(m.group(1))
        elif m := DYNSYM.match(line):
            elf.symbols.append((m.group(1), m.group(2)))
    return elf


def glibc_version(name):
    """`GLIBC_2.3.4` → (2, 3, 4); None for any other version name (GCC_3.0, GLIBC_PRIVATE)."""
    m = GLIBC.match(name)
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def fmt(version):
    return ".".join(map(str, version))


def newest_glibc(elf):
    found = [v for names in elf.versions.values() for v in map(glibc_version, names) if v]
    found += [v for _, name in elf.symbols if (v := glibc_version(name))]
    return max(found, default=None)


def problems(elf, max_glibc=MAX_GLIBC, allowed=ALLOWED_LIBRARIES):
    """Why the binary would not load on provided.al2023; empty when it would."""
    found = []
    for library in elf.needed:
        if library not in allowed:
            found.append(f"NEEDED {library}: not a library provided.al2023 has")
    too_new = set()
    for symbol, name in elf.symbols:
        if name == "GLIBC_PRIVATE":
            found.append(f"symbol {symbol}@GLIBC_PRIVATE: glibc's private interface, not stable across versions")
        elif (v := glibc_version(name)) and v > max_glibc:
            too_new.add(name)
            found.append(f"symbol {symbol}@{name}: newer than provided.al2023's glibc {fmt(max_glibc)}")
    # A version required without a symbol naming it (readelf without --dyn-syms): still refused.
    for library, names in sorted(elf.versions.items()):
        for name in names:
            if (v := glibc_version(name)) and v > max_glibc and name not in too_new:
                found.append(f"{library} version {name}: newer than provided.al2023's glibc {fmt(max_glibc)}")
    return found


def readelf(path):
    tool = shutil.which("readelf")
    if not tool:
        sys.exit("readelf not found: install GNU binutils (apt-get install binutils)")
    result = subprocess.run([tool, "-W", "--file-header", "--dynamic", "--version-info", "--dyn-syms", path],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"readelf failed on {path}: {result.stderr.strip()}")
    return result.stdout


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit(__doc__)
    elf = parse(readelf(argv[0]))
    if not elf.machine:
        sys.exit(f"{argv[0]}: not an ELF file readelf understands")
    newest = newest_glibc(elf)
    print(f"   architecture  {elf.machine}")
    print(f"   NEEDED        {', '.join(elf.needed) or 'none (static)'}")
    print(f"   newest GLIBC  {fmt(newest) if newest else 'none'} (provided.al2023 has {fmt(MAX_GLIBC)})")
    print(f"   versioned imports {len(elf.symbols)}")
    found = problems(elf)
    for p in found:
        print(f"   FAIL  {p}")
    if found:
        sys.exit(f"{argv[0]} would not load on provided.al2023 ({len(found)} problem(s) above)")
    print("   ok: loads on provided.al2023 as far as its ELF tells")
    return elf


if __name__ == "__main__":
    main()
