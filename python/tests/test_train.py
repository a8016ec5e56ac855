"""A tiny end-to-end run of the trainer on a synthetic pack: train, stop, resume, export; the
resumed run must be bit-identical to the uninterrupted one, and the exported file must be what
CodecModel loads (the export checks and reloads it itself)."""

from __future__ import annotations

import json
import os
import signal
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from reptok import build_dataset, model as reptok_model, train
from reptok.modelfile import CONFIG_KEY, fingerprint, read_header
from reptok.rtds import RTDSPack


class _Spool:
    def __init__(self, pics):
        self.pics = pics

    def read(self, r):
        return self.pics[r["i"]]


def write_pack(path: Path, count: int, seed: int):
    """A valid .rtds pack of smooth random pictures, written by reptok.build_dataset.write_rtds."""
    rs = np.random.default_rng(seed)
    pics, entries = [], []
    for i in range(count):
        w, h = int(rs.integers(20, 48)), int(rs.integers(20, 48))
        yy, xx = np.mgrid[0:h, 0:w]
        base = rs.uniform(0, 255, 3)
        grad = rs.uniform(-3, 3, (2, 3))
        px = np.clip(base + xx[..., None] * grad[0] + yy[..., None] * grad[1] + rs.normal(0, 8, (h, w, 3)), 0, 255)
        data = px.astype(np.uint8).tobytes()
        pics.append(data)
        entries.append(({"i": i, "w": w, "h": h, "flags": 0, "crc": zlib.crc32(data) & 0xFFFFFFFF}, i % 2, i, i))
    build_dataset.write_rtds(path, entries, ["a", "b"], _Spool(pics))


@pytest.fixture(scope="module")
def packs(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    write_pack(d / "train.rtds", 12, 1)
    write_pack(d / "val.rtds", 5, 2)
    return d


TINY = ["--tune", "all", "--image-size", "16", "--patch", "8", "--width", "16", "--depth", "1", "--heads", "2",
        "--enc-width", "16", "--enc-depth", "1", "--enc-heads", "2", "--enc-patch", "8", "--batch", "4",
        "--steps", "4", "--warmup", "1", "--lr", "1e-3", "--ema", "0.9", "--token-noise", "0.1", "--t-one", "0.2",
        "--seed", "3", "--log-every", "2", "--threads", "1", "--workers", "0", "--attention", "math"]


def run(args):
    """train.main in this process; what it changes process-wide (attention kernel, threads,
    signal handlers) is put back."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    try:
        return train.main(args)
    finally:
        reptok_model.set_attention("math")
        torch.set_num_threads(threads)
        for s, h in handlers.items():
            signal.signal(s, h)


def test_pack_reads_back(packs):
    p = RTDSPack(str(packs / "train.rtds"), verify_crc=True)
    assert p.count == 12 and p.class_names == ["a", "b"] and p.pixels(3).shape[2] == 3


def test_train_resume_export(packs, tmp_path, capsys):
    data = ["--data", str(packs / "train.rtds"), "--val", str(packs / "val.rtds")]
    assert run(data + TINY + ["--out", str(tmp_path / "a"), "--stop-after", "2"]) == 0
    assert not (tmp_path / "a" / "model.safetensors").exists()
    model_path = tmp_path / "model.safetensors"
    assert run(["--out", str(tmp_path / "a"), "--resume", "--threads", "1", "--workers", "0", "--attention", "math",
                "--quality-tolerance", "0", "--export-out", str(model_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert run(data + TINY + ["--out", str(tmp_path / "b"), "--no-export"]) == 0
    a = load_file(str(tmp_path / "a" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a), "resume is not bit-identical"
    for p in (tmp_path / "a", tmp_path / "b"):
        st = json.loads(read_header(str(p / "checkpoint.safetensors"))[0]["reptok.train"])
        assert st["step"] == 4
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]
    # the export: report, file, fingerprint
    assert report["fingerprint"] == fingerprint(str(model_path)) and report["val_pictures"] == 5
    cfg = json.loads(read_header(str(model_path))[0][CONFIG_KEY])
    assert cfg["format"] == "reptok-model" and cfg["training"]["trainer"] == "reptok.train"
    assert cfg["codec"]["default_level"] == 5 and len(report["predicted_levels"]) == 9
    back = reptok_model.load_reptok(str(model_path))
    assert back.decoder.config["image_size"] == 16
    assert os.path.getsize(model_path) == report["file_bytes"]
