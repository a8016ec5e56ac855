"""Reading .rtk records and streams: the container of Man/rtk.5 (format version 1).

Mirrors Sources/RepTokFormat (Record.swift, Varint.swift, Name.swift, CRC32C.swift, Errors.swift)
and the damaged-stream reader of Sources/RepTokCLI/Stream.swift. Pure Python, no numpy.

    for r in reptok.read("photos.rtk"):          # a path, bytes, or a binary file object
        print(r.name, r.width, r.height, r.level, r.fingerprint_hex, len(r.payload))

`read` checks every record in the two phases of rtk(5) READING (structure up to the checksum,
then the values) and raises `RTKError` at the first failure, with the message rtdec and rtinfo
print (``record 2 (byte 64): checksum mismatch (stored 0x..., computed 0x...)``). It is a
generator: records before the error have been yielded when it raises, so ``list(read(x))``
rejects the whole stream, as rtk(5) says a stream with an error is invalid.

``read(x, recover=True)`` reads a damaged stream as rtk(5) DAMAGED STREAMS says (rtdec -d and
rtinfo do the same): a record whose structure reached its checksum is skipped by its own lengths
when the checksum or a value fails (no "ghost" record inside it is read), a broken structure
resyncs at the next magic, stray bytes are skipped to the next magic, and an unknown version or
must-reject flag stops the reading. Each problem is passed to ``on_error(RTKError)`` (default:
`warnings.warn`), and only valid records are yielded.

Hard caps: a name is at most 255 bytes and a payload at most 65,536, checked before either is
read; lengths are checked against the bytes left before anything is sliced. A file is mapped
(mmap), not read whole.
"""

from __future__ import annotations

import mmap
import os
import unicodedata
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator

__all__ = ["Record", "RTKError", "read", "read_one", "crc32c", "MAGIC", "VERSION", "MAX_PAYLOAD_BYTES",
           "MAX_NAME_BYTES", "MAX_DIMENSION", "MAX_PIXELS", "MAX_STEPS", "SAMPLERS"]

MAGIC = b"\xd2RT"
VERSION = 1
FLAG_HAS_NAME = 0x01
MUST_REJECT_FLAGS = 0x0E
MAY_IGNORE_FLAGS = 0xF0
MAX_DIMENSION = 65_535
MAX_PIXELS = 1 << 26
MAX_STEPS = 1_000
MAX_NAME_BYTES = 255
MAX_PAYLOAD_BYTES = 65_536
FIXED_HEADER_BYTES = 14
CHECKSUM_BYTES = 4
MAX_VARINT_BYTES = 10
#: sampler ids of the mode byte's high nibble
SAMPLERS = ("euler", "heun")

_MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, init and final XOR 0xFFFFFFFF

def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return tuple(t)


_CRC_TABLE = _crc_table()


def crc32c(data, crc: int = 0) -> int:
    """CRC-32C of `data`, continuing `crc` (the value for the bytes before it; 0 for none).
    crc32c(b"123456789") == 0xE3069283."""
    c = crc ^ 0xFFFFFFFF
    t = _CRC_TABLE
    for b in bytes(data):
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# errors (messages as Sources/RepTokFormat/Errors.swift writes them)

class RTKError(ValueError):
    """A stream or record that breaks rtk(5). `str(e)` is the message rtdec/rtinfo print.

    Attributes: `kind` (a short tag: "bad_magic", "checksum", "truncated", "out_of_range", ...),
    `detail` (the message without the record prefix), `index` (the record's position from 1, or
    None for errors that belong to no record: bad magic at byte 0, stray bytes, empty input) and
    `offset` (the record's byte offset; for record-less errors, where the bad bytes begin)."""

    def __init__(self, kind: str, detail: str, index: int | None = None, offset: int | None = None):
        self.kind, self.detail, self.index, self.offset = kind, detail, index, offset
        msg = detail if index is None else f"record {index} (byte {offset}): {detail}"
        super().__init__(msg)

    def _in_record(self, index: int, offset: int) -> "RTKError":
        return RTKError(self.kind, self.detail, index, offset)


def _hex2(v: int) -> str:
    return "0x%02X" % v


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


class _Fail(Exception):
    """Internal: a record failed. `end` is the offset just past it once phase 1 found its checksum
    (its extent is then known); `undelimitable` for an unknown version or must-reject flags."""

    def __init__(self, error: RTKError, end: int | None = None, undelimitable: bool = False):
        self.error, self.end, self.undelimitable = error, end, undelimitable


def _truncated(fieldname: str, offset: int) -> _Fail:
    return _Fail(RTKError("truncated", f"truncated record: {fieldname} at byte {offset} runs past the end of the input"))


def _out_of_range(fieldname: str, value: int, lo: int, hi: int) -> RTKError:
    return RTKError("out_of_range", f"{fieldname} {value} is out of range ({lo}...{hi})")


def _bad_name(why: str) -> RTKError:
    return RTKError("bad_name", why)


# ---------------------------------------------------------------------------------------------
# records

@dataclass(frozen=True)
class Record:
    """One .rtk record (rtk(5) RECORD LAYOUT), with where it was found.

    `sampler` is "euler" or "heun"; `flags` holds the may-ignore flag bits (0xF0 mask) as read,
    kept so `to_bytes()` gives back the very bytes (has-name is implied by `name`)."""
    fingerprint: int
    width: int
    height: int
    level: int
    seed: int
    sampler: str
    steps: int
    name: str | None
    payload: bytes
    flags: int = 0
    #: position in the stream from 1 (with recover=True, damaged records count too), byte offset
    #: and size; 0 for a record built by hand
    index: int = field(default=0, compare=False)
    offset: int = field(default=0, compare=False)
    size: int = field(default=0, compare=False)

    @property
    def fingerprint_hex(self) -> str:
        """The model fingerprint as rtinfo prints it: 16 lowercase hex digits."""
        return "%016x" % self.fingerprint

    @property
    def sampler_id(self) -> int:
        return SAMPLERS.index(self.sampler)

    @property
    def bpp(self) -> float:
        """Bits per pixel of the whole record (rtinfo's figure; it rounds to 6 decimals)."""
        return len(self.to_bytes()) * 8 / (self.width * self.height)

    def info(self) -> dict:
        """The fields of one `rtinfo --json` row (without `file` and `model_note`)."""
        n = len(self.to_bytes())
        return {"record": self.index, "offset": self.offset, "bytes": n, "payload_bytes": len(self.payload),
                "width": self.width, "height": self.height, "level": self.level, "model": self.fingerprint_hex,
                "sampler": self.sampler, "steps": self.steps, "seed": self.seed, "name": self.name,
                "bpp": round(n * 8 / (self.width * self.height) * 1e6) / 1e6}

    def validate(self) -> None:
        """Raises RTKError for the first field that breaks a format rule (the reader's checks)."""
        if self.flags & ~MAY_IGNORE_FLAGS & 0xFF or not 0 <= self.flags <= 0xFF:
            raise RTKError("flags", f"ignorable flags {_hex2(self.flags & 0xFF)} outside the may-ignore mask "
                                    f"{_hex2(MAY_IGNORE_FLAGS)}")
        if self.sampler not in SAMPLERS:
            raise RTKError("unknown_sampler", f"unknown sampler {self.sampler!r} (this build knows euler, heun)")
        if not 0 <= self.fingerprint <= _MASK64 or not 0 <= self.seed <= _MASK64:
            raise RTKError("out_of_range", "fingerprint and seed must be unsigned 64-bit values")
        _check_fields(self.level, self.sampler_id, self.width, self.height, self.steps)
        if self.name is not None:
            _check_name(self.name.encode("utf-8", "surrogatepass"))
        if len(self.payload) > MAX_PAYLOAD_BYTES:
            raise _out_of_range("payload length", len(self.payload), 0, MAX_PAYLOAD_BYTES)

    def to_bytes(self) -> bytes:
        """The record's bytes (after `validate()`): a parsed record gives back the bytes it came from."""
        self.validate()
        out = bytearray(MAGIC)
        out.append(VERSION)
        out.append((FLAG_HAS_NAME if self.name is not None else 0) | self.flags)
        out.append(self.level | self.sampler_id << 4)
        out += self.fingerprint.to_bytes(8, "little")
        for v in (self.width, self.height, self.seed, self.steps):
            out += _varint(v)
        if self.name is not None:
            nb = self.name.encode("utf-8")
            out += _varint(len(nb)) + nb
        out += _varint(len(self.payload)) + bytes(self.payload)
        out += crc32c(out).to_bytes(4, "little")
        return bytes(out)


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _check_fields(level: int, sampler_id: int, width: int, height: int, steps: int) -> None:
    """Phase 2 range checks, in the order of RTKRecord.checkFields."""
    if not 1 <= level <= 9:
        raise _out_of_range("quantizer level", level, 1, 9)
    if not 0 <= sampler_id < len(SAMPLERS):
        raise RTKError("unknown_sampler", f"unknown sampler id {sampler_id} (this build knows 0 Euler, 1 Heun)")
    if not 1 <= width <= MAX_DIMENSION:
        raise _out_of_range("width", width, 1, MAX_DIMENSION)
    if not 1 <= height <= MAX_DIMENSION:
        raise _out_of_range("height", height, 1, MAX_DIMENSION)
    if width * height > MAX_PIXELS:
        raise RTKError("too_many_pixels", f"image {width}x{height} has more than {MAX_PIXELS} pixels")
    if not 1 <= steps <= MAX_STEPS:
        raise _out_of_range("steps", steps, 1, MAX_STEPS)


def _check_name(raw: bytes) -> str:
    """rtk(5) NAMES: 1-255 bytes of valid UTF-8, a plain relative path (RTKName.validate)."""
    if not raw:
        raise _bad_name("record name is empty")
    if len(raw) > MAX_NAME_BYTES:
        raise _bad_name(f"record name is {len(raw)} bytes (cap {MAX_NAME_BYTES})")
    try:
        name = raw.decode("utf-8")          # strict: no overlong forms, surrogates or > U+10FFFF
    except UnicodeDecodeError:
        raise _bad_name("record name is not valid UTF-8") from None
    for ch in name:
        if ch == "\\":
            raise _bad_name("record name contains a backslash")
        if unicodedata.category(ch) == "Cc":
            raise _bad_name("record name contains control character U+%04X" % ord(ch))
    if raw[:1] == b"/":
        raise _bad_name("record name is an absolute path")
    if len(raw) >= 2 and raw[1:2] == b":" and ord("A") <= (raw[0] & 0xDF) <= ord("Z"):
        raise _bad_name("record name is an absolute path (drive letter)")
    for comp in raw.split(b"/"):
        if comp == b"":
            raise _bad_name("record name has an empty path component")
        if comp == b".":
            raise _bad_name("record name has a '.' path component")
        if comp == b"..":
            raise _bad_name("record name has a '..' path component")
    return name


def _starts_like_record(b, pos: int) -> bool:
    """The magic, or the part of it that the end of the input leaves, at `pos`."""
    n = min(len(MAGIC), len(b) - pos)
    return b[pos:pos + n] == MAGIC[:n]


def _parse_record(b, start: int, index: int = 0) -> Record:
    """The record at `start` (absolute offsets in messages). Raises _Fail with the unwrapped error."""
    pos = start
    size = len(b)

    def need(count: int, fieldname: str):
        if size - pos < count:
            raise _truncated(fieldname, pos)

    def varint(fieldname: str) -> int:
        nonlocal pos
        value, i = 0, 0
        while True:
            if i == MAX_VARINT_BYTES:
                raise _Fail(RTKError("varint_overflow", f"malformed record: varint for {fieldname} at byte {pos} overflows 64 bits"))
            if pos + i >= size:
                raise _truncated(fieldname, pos)
            byte = b[pos + i]
            if i == MAX_VARINT_BYTES - 1 and byte > 1:
                raise _Fail(RTKError("varint_overflow", f"malformed record: varint for {fieldname} at byte {pos} overflows 64 bits"))
            value |= (byte & 0x7F) << (7 * i)
            i += 1
            if not byte & 0x80:
                if i > 1 and byte == 0:
                    raise _Fail(RTKError("overlong_varint", f"malformed record: overlong varint for {fieldname} at byte {pos}"))
                pos += i
                return value

    def length(fieldname: str, cap: int) -> int:
        at = pos
        v = varint(fieldname + " length")
        if v > cap:
            if fieldname == "name":
                raise _Fail(_bad_name(f"record name is {v} bytes (cap {MAX_NAME_BYTES})"))
            raise _Fail(_out_of_range(fieldname + " length", v, 0, cap))
        left = size - pos
        if v > left:
            raise _Fail(RTKError("length_beyond_end",
                                 f"truncated record: {fieldname} at byte {at} is {v} {_plural(v, 'byte', 'bytes')} "
                                 f"but only {left} {_plural(left, 'is', 'are')} left"))
        return v

    # phase 1: structure
    if not _starts_like_record(b, pos):
        raise _Fail(RTKError("bad_magic", f"not an .rtk file (bad magic at byte {pos})"))
    need(len(MAGIC), "magic")
    pos += len(MAGIC)
    need(1, "version")
    version = b[pos]
    if version != VERSION:
        raise _Fail(RTKError("unsupported_version",
                             f"unsupported .rtk version {version} (this build reads version {VERSION})"), undelimitable=True)
    pos += 1
    need(1, "flags")
    flags = b[pos]
    if flags & MUST_REJECT_FLAGS:
        raise _Fail(RTKError("must_reject_flags", "record uses unsupported features (must-reject flag bits "
                                                  f"{_hex2(flags & MUST_REJECT_FLAGS)} set)"), undelimitable=True)
    pos += 1
    need(1, "mode")
    mode = b[pos]
    pos += 1
    need(8, "fingerprint")
    fingerprint = int.from_bytes(bytes(b[pos:pos + 8]), "little")
    pos += 8
    width = varint("width")
    height = varint("height")
    seed = varint("seed")
    steps = varint("steps")
    name_range = None
    if flags & FLAG_HAS_NAME:
        n = length("name", MAX_NAME_BYTES)
        if n == 0:
            raise _Fail(_bad_name("record name is empty"))
        name_range = (pos, pos + n)
        pos += n
    n = length("payload", MAX_PAYLOAD_BYTES)
    payload_range = (pos, pos + n)
    pos += n
    need(CHECKSUM_BYTES, "checksum")
    end = pos + CHECKSUM_BYTES
    stored = int.from_bytes(bytes(b[pos:end]), "little")
    computed = crc32c(b[start:pos])
    if stored != computed:
        raise _Fail(RTKError("checksum", "checksum mismatch (stored 0x%08X, computed 0x%08X)" % (stored, computed)), end)
    # phase 2: values
    try:
        _check_fields(mode & 0x0F, mode >> 4, width, height, steps)
        name = _check_name(bytes(b[name_range[0]:name_range[1]])) if name_range else None
    except RTKError as e:
        raise _Fail(e, end) from None
    return Record(fingerprint=fingerprint, width=width, height=height, level=mode & 0x0F, seed=seed,
                  sampler=SAMPLERS[mode >> 4], steps=steps, name=name,
                  payload=bytes(b[payload_range[0]:payload_range[1]]), flags=flags & MAY_IGNORE_FLAGS,
                  index=index, offset=start, size=end - start)


# ---------------------------------------------------------------------------------------------
# sources and streams

class _Source:
    """A byte source: bytes-like objects as they are, files mapped read-only."""

    def __init__(self, source):
        self._file = self._map = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.data = bytes(source)
        elif isinstance(source, (str, os.PathLike)):
            self._file = open(source, "rb")
            try:
                n = os.fstat(self._file.fileno()).st_size
                if n == 0:
                    self.data = b""
                else:
                    self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
                    self.data = self._map
            except (OSError, ValueError):   # not mappable (a pipe, a special file): read it
                self._file.seek(0)
                self.data = self._file.read()
        elif hasattr(source, "read"):
            data = source.read()
            if not isinstance(data, (bytes, bytearray)):
                raise TypeError("reptok.read: the file object must be opened in binary mode")
            self.data = bytes(data)
        else:
            raise TypeError(f"reptok.read: expected a path, bytes or a binary file, not {type(source).__name__}")

    def close(self):
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None


def _warn(e: RTKError):
    warnings.warn(str(e), RuntimeWarning, stacklevel=3)


def _strict(b) -> Iterator[Record]:
    """RTKRecord.parse: the first error ends the stream."""
    if len(b) == 0:
        raise RTKError("empty_input", "not an .rtk file (empty input)")
    pos, index = 0, 0
    while pos < len(b):
        index += 1
        if index > 1 and not _starts_like_record(b, pos):
            n = len(b) - pos
            raise RTKError("trailing_bytes", f"{n} trailing {_plural(n, 'byte', 'bytes')} at byte {pos} "
                                             f"{_plural(n, 'does', 'do')} not begin an .rtk record (bad magic)", None, pos)
        try:
            r = _parse_record(b, pos, index)
        except _Fail as f:
            if index == 1 and f.error.kind == "bad_magic":
                raise RTKError(f.error.kind, f.error.detail, None, 0) from None
            raise f.error._in_record(index, pos) from None
        yield r
        pos += r.size


def _next_magic(b, pos: int) -> int:
    i = b.find(MAGIC, pos + 1)
    return len(b) if i < 0 else i


def _recover(b, on_error: Callable[[RTKError], None]) -> Iterator[Record]:
    """ParsedStream (Sources/RepTokCLI/Stream.swift): rtk(5) DAMAGED STREAMS."""
    if len(b) == 0:
        on_error(RTKError("empty_input", "not an .rtk file (empty input)"))
        return
    pos, index = 0, 0
    while pos < len(b):
        if not _starts_like_record(b, pos):
            if pos == 0:
                on_error(RTKError("bad_magic", "not an .rtk file (bad magic at byte 0)", None, 0))
                return
            nxt = _next_magic(b, pos)
            n = nxt - pos
            on_error(RTKError("trailing_bytes", f"{n} trailing {_plural(n, 'byte', 'bytes')} at byte {pos} "
                                                f"{_plural(n, 'does', 'do')} not begin an .rtk record (bad magic)", None, pos))
            pos = nxt
            continue
        index += 1
        try:
            r = _parse_record(b, pos, index)
        except _Fail as f:
            e = f.error._in_record(index, pos)
            if f.end is not None:                 # intact structure: skip it by its own lengths
                on_error(e)
                pos = f.end
            elif f.undelimitable:                 # unknown layout: nothing after it can be read
                rest = len(b) - pos
                on_error(RTKError(e.kind, e.detail + f"; its length is unknown, so the last {rest} "
                                  f"{_plural(rest, 'byte', 'bytes')} of the input {_plural(rest, 'is', 'are')} not read",
                                  index, pos))
                return
            else:                                 # broken structure: resync at the next magic
                on_error(e)
                pos = _next_magic(b, pos)
            continue
        yield r
        pos += r.size


def read(source, *, recover: bool = False, on_error: Callable[[RTKError], None] | None = None) -> Iterator[Record]:
    """The records of an .rtk stream (one or more records back to back).

    `source`: a path, a bytes-like object or a binary file object. Strict by default: raises
    RTKError at the first error (after yielding the records before it). With `recover`, reads a
    damaged stream as rtk(5) DAMAGED STREAMS says, passing each problem to `on_error` (default:
    a RuntimeWarning) and yielding the valid records only."""
    src = _Source(source)
    try:
        if recover:
            yield from _recover(src.data, on_error or _warn)
        else:
            yield from _strict(src.data)
    finally:
        src.close()


def read_one(source) -> Record:
    """The record of a source that must hold exactly one (RTKError otherwise)."""
    records = list(read(source))
    if len(records) != 1:
        raise RTKError("record_count", f"expected one record, found {len(records)}")
    return records[0]
