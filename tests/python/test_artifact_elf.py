"""scripts/artifact_elf.py's parser and rules, on synthetic readelf output. (The check itself runs on
the artifact `sam build` ships, in scripts/test-artifact.sh.)"""

import shutil

import pytest

import artifact_elf

HEADER = """ELF Header:
  Class:                             ELF64
  Machine:                           Advanced Micro Devices X86-64
"""
DYNAMIC = """
Dynamic section at offset 0x6d1d58 contains 30 entries:
  Tag        Type                         Name/Value
 0x0000000000000001 (NEEDED)             Shared library: [libgcc_s.so.1]
 0x0000000000000001 (NEEDED)             Shared library: [{lib}]
 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]
 0x0000000000000001 (NEEDED)             Shared library: [ld-linux-x86-64.so.2]
 0x000000000000000c (INIT)               0x1a000
 0x000000006ffffffe (VERNEED)            0x1718
 0x0000000000000000 (NULL)               0x0
"""
VERSIONS = """
Version symbols section '.gnu.version' contains 5 entries:
 Addr: 0x000000000000161a  Offset: 0x0000161a  Link: 6 (.dynsym)
  000:   0 (*local*)       2 (GLIBC_2.2.5)   3 (GCC_3.0)       4 ({new})
  004:   5 (GLIBC_2.34)

Version needs section '.gnu.version_r' contains 3 entries:
 Addr: 0x0000000000001718  Offset: 0x00001718  Link: 7 (.dynstr)
  000000: Version: 1  File: libgcc_s.so.1  Cnt: 1
  0x0010:   Name: GCC_3.0  Flags: none  Version: 3
  0x0020: Version: 1  File: libc.so.6  Cnt: 3
  0x0030:   Name: {new}  Flags: none  Version: 4
  0x0040:   Name: GLIBC_2.34  Flags: none  Version: 5
  0x0050:   Name: GLIBC_2.2.5  Flags: none  Version: 2
"""
SYMBOLS = """
Symbol table '.dynsym' contains 5 entries:
   Num:    Value          Size Type    Bind   Vis      Ndx Name
     0: 0000000000000000     0 NOTYPE  LOCAL  DEFAULT  UND 
     1: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND _Unwind_Resume@GCC_3.0 (3)
     2: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND {symbol}@{new} (4)
     3: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND __libc_start_main@GLIBC_2.34 (5)
     4: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND memcpy@GLIBC_2.2.5 (2)
     5: 00000000001a2b30   120 FUNC    GLOBAL DEFAULT   14 exported_thing
"""


def readelf_text(lib="libm.so.6", new="GLIBC_2.18", symbol="__cxa_thread_atexit_impl", sections=None):
    parts = {"header": HEADER, "dynamic": DYNAMIC.format(lib=lib), "versions": VERSIONS.format(new=new),
             "symbols": SYMBOLS.format(new=new, symbol=symbol)}
    return "".join(parts[s] for s in (sections or parts))


def test_a_binary_within_al2023s_glibc_and_libraries_passes():
    elf = artifact_elf.parse(readelf_text())
    assert elf.machine == "Advanced Micro Devices X86-64"
    assert elf.needed == ["libgcc_s.so.1", "libm.so.6", "libc.so.6", "ld-linux-x86-64.so.2"]
    assert elf.versions == {"libgcc_s.so.1": ["GCC_3.0"], "libc.so.6": ["GLIBC_2.18", "GLIBC_2.34", "GLIBC_2.2.5"]}
    assert ("memcpy", "GLIBC_2.2.5") in elf.symbols and len(elf.symbols) == 4
    assert artifact_elf.newest_glibc(elf) == (2, 34)
    assert artifact_elf.problems(elf) == []


def test_a_symbol_newer_than_2_34_fails_naming_the_symbol():
    elf = artifact_elf.parse(readelf_text(new="GLIBC_2.38", symbol="__isoc23_strtol"))
    assert artifact_elf.newest_glibc(elf) == (2, 38)
    assert artifact_elf.problems(elf) == [
        "symbol __isoc23_strtol@GLIBC_2.38: newer than provided.al2023's glibc 2.34"]


def test_versions_compare_as_numbers_not_strings():
    # "2.4" < "2.34" and "2.3.4" < "2.34" as versions; "2.4" > "2.34" as strings.
    assert artifact_elf.problems(artifact_elf.parse(readelf_text(new="GLIBC_2.4"))) == []
    assert artifact_elf.problems(artifact_elf.parse(readelf_text(new="GLIBC_2.3.4"))) == []
    assert artifact_elf.problems(artifact_elf.parse(readelf_text(new="GLIBC_2.35")))
    assert artifact_elf.glibc_version("GCC_3.0") is None and artifact_elf.glibc_version("GLIBC_PRIVATE") is None


def test_a_library_al2023_does_not_have_fails_naming_it():
    elf = artifact_elf.parse(readelf_text(lib="libssl.so.3"))
    assert artifact_elf.problems(elf) == ["NEEDED libssl.so.3: not a library provided.al2023 has"]


def test_a_version_needed_without_the_symbol_table_still_fails():
    elf = artifact_elf.parse(readelf_text(new="GLIBC_2.35", sections=["header", "dynamic", "versions"]))
    assert artifact_elf.problems(elf) == ["libc.so.6 version GLIBC_2.35: newer than provided.al2023's glibc 2.34"]


def test_glibc_private_fails():
    elf = artifact_elf.parse(readelf_text(new="GLIBC_PRIVATE", symbol="_dl_x"))
    assert artifact_elf.problems(elf) == [
        "symbol _dl_x@GLIBC_PRIVATE: glibc's private interface, not stable across versions"]


def test_main_fails_and_prints_on_a_bad_binary(monkeypatch, capsys):
    monkeypatch.setattr(artifact_elf, "readelf", lambda path: readelf_text(new="GLIBC_2.36", symbol="arc4random"))
    with pytest.raises(SystemExit) as exit:
        artifact_elf.main(["bootstrap"])
    assert "would not load on provided.al2023" in str(exit.value)
    out = capsys.readouterr().out
    assert "newest GLIBC  2.36" in out and "FAIL  symbol arc4random@GLIBC_2.36" in out
    assert "NEEDED        libgcc_s.so.1, libm.so.6, libc.so.6, ld-linux-x86-64.so.2" in out


@pytest.mark.skipif(not shutil.which("readelf"), reason="no readelf (binutils)")
def test_the_parser_reads_a_real_binary():
    elf = artifact_elf.parse(artifact_elf.readelf(shutil.which("readelf")))
    assert "libc.so.6" in elf.needed and elf.symbols
    assert artifact_elf.newest_glibc(elf) >= (2, 2, 5)
