"""The bytes of a ``.note.stapsdt`` section, parsed into one :class:`SdtNote` per probe site.

Sans-IO: the parser takes the section's bytes and the ELF's word size and byte order, so it is
tested on hand-built bytes with no file involved.

Layout (sys/sdt.h, ``_SDT_ASM_BODY``; the SystemTap wiki's "UserSpaceProbeImplementation"): each
probe site emits one ELF note, 4-byte aligned (``.balign 4``), with

    n_namesz, n_descsz, n_type = 3 (_SDT_NOTE_TYPE)   three 32-bit words
    name   "stapsdt\\0", padded to 4
    desc   pc, base, semaphore                         address-sized (8 bytes in a 64-bit ELF)
           provider\\0 name\\0 arguments\\0               padded to 4

``pc`` is the link-time address of the probe's ``nop``, ``base`` the link-time address of the
``.stapsdt.base`` section (for prelink adjustment), ``semaphore`` the address of the probe's
``unsigned short`` semaphore or 0, and ``arguments`` the space-separated argument specs
(``-4@%edi 8@-24(%rbp)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import construct as c

from ._errors import UsdtNoteError

__all__ = ["SDT_NOTE_NAME", "SDT_NOTE_TYPE", "SdtNote", "parse_stapsdt_notes",
           "split_argument_specs"]

SDT_NOTE_NAME = b"stapsdt"
SDT_NOTE_TYPE = 3  # sys/sdt.h: _SDT_NOTE_TYPE; types 1 and 2 were older, other layouts

_NOTE_HEADER = {
    True: c.Struct("namesz" / c.Int32ul, "descsz" / c.Int32ul, "type" / c.Int32ul),
    False: c.Struct("namesz" / c.Int32ub, "descsz" / c.Int32ub, "type" / c.Int32ub),
}
_NOTE_HEADER_SIZE = 12


def _addresses(address_size: int, little_endian: bool) -> c.Struct:
    word = {
        (8, True): c.Int64ul,
        (8, False): c.Int64ub,
        (4, True): c.Int32ul,
        (4, False): c.Int32ub,
    }[(address_size, little_endian)]
    return c.Struct("pc" / word, "base" / word, "semaphore" / word)


@dataclass(frozen=True)
class SdtNote:
    """One probe site as its note describes it, before any address is adjusted.

    Attributes:
        provider: The provider (``python``).
        name: The probe name (``function__entry``).
        pc: Link-time address of the probe's ``nop``.
        base: Link-time address of ``.stapsdt.base`` when the note was written.
        semaphore: Link-time address of the probe's semaphore, or 0 when it has none.
        arguments: The argument specs as one string (``-4@%edi 8@%rsi``), possibly empty.
    """

    provider: str
    name: str
    pc: int
    base: int
    semaphore: int
    arguments: str

    @property
    def argument_specs(self) -> tuple[str, ...]:
        """The argument specs, one per argument."""
        return split_argument_specs(self.arguments)


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def parse_stapsdt_notes(
    data: bytes, *, address_size: int = 8, little_endian: bool = True, alignment: int = 4
) -> list[SdtNote]:
    """Parse every SDT note of a ``.note.stapsdt`` section.

    Notes of another owner or type are skipped, as consumers of the format do (gdb, libbpf):
    the section may hold them, and they say nothing about probes.

    Args:
        data: The section's bytes.
        address_size: 8 for a 64-bit ELF (ELFCLASS64), 4 for a 32-bit one.
        little_endian: The ELF's byte order (ELFDATA2LSB).
        alignment: Alignment of names and descriptors: 4 (what sys/sdt.h writes), or the
            section's ``sh_addralign`` when that is 8.

    Returns:
        The notes in section order (a probe inlined at several places has several notes).

    Raises:
        UsdtNoteError: A note is truncated, or an SDT note's descriptor is malformed.
    """
    if address_size not in (4, 8):
        raise UsdtNoteError(f"unsupported ELF address size {address_size} in .note.stapsdt")
    if alignment not in (4, 8):
        raise UsdtNoteError(f"unsupported note alignment {alignment} in .note.stapsdt")
    header_format = _NOTE_HEADER[little_endian]
    address_format = _addresses(address_size, little_endian)
    notes: list[SdtNote] = []
    position = 0
    size = len(data)
    while position < size:
        if size - position < _NOTE_HEADER_SIZE:
            # Trailing padding of a section is zeros; anything else is a cut-off header.
            if any(data[position:]):
                raise UsdtNoteError(
                    f".note.stapsdt: truncated note header at offset {position:#x}"
                )
            break
        header = header_format.parse(data[position : position + _NOTE_HEADER_SIZE])
        name_start = position + _NOTE_HEADER_SIZE
        desc_start = name_start + _align(header.namesz, alignment)
        end = desc_start + _align(header.descsz, alignment)
        if desc_start + header.descsz > size or name_start + header.namesz > size:
            raise UsdtNoteError(
                f".note.stapsdt: the note at offset {position:#x} runs past the section's end "
                f"(name {header.namesz} bytes, descriptor {header.descsz} bytes, section "
                f"{size} bytes)"
            )
        name = data[name_start : name_start + header.namesz].rstrip(b"\0")
        if name == SDT_NOTE_NAME and header.type == SDT_NOTE_TYPE:
            desc = data[desc_start : desc_start + header.descsz]
            notes.append(_parse_descriptor(desc, address_format, 3 * address_size, position))
        position = end
    return notes


def _parse_descriptor(desc: bytes, address_format: c.Struct, addresses_size: int,
                      note_offset: int) -> SdtNote:
    where = f".note.stapsdt: the note at offset {note_offset:#x}"
    # Three addresses, then at least three NUL-terminated strings (sys/sdt.h writes all three,
    # the last one empty for a probe without arguments).
    if len(desc) < addresses_size + 3:
        raise UsdtNoteError(f"{where} is too short ({len(desc)} bytes) for an SDT descriptor")
    addresses = address_format.parse(desc[:addresses_size])
    strings = desc[addresses_size:]
    fields: list[str] = []
    start = 0
    for what in ("provider", "name", "arguments"):
        end = strings.find(b"\0", start)
        if end < 0:
            raise UsdtNoteError(f"{where}: the {what} string is not NUL-terminated")
        try:
            fields.append(strings[start:end].decode("utf-8"))
        except UnicodeDecodeError:
            raise UsdtNoteError(f"{where}: the {what} string is not text") from None
        start = end + 1
    provider, name, arguments = fields
    if not provider or not name:
        raise UsdtNoteError(f"{where} has an empty {'provider' if not provider else 'name'}")
    for what, text in (("provider", provider), ("name", name)):
        if not text.isprintable() or any(ch.isspace() or ch == ":" for ch in text):
            raise UsdtNoteError(f"{where}: the {what} {text!r} is not a probe name")
    if not arguments.isprintable():
        raise UsdtNoteError(f"{where}: the argument specs {arguments!r} are not printable")
    return SdtNote(
        provider=provider,
        name=name,
        pc=addresses.pc,
        base=addresses.base,
        semaphore=addresses.semaphore,
        arguments=arguments,
    )


def split_argument_specs(text: str) -> tuple[str, ...]:
    """Split a note's argument string into one spec per argument.

    Specs are separated by spaces (sys/sdt.h, ``_SDT_ASM_BLANK``), but an AArch64 memory
    operand has a space inside its brackets (``-4@[sp, 96]``), so spaces inside brackets or
    parentheses do not separate.

    Args:
        text: The note's argument string.

    Returns:
        The specs, in argument order (empty for a probe without arguments).
    """
    specs: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth = max(0, depth - 1)
        if char.isspace() and depth == 0:
            specs.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    specs.append("".join(current).strip())
    return tuple(spec for spec in specs if spec)
