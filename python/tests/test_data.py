"""reptok.RTKDataset: tokens and classes of .rtk streams and folders (the ImageFolder rule of
rttrain generator's data), on the tiny parity model's records and, when a built rtenc is found,
on files rtenc writes from an image tree (-r -o STREAM and -r -d FOLDER)."""

import dataclasses
import os
import shutil
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import reptok  # noqa: E402
from reptok.data import DataError, RTKDataset, record_paths  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VECTORS = os.path.join(ROOT, "Tests", "Parity", "decode")
TINY = os.path.join(VECTORS, "tiny.safetensors")


@pytest.fixture(scope="module")
def records():
    return list(reptok.read(os.path.join(VECTORS, "tiny.rtk")))


def renamed(records, names):
    return [dataclasses.replace(r, name=n) for r, n in zip(records, names)]


def test_stream_classes_are_the_top_folders_of_the_names(records, tmp_path):
    names = ["faces/a.png", "animals/b.png", "faces/x/c.png", "street/d.png", "animals/e.png", "faces/f.png"]
    p = tmp_path / "s.rtk"
    p.write_bytes(b"".join(r.to_bytes() for r in renamed(records, names)))
    ds = RTKDataset(str(p), TINY)
    assert ds.class_names == ["animals", "faces", "street"]
    assert list(ds.labels) == [1, 0, 1, 2, 0, 1]
    assert ds.paths == names and len(ds) == 6 and ds.dim == 96
    assert ds.class_counts() == {"animals": 2, "faces": 3, "street": 1}
    assert np.array_equal(ds.tokens, reptok.tokens(records, TINY))
    z, y = ds[3]
    assert isinstance(z, torch.Tensor) and z.dtype == torch.float32 and z.shape == (96,) and y == 2
    batches = list(torch.utils.data.DataLoader(ds, batch_size=4))
    assert batches[0][0].shape == (4, 96) and batches[0][1].tolist() == [1, 0, 1, 2]
    # a fixed class list (e.g. an .rtds pack's, so the labels are its ids), and a custom rule
    fixed = ["nature", "objects", "faces", "people", "album", "street", "animals"]
    assert list(RTKDataset(str(p), TINY, classes=fixed).labels) == [2, 6, 2, 5, 6, 2]
    with pytest.raises(DataError, match="not in the given classes"):
        RTKDataset(str(p), TINY, classes=["faces"])
    ds2 = RTKDataset(str(p), TINY, class_of=lambda path: path.rsplit("/", 1)[-1][0])
    assert ds2.class_names == ["a", "b", "c", "d", "e", "f"]


def test_unnamed_and_mixed(records, tmp_path):
    p = tmp_path / "plain.rtk"
    p.write_bytes(b"".join(dataclasses.replace(r, name=None).to_bytes() for r in records))
    ds = RTKDataset(str(p), TINY)
    assert ds.class_names == ["pictures"] and not ds.labels.any()
    mixed = renamed(records, ["a/x.png", "b.png", "a/y.png", "a/z.png", "b/w.png", "c/v.png"])
    with pytest.raises(DataError, match="1 record.* no class folder .*'b.png'"):
        RTKDataset(mixed, TINY)
    with pytest.raises(DataError, match="no .rtk records"):
        RTKDataset([], TINY)
    other = dataclasses.replace(records[0], fingerprint=1)
    with pytest.raises(DataError, match="name 2 models"):
        RTKDataset([other] + records[1:], TINY)


def test_folder_of_rtk_files(records, tmp_path):
    root = tmp_path / "packed"
    plain = [dataclasses.replace(r, name=None) for r in records]
    layout = {"faces/a.png.rtk": [plain[0]], "animals/sub/b.png.rtk": [plain[1]],
              "animals/c.rtk": renamed(records[2:4], ["c1.png", "c2.png"]),   # a stream of named records
              "streets.rtk": renamed(records[4:6], ["street/d.png", "street/e.png"]),
              "faces/ignored.txt": []}
    for rel, recs in layout.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"".join(r.to_bytes() for r in recs))
    pairs = record_paths(str(root))
    # walk order: a folder's files by name, then its subfolders by name
    assert [p for _, p in pairs] == ["street/d.png", "street/e.png", "animals/c1.png", "animals/c2.png",
                                     "animals/sub/b.png", "faces/a.png"]
    ds = RTKDataset(str(root), TINY)
    assert ds.class_names == ["animals", "faces", "street"]
    assert list(ds.labels) == [2, 2, 0, 0, 0, 1]
    # a list of sources
    assert len(RTKDataset([str(root / "faces"), str(root / "streets.rtk")], TINY, class_of=lambda p: "x")) == 3


def test_normalization(records):
    ds = RTKDataset(records, TINY)
    mean, std = ds.normalization()
    t = ds.tokens.astype(np.float64)
    assert np.allclose(mean, t.mean(0)) and np.allclose(std, t.std(0))
    mean1, std1 = ds.normalization(per_dim_std=False)
    assert std1.shape == (1,) and np.isclose(std1[0], np.sqrt(((t - t.mean(0)) ** 2).mean()))
    ds.transform = lambda z: (z - torch.from_numpy(mean)) / torch.from_numpy(std)
    u = torch.stack([ds[i][0] for i in range(len(ds))])
    assert torch.allclose(u.mean(0), torch.zeros(96), atol=1e-5)


def _tool(name):
    for d in ("release", "debug"):
        p = os.path.join(ROOT, ".build", d, name)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name)


def test_files_made_by_rtenc(tmp_path):
    """An ImageFolder tree through rtenc: one stream (-r -o) and a folder of records (-r -d) give
    the same tokens and the same classes, the tree's subfolders."""
    rtenc = _tool("rtenc")
    if rtenc is None:
        pytest.skip("no built rtenc (swift build) to make the files")
    corpus = os.path.join(ROOT, "corpus")
    tree = {"faces": ["02_face_astronaut.png"], "animals": ["04_animal_horse.png"],
            "street": ["03_street_00000100_f0100.png", "06_videoframe_vid-20191220-170832_f0010.png"]}
    for cls, files in tree.items():
        (tmp_path / "pics" / cls).mkdir(parents=True)
        for f in files:
            shutil.copy(os.path.join(corpus, f), tmp_path / "pics" / cls / f)
    env = dict(os.environ, REPTOK_THREADS="1")
    subprocess.run([rtenc, "-m", TINY, "-q", "4", "-r", str(tmp_path / "pics"), "-o", str(tmp_path / "all.rtk")],
                   check=True, env=env, capture_output=True)
    subprocess.run([rtenc, "-m", TINY, "-q", "4", "-r", str(tmp_path / "pics"), "-d", str(tmp_path / "packed")],
                   check=True, env=env, capture_output=True)
    a = RTKDataset(str(tmp_path / "all.rtk"), TINY)
    b = RTKDataset(str(tmp_path / "packed"), TINY)
    assert a.class_names == b.class_names == ["animals", "faces", "street"]
    assert sorted(a.paths) == sorted(b.paths) == sorted(f"{c}/{f}" for c, fs in tree.items() for f in fs)
    order = [a.paths.index(p) for p in b.paths]
    assert np.array_equal(a.tokens[order], b.tokens) and np.array_equal(a.labels[order], b.labels)
