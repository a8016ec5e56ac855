"""Training pictures: `.rtds` packs and ImageFolders.

`RTDSPack` memory-maps a pack (format: docs/DATASET.md) and validates it as
Sources/RepTokData/PackedDataset.swift does; `ImageFolderSet` reads DIR/classname/**/*.jpg|png|...
with Pillow (a PyTorch-side extension); `MemorySet` holds pictures in memory (the shrunk copies).
numpy only (Pillow for ImageFolders).
"""

from __future__ import annotations

import math
import os
import stat
import struct
import zlib

import numpy as np

__all__ = ["DataError", "RTDSPack", "MemorySet", "ImageFolderSet", "open_pictures", "shrunk_size",
           "RTDS_MAGIC", "RTDS_INDEX", "IMAGE_EXTS"]

RTDS_MAGIC = b"RTDSPACK"
RTDS_INDEX = np.dtype([("off", "<u8"), ("w", "<u4"), ("h", "<u4"), ("cls", "<u2"), ("flags", "<u2"),
                       ("src", "<u4"), ("grp", "<u4"), ("crc", "<u4")])


class DataError(Exception):
    pass


class _Listed:
    """Picture sizes and classes kept in lists (_w, _h, _cls), as RTDSPack and ImageFolderSet keep them."""

    def width(self, i):
        return self._w[i]

    def height(self, i):
        return self._h[i]

    def class_id(self, i):
        return self._cls[i]


class RTDSPack(_Listed):
    """A memory-mapped .rtds pack, validated like the Swift reader (which rejects the pack
    otherwise). pixels(i) is an [H, W, 3] uint8 view."""

    def __init__(self, path: str, verify_crc: bool = False):
        self.path = path
        try:
            st = os.stat(path)
        except OSError as e:
            raise DataError(f"rtds: cannot open {path}: {e.strerror}")
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"rtds: {path} is not a regular file")
        size = st.st_size

        def bad(m):
            return DataError(f"rtds: invalid pack {path}: {m}")

        if size < 64:
            raise bad(f"file is {size} bytes, shorter than the 64-byte header")
        with open(path, "rb") as f:
            h = f.read(64)
        if h[:8] != RTDS_MAGIC:
            raise bad("no RTDSPACK magic")
        version, hsize, count, index_off, names_off, names_size, class_count, data_off, declared = \
            struct.unpack_from("<IIQQQIIQQ", h, 8)
        if version != 1:
            raise bad(f"unsupported version {version} (this reader knows 1)")
        if hsize != 64:
            raise bad(f"header size {hsize}, expected 64")
        if count > 1 << 24:
            raise bad(f"count {count} is over the cap {1 << 24}")
        for v, what in ((index_off, "index offset"), (names_off, "names offset"), (data_off, "data offset")):
            if v > size:
                raise bad(f"{what} {v} is beyond the end of the file ({size} bytes)")
        if declared != size:
            raise bad(f"header says {declared} bytes, the file has {size}")
        if class_count > 65535:
            raise bad(f"class count {class_count} is over the cap 65535")
        if count and class_count < 1:
            raise bad("images but no classes")
        if index_off < 64:
            raise bad(f"index offset {index_off} overlaps the header")
        index_end = index_off + 32 * count
        if index_end > size:
            raise bad(f"index ({count} entries) runs past the end of the file")
        if names_off < index_end:
            raise bad("class names overlap the index")
        if names_size > size - names_off:
            raise bad("class names run past the end of the file")
        if data_off < names_off + names_size:
            raise bad("pixel data overlaps the class names")
        with open(path, "rb") as f:
            f.seek(names_off)
            table = f.read(names_size)
        names, p = [], 0
        for c in range(class_count):
            if p + 2 > names_size:
                raise bad(f"class name {c} runs past the name table")
            n = struct.unpack_from("<H", table, p)[0]
            if not 1 <= n <= 255:
                raise bad(f"class name {c} has length {n}")
            if p + 2 + n > names_size:
                raise bad(f"class name {c} runs past the name table")
            try:
                names.append(table[p + 2:p + 2 + n].decode("utf-8"))
            except UnicodeDecodeError:
                raise bad(f"class name {c} is not UTF-8")
            p += 2 + n
        if p != names_size:
            raise bad(f"name table has {names_size - p} stray bytes")
        idx = np.fromfile(path, dtype=RTDS_INDEX, count=count, offset=index_off) if count else np.zeros(0, RTDS_INDEX)
        prev_end = data_off
        ws, hs, cl, fl, of = (idx[k].tolist() for k in ("w", "h", "cls", "flags", "off"))
        for i in range(count):   # the Swift reader's checks, in its order
            wi, hi = ws[i], hs[i]
            if not (1 <= wi <= 16384 and 1 <= hi <= 16384):
                raise bad(f"image {i} is {wi}x{hi} (sides must be 1...16384)")
            if cl[i] >= class_count:
                raise bad(f"image {i} has class {cl[i]} of {class_count}")
            if fl[i] & ~0x1F:
                raise bad(f"image {i} has unknown flags {fl[i]}")
            o = of[i]
            n = wi * hi * 3
            if o > size or o < prev_end:
                raise bad(f"image {i} starts at {o}, before the end of the previous image or the data area ({prev_end})")
            if n > size - o:
                raise bad(f"image {i} ({wi}x{hi}) runs past the end of the file")
            prev_end = o + n
        self.count = count
        self.class_names = names
        self.size = size
        self._off, self._w, self._h, self._cls = of, ws, hs, cl
        self._crc = idx["crc"].tolist()
        self._mm = None
        if verify_crc:
            for i in range(count):
                if self._crc[i] and zlib.crc32(self.pixels(i).tobytes()) != self._crc[i]:
                    raise bad(f"image {i}: pixel CRC-32 mismatch")

    def __getstate__(self):       # data-loader workers map the file themselves
        d = dict(self.__dict__)
        d["_mm"] = None
        return d

    def pixels(self, i) -> np.ndarray:
        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        o, w, h = self._off[i], self._w[i], self._h[i]
        return self._mm[o:o + w * h * 3].reshape(h, w, 3)


class MemorySet:
    """Pictures held in memory (the shrunk copy of a pack)."""

    def __init__(self, pics, classes, class_names):
        self.pics, self._cls, self.class_names = pics, classes, class_names
        self.count = len(pics)

    def width(self, i):
        return self.pics[i].shape[1]

    def height(self, i):
        return self.pics[i].shape[0]

    def class_id(self, i):
        return self._cls[i]

    def pixels(self, i):
        return self.pics[i]


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".gif")


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise DataError("reading an ImageFolder needs Pillow (pip install Pillow)")
    return Image, ImageOps


class ImageFolderSet(_Listed):
    """DIR/classname/**/*.{jpg,png,webp,...}: sorted subfolders are the classes. Pictures are decoded
    with Pillow as reptok.build_dataset does (EXIF orientation, alpha over mid grey, grey to RGB);
    with `max_side` they are shrunk (Pillow box filter) to that long side when larger."""

    def __init__(self, root: str, max_side: int | None = None):
        Image, _ = _pil()
        classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        if not classes:
            raise DataError(f"{root}: no class subfolders (ImageFolder layout DIR/classname/*.jpg)")
        files, cls = [], []
        for c, name in enumerate(classes):
            for dp, dn, fn in os.walk(os.path.join(root, name)):
                dn.sort()
                for f in sorted(fn):
                    if f.lower().endswith(IMAGE_EXTS):
                        files.append(os.path.join(dp, f))
                        cls.append(c)
        if not files:
            raise DataError(f"{root}: no pictures")
        self.files, self._cls, self.class_names, self.count = files, cls, classes, len(files)
        self.max_side = max_side
        self._w, self._h = [], []
        for f in files:   # sizes from the headers (views need them before decoding)
            with Image.open(f) as im:
                w, h = im.size
                o = im.getexif().get(0x0112, 1) if hasattr(im, "getexif") else 1
            if o in (5, 6, 7, 8):
                w, h = h, w
            if max_side and max(w, h) > max_side:
                w, h = shrunk_size(w, h, max_side)
            self._w.append(w)
            self._h.append(h)

    def pixels(self, i) -> np.ndarray:
        Image, ImageOps = _pil()
        with Image.open(self.files[i]) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                im = im.point(lambda v: v / 257).convert("L") if max(im.getextrema()) > 255 else im.convert("L")
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            if im.mode in ("RGBA", "LA", "PA"):
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, (128, 128, 128, 255)), rgba)
            im = im.convert("RGB")
            if im.size != (self._w[i], self._h[i]):
                im = im.resize((self._w[i], self._h[i]), Image.BOX)
            return np.asarray(im, dtype=np.uint8)


def open_pictures(path: str, verify_crc: bool = False, max_side: int | None = None):
    if os.path.isdir(path):
        return ImageFolderSet(path, max_side)
    return RTDSPack(path, verify_crc)


def shrunk_size(w: int, h: int, max_side: int):
    long = max(w, h)
    return (max(1, int(math.floor(w * max_side / long + 0.5))), max(1, int(math.floor(h * max_side / long + 0.5))))
