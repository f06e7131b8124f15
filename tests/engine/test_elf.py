"""runner.engine.elf against `readelf` (a tool of this test only) on real and synthetic ELF files."""

from __future__ import annotations

import os
import re
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.engine import elf
from runner.engine.elf import ElfError


def make_elf(
    *,
    bits: int = 64,
    big: bool = False,
    machine: int = 62,
    interp: str | None = "/lib/ld.so.1",
    needed: tuple[str, ...] = ("liba.so.1",),
    runpath: str | None = None,
    rpath: str | None = None,
    soname: str | None = None,
    vaddr: int = 0x10000,
) -> bytes:
    """A minimal ELF: one PT_LOAD over the whole file, PT_INTERP, PT_DYNAMIC + strings."""
    e = ">" if big else "<"
    a = "I" if bits == 32 else "Q"
    ehsize = 52 if bits == 32 else 64
    phfmt = f"I{a}{a}{a}{a}{a}I{a}" if bits == 32 else f"II{a}{a}{a}{a}{a}{a}"
    phentsize = struct.calcsize(e + phfmt)
    phnum = 3 if interp else 2
    data_off = ehsize + phnum * phentsize
    strtab = b"\0"
    index: dict[str, int] = {}
    for text in [*needed, runpath, rpath, soname]:
        if text is not None and text not in index:
            index[text] = len(strtab)
            strtab += text.encode() + b"\0"
    interp_b = interp.encode() + b"\0" if interp else b""
    strtab_off = data_off + len(interp_b)
    dyn = [(elf.DT_NEEDED, index[name]) for name in needed]
    if runpath is not None:
        dyn.append((elf.DT_RUNPATH, index[runpath]))
    if rpath is not None:
        dyn.append((elf.DT_RPATH, index[rpath]))
    if soname is not None:
        dyn.append((elf.DT_SONAME, index[soname]))
    dyn += [(elf.DT_STRTAB, vaddr + strtab_off), (elf.DT_STRSZ, len(strtab)), (elf.DT_NULL, 0)]
    dfmt = "iI" if bits == 32 else "qQ"
    dyn_off = strtab_off + len(strtab)
    dyn_b = b"".join(struct.pack(e + dfmt, tag, val) for tag, val in dyn)
    total = dyn_off + len(dyn_b)

    def ph(kind: int, off: int, size: int) -> bytes:
        if bits == 32:
            return struct.pack(e + phfmt, kind, off, vaddr + off, vaddr + off, size, size, 4, 4)
        return struct.pack(e + phfmt, kind, 4, off, vaddr + off, vaddr + off, size, size, 8)

    phs = ph(elf.PT_LOAD, 0, total)
    if interp:
        phs += ph(elf.PT_INTERP, data_off, len(interp_b))
    phs += ph(elf.PT_DYNAMIC, dyn_off, len(dyn_b))
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 2 if big else 1, 1]) + b"\0" * 9
    fields = (3, machine, 1, 0, ehsize, 0, 0, ehsize, phentsize, phnum, 0, 0, 0)
    header = ident + struct.pack(e + f"HHI{a}{a}{a}IHHHHHH", *fields)
    return header + phs + interp_b + strtab + dyn_b


def readelf(path: Path) -> dict[str, object]:
    """What binutils' readelf says: needed, runpath, rpath, soname, interpreter."""
    dynamic = subprocess.run(
        ["readelf", "-d", "-W", str(path)], capture_output=True, text=True, check=True
    ).stdout
    program = subprocess.run(
        ["readelf", "-l", "-W", str(path)], capture_output=True, text=True, check=True
    ).stdout

    def values(kind: str) -> list[str]:
        return re.findall(rf"\({kind}\)\s+[^\[]*\[([^\]]*)\]", dynamic)

    interp = re.search(r"Requesting program interpreter: ([^\]]+)\]", program)
    return {
        "needed": tuple(values("NEEDED")),
        "runpath": tuple(p for v in values("RUNPATH") for p in v.split(":") if p),
        "rpath": tuple(p for v in values("RPATH") for p in v.split(":") if p),
        "soname": (values("SONAME") or [None])[0],
        "interpreter": interp.group(1) if interp else None,
    }


def ours(path: Path) -> dict[str, object]:
    info = elf.parse(path.read_bytes(), str(path))
    return {
        "needed": info.needed,
        "runpath": info.runpath,
        "rpath": info.rpath,
        "soname": info.soname,
        "interpreter": info.interpreter,
    }


HOST_BINARIES = ["/bin/ls", "/usr/bin/python3", "/bin/sh", "/usr/bin/readelf"]


@pytest.mark.parametrize("name", HOST_BINARIES)
def test_host_binaries_match_readelf(name: str) -> None:
    path = Path(os.path.realpath(name))
    expected = readelf(path)
    assert expected["needed"], f"{path} should be dynamically linked for this test"
    assert ours(path) == expected


def test_host_shared_library_matches_readelf_and_has_its_soname() -> None:
    libc = Path(os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6"))
    info = elf.parse(libc.read_bytes())
    assert ours(libc) == readelf(libc)
    assert (info.soname, info.bits, info.endian, info.machine_name) == (
        "libc.so.6",
        64,
        "little",
        "x86_64",
    )


@pytest.mark.parametrize(
    ("bits", "big", "machine"), [(32, True, 8), (32, False, 3), (64, True, 22), (64, False, 183)]
)
def test_synthetic_elves_of_every_class_and_byte_order(
    tmp_path: Path, bits: int, big: bool, machine: int
) -> None:
    path = tmp_path / "obj"
    path.write_bytes(
        make_elf(
            bits=bits,
            big=big,
            machine=machine,
            needed=("libx.so.2", "liby.so"),
            runpath="$ORIGIN/../lib:/opt/run",
            rpath="/opt/r",
            soname="libme.so.1",
        )
    )
    assert ours(path) == readelf(path)
    info = elf.parse(path.read_bytes())
    assert info.runpath == ("$ORIGIN/../lib", "/opt/run")
    assert (info.bits, info.endian, info.machine) == (bits, "big" if big else "little", machine)


def test_compatible_compares_class_byte_order_and_machine() -> None:
    le64 = elf.parse(make_elf())
    assert le64.compatible(elf.parse(make_elf(needed=("other.so",))))
    assert not le64.compatible(elf.parse(make_elf(bits=32)))
    assert not le64.compatible(elf.parse(make_elf(big=True)))
    assert not le64.compatible(elf.parse(make_elf(machine=183)))


def test_static_object_without_dynamic_section(tmp_path: Path) -> None:
    data = bytearray(make_elf(interp=None, needed=()))
    # turn PT_DYNAMIC (the second program header) into PT_NULL: a static executable
    struct.pack_into("<I", data, 64 + 56, 0)
    info = elf.parse(bytes(data))
    assert (info.interpreter, info.needed, info.runpath, info.soname) == (None, (), (), None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"#!/bin/sh\necho hi\n", "not an ELF file"),
        (b"\x7fELF", "truncated ELF identification"),
        (b"\x7fELF\x03\x01" + b"\0" * 58, "unknown ELF class 3"),
        (b"\x7fELF\x02\x07" + b"\0" * 58, "unknown ELF data encoding 7"),
        (make_elf()[:40], "truncated ELF: ELF header"),
        (make_elf()[:100], "truncated ELF: program header"),
    ],
)
def test_malformed_input_raises_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(ElfError, match=re.escape(message)) as caught:
        elf.parse(data, "img:/usr/bin/x")
    assert str(caught.value).startswith("img:/usr/bin/x: ")
    assert caught.value.exit_code == 2


def test_strtab_outside_every_load_segment_is_refused() -> None:
    data = bytearray(make_elf())
    # PT_LOAD is the first program header: move its vaddr far away from DT_STRTAB
    struct.pack_into("<Q", data, 64 + 16, 0x7000000)
    with pytest.raises(ElfError, match=r"DT_STRTAB address 0x10.* is in no PT_LOAD segment"):
        elf.parse(bytes(data))


def test_unterminated_dynamic_section_and_bad_string_index() -> None:
    data = make_elf(needed=("libq.so",))
    dyn_off = len(data) - 4 * 16  # NEEDED, STRTAB, STRSZ, NULL
    unterminated = bytearray(data)
    struct.pack_into("<qQ", unterminated, dyn_off + 3 * 16, elf.DT_SONAME, 1)
    with pytest.raises(ElfError, match="not terminated by DT_NULL"):
        elf.parse(bytes(unterminated))
    beyond = bytearray(data)
    struct.pack_into("<qQ", beyond, dyn_off, elf.DT_NEEDED, 10_000)
    with pytest.raises(ElfError, match="DT_NEEDED string index 10000 is beyond"):
        elf.parse(bytes(beyond))


def test_every_truncation_of_a_real_binary_is_an_elf_error() -> None:
    data = Path(os.path.realpath("/bin/ls")).read_bytes()
    info = elf.parse(data)
    # the headers the reader needs all lie in the first pages; cutting them must fail cleanly
    for size in [*range(0, 128, 7), *range(128, 1200, 61), 4096]:
        try:
            got = elf.parse(data[:size])
        except ElfError:
            continue
        assert got == info, f"a {size}-byte prefix parsed into something else"


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=48), st.integers(min_value=0, max_value=400))
def test_corrupted_headers_raise_only_elf_error(patch: bytes, offset: int) -> None:
    data = bytearray(make_elf(needed=("liba.so", "libb.so"), runpath="/r", soname="s"))
    data[offset : offset + len(patch)] = patch
    try:
        info = elf.parse(bytes(data))
    except ElfError:
        return
    assert isinstance(info.needed, tuple)
