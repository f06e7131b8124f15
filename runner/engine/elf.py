"""A small, read-only ELF reader: what the dynamic loader would need, from the headers.

It answers the questions a toolset needs to copy a binary with its shared-library closure:
the program interpreter (PT_INTERP), and from the dynamic section the needed libraries
(DT_NEEDED), the search paths (DT_RUNPATH, DT_RPATH) and the soname. Strings are read from
DT_STRTAB, whose address is translated to a file offset through the PT_LOAD segments.
32/64-bit and little/big endian are supported. Nothing is ever executed (no `ldd`).

Malformed input raises `ElfError` naming the file and what is wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from runner.errors import InvalidInput

MAGIC = b"\x7fELF"

PT_LOAD = 1
PT_DYNAMIC = 2
PT_INTERP = 3

DT_NULL = 0
DT_NEEDED = 1
DT_STRTAB = 5
DT_STRSZ = 10
DT_SONAME = 14
DT_RPATH = 15
DT_RUNPATH = 29

_MACHINES = {3: "i386", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390", 40: "arm", 62: "x86_64"}
_MACHINES |= {183: "aarch64", 243: "riscv"}


class ElfError(InvalidInput):
    """A file that claims to be ELF but cannot be read as one."""


@dataclass(frozen=True)
class Segment:
    type: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


@dataclass(frozen=True)
class ElfInfo:
    bits: int  # 32 or 64
    endian: str  # "little" or "big"
    machine: int  # e_machine
    type: int  # e_type: 2 executable, 3 shared object (or PIE)
    interpreter: str | None  # PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2
    needed: tuple[str, ...]  # DT_NEEDED in order
    runpath: tuple[str, ...]  # DT_RUNPATH entries (":"-separated in the file)
    rpath: tuple[str, ...]  # DT_RPATH entries
    soname: str | None

    @property
    def machine_name(self) -> str:
        return _MACHINES.get(self.machine, f"machine-{self.machine}")

    def compatible(self, other: ElfInfo) -> bool:
        """Whether the loader would accept `other` as a library for this object."""
        return (self.bits, self.endian, self.machine) == (other.bits, other.endian, other.machine)


def is_elf(data: bytes) -> bool:
    return data[:4] == MAGIC


def parse(data: bytes, name: str = "<bytes>") -> ElfInfo:
    """Read the headers of the ELF image `data` (the whole file); `name` is for messages."""
    if not is_elf(data):
        raise ElfError(f"{name}: not an ELF file (bad magic {data[:4]!r})")
    if len(data) < 16:
        raise ElfError(f"{name}: truncated ELF identification ({len(data)} bytes)")
    ei_class, ei_data = data[4], data[5]
    if ei_class not in (1, 2):
        raise ElfError(f"{name}: unknown ELF class {ei_class} (expected 1 or 2)")
    if ei_data not in (1, 2):
        raise ElfError(f"{name}: unknown ELF data encoding {ei_data} (expected 1 or 2)")
    reader = _Reader(data, name, bits=32 if ei_class == 1 else 64, big=ei_data == 2)
    return reader.read()


class _Reader:
    def __init__(self, data: bytes, name: str, *, bits: int, big: bool) -> None:
        self.data = data
        self.name = name
        self.bits = bits
        self.endian = ">" if big else "<"
        self.addr = "I" if bits == 32 else "Q"  # Elf_Addr, Elf_Off, Elf_Xword-sized fields

    def unpack(self, fmt: str, offset: int, what: str) -> tuple[int, ...]:
        size = struct.calcsize(self.endian + fmt)
        if offset < 0 or offset + size > len(self.data):
            raise ElfError(
                f"{self.name}: truncated ELF: {what} at offset {offset} needs {size} bytes, "
                f"file has {len(self.data)}"
            )
        return struct.unpack_from(self.endian + fmt, self.data, offset)

    def read(self) -> ElfInfo:
        a = self.addr
        # e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize,
        # e_phentsize, e_phnum
        header = self.unpack(f"HHI{a}{a}{a}IHHH", 16, "ELF header")
        e_type, e_machine, _version, _entry, e_phoff, _shoff, _flags, _ehsize = header[:8]
        e_phentsize, e_phnum = header[8], header[9]
        segments = self.segments(e_phoff, e_phentsize, e_phnum)
        interpreter = None
        for seg in segments:
            if seg.type == PT_INTERP:
                raw = self.slice(seg.offset, seg.filesz, "PT_INTERP")
                interpreter = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                if not interpreter:
                    raise ElfError(f"{self.name}: empty PT_INTERP")
        needed: list[str] = []
        runpath: tuple[str, ...] = ()
        rpath: tuple[str, ...] = ()
        soname = None
        dynamic = [seg for seg in segments if seg.type == PT_DYNAMIC]
        if dynamic:
            entries = self.dynamic(dynamic[0])
            strtab = [val for tag, val in entries if tag == DT_STRTAB]
            strsz = [val for tag, val in entries if tag == DT_STRSZ]
            string_tags = {DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH}
            if any(tag in string_tags for tag, _ in entries):
                if not strtab:
                    raise ElfError(f"{self.name}: dynamic section has strings but no DT_STRTAB")
                table = self.strtab(segments, strtab[0], strsz[0] if strsz else None)
                for tag, val in entries:
                    if tag == DT_NEEDED:
                        needed.append(self.string(table, val, "DT_NEEDED"))
                    elif tag == DT_SONAME:
                        soname = self.string(table, val, "DT_SONAME")
                    elif tag == DT_RUNPATH:
                        runpath += _split_path(self.string(table, val, "DT_RUNPATH"))
                    elif tag == DT_RPATH:
                        rpath += _split_path(self.string(table, val, "DT_RPATH"))
        return ElfInfo(
            bits=self.bits,
            endian="big" if self.endian == ">" else "little",
            machine=e_machine,
            type=e_type,
            interpreter=interpreter,
            needed=tuple(needed),
            runpath=runpath,
            rpath=rpath,
            soname=soname,
        )

    def segments(self, phoff: int, phentsize: int, phnum: int) -> list[Segment]:
        a = self.addr
        # Elf32_Phdr: type, offset, vaddr, paddr, filesz, memsz, flags, align
        # Elf64_Phdr: type, flags, offset, vaddr, paddr, filesz, memsz, align
        fmt = f"I{a}{a}{a}{a}{a}I{a}" if self.bits == 32 else f"II{a}{a}{a}{a}{a}{a}"
        if phnum and phentsize < struct.calcsize(self.endian + fmt):
            raise ElfError(f"{self.name}: program header entry size {phentsize} is too small")
        segments = []
        for index in range(phnum):
            fields = self.unpack(fmt, phoff + index * phentsize, f"program header {index}")
            if self.bits == 32:
                p_type, p_offset, p_vaddr, _paddr, p_filesz, p_memsz = fields[:6]
            else:
                p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz = fields[:7]
            segments.append(Segment(p_type, p_offset, p_vaddr, p_filesz, p_memsz))
        return segments

    def dynamic(self, seg: Segment) -> list[tuple[int, int]]:
        fmt = "iI" if self.bits == 32 else "qQ"  # d_tag is signed, d_val/d_ptr unsigned
        size = struct.calcsize(self.endian + fmt)
        self.slice(seg.offset, seg.filesz, "PT_DYNAMIC")
        entries: list[tuple[int, int]] = []
        for index in range(seg.filesz // size):
            tag, val = self.unpack(fmt, seg.offset + index * size, f"dynamic entry {index}")
            if tag == DT_NULL:
                return entries
            entries.append((tag, val))
        raise ElfError(f"{self.name}: dynamic section is not terminated by DT_NULL")

    def strtab(self, segments: list[Segment], vaddr: int, size: int | None) -> bytes:
        for seg in segments:
            if seg.type == PT_LOAD and seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
                offset = seg.offset + (vaddr - seg.vaddr)
                end = seg.offset + seg.filesz
                if size is not None:
                    end = min(end, offset + size)
                return self.slice(offset, end - offset, "DT_STRTAB")
        raise ElfError(f"{self.name}: DT_STRTAB address {vaddr:#x} is in no PT_LOAD segment")

    def string(self, table: bytes, index: int, what: str) -> str:
        if index >= len(table):
            raise ElfError(
                f"{self.name}: {what} string index {index} is beyond the string table "
                f"({len(table)} bytes)"
            )
        end = table.find(b"\0", index)
        if end < 0:
            raise ElfError(f"{self.name}: {what} string at {index} is not NUL-terminated")
        return table[index:end].decode("utf-8", "surrogateescape")

    def slice(self, offset: int, size: int, what: str) -> bytes:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise ElfError(
                f"{self.name}: truncated ELF: {what} spans {offset}..{offset + size}, "
                f"file has {len(self.data)} bytes"
            )
        return self.data[offset : offset + size]


def _split_path(value: str) -> tuple[str, ...]:
    return tuple(part for part in value.split(":") if part)
