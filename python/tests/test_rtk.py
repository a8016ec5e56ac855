"""reptok.rtk: the .rtk container as Man/rtk.5 states it, checked with the cases of
Tests/FormatTests (HostileInputTests, RecordTests, CRCAndVarintTests), the committed records of
Tests/Parity/decode against the `rtinfo --json` output committed beside them, and (when a built
rtinfo is found) the damaged-stream policy against rtinfo on seeded mutations."""

import io
import json
import os
import random
import shutil
import subprocess

import pytest

import reptok
from reptok import rtk
from reptok.rtk import Record, RTKError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VECTORS = os.path.join(ROOT, "Tests", "Parity", "decode")


def varint(v: int) -> bytes:
    return rtk._varint(v)


def raw(magic=rtk.MAGIC, version=1, flags=0, mode=0x05, fingerprint=bytes.fromhex("efcdab8967452301"),
        width=varint(128), height=varint(96), seed=varint(0), steps=varint(1), name=None, name_length=None,
        payload=bytes(range(40)), payload_length=None, crc_delta=0) -> bytes:
    """A record written field by field (any value, legal or not) with a correct CRC-32C, as the
    Swift tests' RawRecord."""
    out = bytes(magic) + bytes([version, flags, mode]) + fingerprint + width + height + seed + steps
    if name is not None:
        out += (name_length if name_length is not None else varint(len(name))) + name
    out += (payload_length if payload_length is not None else varint(len(payload))) + payload
    crc = (rtk.crc32c(out) + crc_delta) & 0xFFFFFFFF
    return out + crc.to_bytes(4, "little")


def named(name, **kw) -> bytes:
    nb = name.encode("utf-8") if isinstance(name, str) else bytes(name)
    return raw(flags=1, name=nb, **kw)


TYPICAL = Record(fingerprint=0x0123456789ABCDEF, width=128, height=96, level=5, seed=0, sampler="euler", steps=1,
                 name=None, payload=bytes(range(40)))
N = len(raw())   # 64


def error(data) -> RTKError:
    with pytest.raises(RTKError) as e:
        list(rtk.read(data))
    return e.value


# ---------------------------------------------------------------------------------------------
# checksum and varints

def test_crc32c_vectors():
    assert rtk.crc32c(b"123456789") == 0xE3069283
    assert rtk.crc32c(bytes(32)) == 0x8A9136AA
    assert rtk.crc32c(b"\xff" * 32) == 0x62A8AB43                   # RFC 3720 B.4
    assert rtk.crc32c(bytes(range(32))) == 0x46DD794E
    assert rtk.crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert rtk.crc32c(b"56789", rtk.crc32c(b"1234")) == 0xE3069283


@pytest.mark.parametrize("value,encoded", [(0, "00"), (127, "7f"), (128, "8001"), (300, "ac02"), (65535, "ffff03"),
                                           (2 ** 64 - 1, "ffffffffffffffffff01")])
def test_varint_examples_of_the_man_page(value, encoded):
    assert varint(value).hex() == encoded
    (r,) = rtk.read(raw(seed=bytes.fromhex(encoded)))
    assert r.seed == value
    assert r.to_bytes() == raw(seed=bytes.fromhex(encoded))


@pytest.mark.parametrize("seed,message", [
    ("8000", "overlong varint for seed at byte 17"),
    ("808100", "overlong varint for seed at byte 17"),
    ("ffffffffffffffffff00", "overlong varint for seed at byte 17"),
    ("ffffffffffffffffff02", "varint for seed at byte 17 overflows 64 bits"),
    ("8080808080808080808001", "varint for seed at byte 17 overflows 64 bits"),
])
def test_varint_rejections(seed, message):
    assert error(raw(seed=bytes.fromhex(seed))).detail == "malformed record: " + message


# ---------------------------------------------------------------------------------------------
# records

def test_examples_of_the_man_page():
    a = bytes.fromhex("d25254010005efcdab8967452301800160000108" "0001020304050607" "a03eea40")
    b = bytes.fromhex("d25254010119efcdab89674523018005e003ac0232" "07612f622e706e67" "01ab" "d42e9639")
    ra, rb = rtk.read(a + b)
    assert (ra.width, ra.height, ra.level, ra.sampler, ra.steps, ra.seed, ra.name, ra.payload) == \
        (128, 96, 5, "euler", 1, 0, None, bytes(range(8)))
    assert ra.fingerprint == 0x0123456789ABCDEF and ra.fingerprint_hex == "0123456789abcdef"
    assert (rb.width, rb.height, rb.level, rb.sampler, rb.steps, rb.seed, rb.name, rb.payload) == \
        (640, 480, 9, "heun", 50, 300, "a/b.png", b"\xab")
    assert (ra.index, ra.offset, ra.size, rb.index, rb.offset, rb.size) == (1, 0, 32, 2, 32, 35)
    assert len(a + b) == 67 and ra.to_bytes() == a and rb.to_bytes() == b
    assert len(raw()) == 64                                          # "with a 40-byte payload ... 64 bytes"


def test_round_trips_and_extremes():
    cases = [
        TYPICAL,
        Record(0xFEEDFACECAFEBEEF, 256, 256, 3, 42, "heun", 25, "photos/cat.jpg", b"\xaa\xbb\xcc"),
        Record(0, 1, 1, 1, 0, "euler", 1, None, b""),
        Record(2 ** 64 - 1, 65535, 1024, 9, 2 ** 64 - 1, "heun", 1000, "n" * 255,
               bytes((i * 31) & 0xFF for i in range(65536)), flags=0xF0),
    ]
    data = b"".join(r.to_bytes() for r in cases)
    got = list(rtk.read(data))
    assert got == cases
    assert len(cases[2].to_bytes()) == 23                            # the smallest record
    assert len(cases[3].to_bytes()) == 65831                          # the largest valid record
    assert got[3].flags == 0xF0                                       # may-ignore bits kept


def test_sources(tmp_path):
    data = TYPICAL.to_bytes() + TYPICAL.to_bytes()
    p = tmp_path / "a.rtk"
    p.write_bytes(data)
    for source in (data, bytearray(data), memoryview(data), str(p), p, io.BytesIO(data), open(p, "rb")):
        assert [r.to_bytes() for r in rtk.read(source)] == [TYPICAL.to_bytes()] * 2
    assert reptok.read_one(TYPICAL.to_bytes()) == TYPICAL
    with pytest.raises(RTKError):
        reptok.read_one(data)
    (tmp_path / "empty.rtk").write_bytes(b"")
    assert str(error(str(tmp_path / "empty.rtk"))) == "not an .rtk file (empty input)"
    with pytest.raises(TypeError):
        list(rtk.read(io.StringIO("text")))


# The corruptions of Tests/FormatTests/HostileInputTests.swift, each with its message. All but the
# checksum case carry a correct CRC, so each reaches the check it targets.
CORRUPTIONS = [
    ("empty", b"", "not an .rtk file (empty input)"),
    ("bad magic", raw(magic=b"\xd2RU"), "not an .rtk file (bad magic at byte 0)"),
    ("ascii magic", raw(magic=b"RTK"), "not an .rtk file (bad magic at byte 0)"),
    ("zstd magic", b"\x28\xb5\x2f\xfd" + raw(), "not an .rtk file (bad magic at byte 0)"),
    ("future version", raw(version=2), "record 1 (byte 0): unsupported .rtk version 2 (this build reads version 1)"),
    ("version 0", raw(version=0), "record 1 (byte 0): unsupported .rtk version 0 (this build reads version 1)"),
    ("must-reject flag", raw(flags=0x02), "record 1 (byte 0): record uses unsupported features (must-reject flag bits 0x02 set)"),
    ("must-reject high", raw(flags=0xF8), "record 1 (byte 0): record uses unsupported features (must-reject flag bits 0x08 set)"),
    ("level 0", raw(mode=0x00), "record 1 (byte 0): quantizer level 0 is out of range (1...9)"),
    ("level 10", raw(mode=0x0A), "record 1 (byte 0): quantizer level 10 is out of range (1...9)"),
    ("sampler 2", raw(mode=0x25), "record 1 (byte 0): unknown sampler id 2 (this build knows 0 Euler, 1 Heun)"),
    ("steps 0", raw(steps=varint(0)), "record 1 (byte 0): steps 0 is out of range (1...1000)"),
    ("steps 1001", raw(steps=varint(1001)), "record 1 (byte 0): steps 1001 is out of range (1...1000)"),
    ("width 0", raw(width=varint(0)), "record 1 (byte 0): width 0 is out of range (1...65535)"),
    ("height 0", raw(height=varint(0)), "record 1 (byte 0): height 0 is out of range (1...65535)"),
    ("width 65536", raw(width=varint(65536)), "record 1 (byte 0): width 65536 is out of range (1...65535)"),
    ("pixels", raw(width=varint(65535), height=varint(65535)),
     "record 1 (byte 0): image 65535x65535 has more than 67108864 pixels"),
    ("name empty", named(b""), "record 1 (byte 0): record name is empty"),
    ("name 256", named(b"a" * 256), "record 1 (byte 0): record name is 256 bytes (cap 255)"),
    ("name beyond end", named("abc", name_length=varint(200)),
     "record 1 (byte 0): truncated record: name at byte 19 is 200 bytes but only 48 are left"),
    ("name absolute", named("/etc/passwd"), "record 1 (byte 0): record name is an absolute path"),
    ("name drive", named("C:/Windows"), "record 1 (byte 0): record name is an absolute path (drive letter)"),
    ("name ..", named("../../.ssh/authorized_keys"), "record 1 (byte 0): record name has a '..' path component"),
    ("name .", named("a/./b"), "record 1 (byte 0): record name has a '.' path component"),
    ("name //", named("a//b"), "record 1 (byte 0): record name has an empty path component"),
    ("name backslash", named("dir\\file"), "record 1 (byte 0): record name contains a backslash"),
    ("name newline", named("bad\nname"), "record 1 (byte 0): record name contains control character U+000A"),
    ("name NUL", named(b"a\x00b"), "record 1 (byte 0): record name contains control character U+0000"),
    ("name bad UTF-8", named(b"a\xffb"), "record 1 (byte 0): record name is not valid UTF-8"),
    ("name overlong UTF-8", named(b"\xc0\xae\xc0\xae"), "record 1 (byte 0): record name is not valid UTF-8"),
    ("overlong varint", raw(width=b"\x80\x81\x00"), "record 1 (byte 0): malformed record: overlong varint for width at byte 14"),
    ("overlong zero", raw(seed=b"\x80\x00"), "record 1 (byte 0): malformed record: overlong varint for seed at byte 17"),
    ("varint overflow", raw(seed=b"\xff" * 9 + b"\x02"),
     "record 1 (byte 0): malformed record: varint for seed at byte 17 overflows 64 bits"),
    ("varint 11 bytes", raw(seed=b"\x80" * 10 + b"\x01"),
     "record 1 (byte 0): malformed record: varint for seed at byte 17 overflows 64 bits"),
    ("payload beyond end", raw(payload_length=varint(1000)),
     "record 1 (byte 0): truncated record: payload at byte 19 is 1000 bytes but only 44 are left"),
    ("payload over cap", raw(payload=bytes([7]) * 65537),
     "record 1 (byte 0): payload length 65537 is out of range (0...65536)"),
    ("payload length huge", raw(payload_length=varint(2 ** 64 - 1)),
     "record 1 (byte 0): payload length 18446744073709551615 is out of range (0...65536)"),
    ("checksum", raw(crc_delta=1), None),
    ("truncated magic", raw()[:2], "record 1 (byte 0): truncated record: magic at byte 0 runs past the end of the input"),
    ("truncated header", raw()[:10], "record 1 (byte 0): truncated record: fingerprint at byte 6 runs past the end of the input"),
    ("truncated varint", raw()[:15], "record 1 (byte 0): truncated record: width at byte 14 runs past the end of the input"),
    ("truncated checksum", raw()[:-2], f"record 1 (byte 0): truncated record: checksum at byte {N - 4} runs past the end of the input"),
    ("trailing garbage", raw() + b"\x00\xff", f"2 trailing bytes at byte {N} do not begin an .rtk record (bad magic)"),
    ("trailing partial record", raw() + raw()[:20],
     f"record 2 (byte {N}): truncated record: payload at byte {N + 19} is 40 bytes but only 0 are left"),
    ("second future version", raw() + raw(version=7),
     f"record 2 (byte {N}): unsupported .rtk version 7 (this build reads version 1)"),
    ("trailing D2", raw() + b"\xd2", f"record 2 (byte {N}): truncated record: magic at byte {N} runs past the end of the input"),
    ("one trailing byte", raw() + b"\x00", f"1 trailing byte at byte {N} does not begin an .rtk record (bad magic)"),
]


@pytest.mark.parametrize("what,data,message", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_every_corruption_is_rejected_for_its_reason(what, data, message):
    e = error(data)
    if message is None:
        stored = int.from_bytes(data[-4:], "little")
        assert str(e) == "record 1 (byte 0): checksum mismatch (stored 0x%08X, computed 0x%08X)" % (stored, stored - 1)
    else:
        assert str(e) == message
    assert "\n" not in str(e)


def test_error_attributes():
    e = error(raw() + raw(crc_delta=0x100))
    assert (e.kind, e.index, e.offset) == ("checksum", 2, N)
    e = error(raw() + b"zz")
    assert (e.kind, e.index, e.offset) == ("trailing_bytes", None, N)
    e = error(b"xyz")
    assert (e.kind, e.index, e.offset) == ("bad_magic", None, 0)


@pytest.mark.parametrize("name", ["a", "image.png", "dir/sub/file.rtk", ".hidden", "..a", "a..", "...", "a.b/c.d",
                                  "ünïcödé/写真.jpg", "emoji-🦊", "with space", "C", "1:2", "ab:c", "x" * 255])
def test_accepted_names(name):
    (r,) = rtk.read(named(name))
    assert r.name == name
    assert r.to_bytes() == named(name)


@pytest.mark.parametrize("name,message", [
    ("/", "is an absolute path"), ("c:x", "is an absolute path (drive letter)"), ("a/", "has an empty path component"),
    ("./a", "has a '.' path component"), ("a/.", "has a '.' path component"), ("..", "has a '..' path component"),
    ("..\\x", "contains a backslash"), ("\u007f", "contains control character U+007F"),
    ("x\u0085", "contains control character U+0085"), ("\u001b[31m", "contains control character U+001B"),
    (b"\xed\xa0\x80", "is not valid UTF-8"), (b"\xf4\x90\x80\x80", "is not valid UTF-8"), (b"\xe2\x82", "is not valid UTF-8"),
    (b"a\x80", "is not valid UTF-8"), (b"\xc0\xaf", "is not valid UTF-8"),
])
def test_rejected_names(name, message):
    assert error(named(name)).detail == "record name " + message


def test_truncation_at_every_byte_and_every_bit_flip():
    rec = named("a/b.png", payload=bytes(range(12)))
    for n in range(len(rec)):
        with pytest.raises(RTKError):
            list(rtk.read(rec[:n]))
    for i in range(len(rec)):
        for bit in range(8):
            bad = bytearray(rec)
            bad[i] ^= 1 << bit
            with pytest.raises(RTKError):
                list(rtk.read(bytes(bad)))


def test_writer_rejects_invalid_fields():
    import dataclasses
    for change, message in [
        ({"level": 0}, "quantizer level 0 is out of range (1...9)"), ({"width": 0}, "width 0 is out of range (1...65535)"),
        ({"steps": 1001}, "steps 1001 is out of range (1...1000)"), ({"name": "/x"}, "record name is an absolute path"),
        ({"payload": bytes(65537)}, "payload length 65537 is out of range (0...65536)"),
        ({"flags": 0x01}, "ignorable flags 0x01 outside the may-ignore mask 0xF0"),
    ]:
        with pytest.raises(RTKError) as e:
            dataclasses.replace(TYPICAL, **change).to_bytes()
        assert str(e.value) == message


# ---------------------------------------------------------------------------------------------
# damaged streams (rtk(5) DAMAGED STREAMS)

def recover(data):
    errors = []
    records = list(rtk.read(data, recover=True, on_error=errors.append))
    return records, [str(e) for e in errors]


def test_a_ghost_record_inside_a_damaged_record_is_not_read():
    ghost = Record(0x1111, 8, 8, 1, 0, "euler", 1, "ghost", b"")
    host = raw(payload=ghost.to_bytes(), crc_delta=1)               # intact structure, bad checksum
    tail = TYPICAL.to_bytes()
    records, errors = recover(host + tail)
    assert [r.name for r in records] == [None] and records[0].offset == len(host) and records[0].index == 2
    assert len(errors) == 1 and errors[0].startswith("record 1 (byte 0): checksum mismatch")
    # a value error with an intact structure is skipped the same way
    records, errors = recover(raw(mode=0x0A, payload=ghost.to_bytes()) + tail)
    assert [r.name for r in records] == [None]
    assert errors == ["record 1 (byte 0): quantizer level 10 is out of range (1...9)"]


def test_a_broken_structure_resyncs_at_the_next_magic():
    first = raw(payload_length=varint(1000))                        # the length runs past the end
    records, errors = recover(first + TYPICAL.to_bytes())
    # the first record's end is unknown: the next magic is the typical record
    assert len(records) == 1 and records[0].offset == len(first) and records[0].index == 2
    assert errors == [f"record 1 (byte 0): truncated record: payload at byte 19 is 1000 bytes but only "
                      f"{len(first) - 21 + N} are left"]


def test_an_unknown_version_stops_the_reading():
    data = TYPICAL.to_bytes() + raw(version=2) + TYPICAL.to_bytes()
    records, errors = recover(data)
    assert len(records) == 1
    assert errors == [f"record 2 (byte {N}): unsupported .rtk version 2 (this build reads version 1); its length is "
                      f"unknown, so the last {2 * N} bytes of the input are not read"]


def test_stray_bytes_are_reported_once_and_skipped():
    data = TYPICAL.to_bytes() + b"garbage" + TYPICAL.to_bytes() + b"\x00"
    records, errors = recover(data)
    assert [r.offset for r in records] == [0, N + 7] and [r.index for r in records] == [1, 2]
    assert errors == [f"7 trailing bytes at byte {N} do not begin an .rtk record (bad magic)",
                      f"1 trailing byte at byte {2 * N + 7} does not begin an .rtk record (bad magic)"]
    assert recover(b"nope" + TYPICAL.to_bytes()) == ([], ["not an .rtk file (bad magic at byte 0)"])
    assert recover(b"") == ([], ["not an .rtk file (empty input)"])
    with pytest.warns(RuntimeWarning, match="trailing"):
        assert len(list(rtk.read(data, recover=True))) == 2


def _rtinfo():
    for d in ("release", "debug"):
        p = os.path.join(ROOT, ".build", d, "rtinfo")
        if os.access(p, os.X_OK):
            return p
    return shutil.which("rtinfo")


def test_damaged_streams_read_as_rtinfo_reads_them(tmp_path):
    """Seeded mutations of a stream of three records: the valid records (index, offset) and the
    messages must be rtinfo's (ParsedStream, Sources/RepTokCLI/Stream.swift)."""
    tool = _rtinfo()
    if tool is None:
        pytest.skip("no built rtinfo (swift build) to compare with")
    base = TYPICAL.to_bytes() + Record(7, 3, 4, 2, 9, "heun", 3, "d/x.png", TYPICAL.to_bytes()).to_bytes() + raw(
        payload=b"\xd2RT" + bytes(range(30)))
    rng = random.Random(15)
    cases = []
    for case in range(60):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(4)
            i = rng.randrange(len(data))
            if op == 0:
                data[i] ^= 1 << rng.randrange(8)
            elif op == 1:
                del data[i:i + rng.randint(1, 5)]
            elif op == 2:
                data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            else:
                data[i:i] = b"\xd2RT\x01"
        path = tmp_path / f"s{case:02d}.rtk"
        path.write_bytes(bytes(data))
        cases.append((str(path), bytes(data)))
    p = subprocess.run([tool, "--json", "--quiet"] + [c[0] for c in cases], capture_output=True, text=True)
    rows = json.loads(p.stdout or "[]")
    for path, data in cases:
        want_records = [(r["record"], r["offset"], r["bytes"]) for r in rows if r["file"] == path]
        prefix = f"rtinfo: {path}: "
        want_errors = [line[len(prefix):] for line in p.stderr.splitlines() if line.startswith(prefix)]
        records, errors = recover(data)
        assert [(r.index, r.offset, r.size) for r in records] == want_records, (path, data.hex())
        assert errors == want_errors, (path, data.hex())
    assert any(len(recover(d)[0]) for _, d in cases) and all(recover(d)[1] for _, d in cases[:5])


# ---------------------------------------------------------------------------------------------
# the committed records against rtinfo --json

@pytest.mark.parametrize("stream", ["tiny", "default"])
def test_committed_records_match_rtinfo_json(stream):
    with open(os.path.join(VECTORS, stream + ".json")) as f:
        want = json.load(f)
    got = list(reptok.read(os.path.join(VECTORS, stream + ".rtk")))
    assert len(got) == len(want)
    for r, w in zip(got, want):
        info = r.info()
        for k, v in w.items():
            if k not in ("file", "model_note"):
                assert info[k] == v, (r.index, k)
        assert set(info) == set(w) - {"file", "model_note"}
