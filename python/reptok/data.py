"""A PyTorch Dataset of .rtk records: the tokens of pictures encoded by `rtenc`, with their class.

    ds = reptok.RTKDataset("packed/")                  # a folder of .rtk files, or one stream
    ds.class_names                                     # ['animals', 'faces', ...]
    token, label = ds[0]                               # float32 [D] tensor, int
    loader = torch.utils.data.DataLoader(ds, batch_size=256, shuffle=True)

What `rttrain generator` trains on is the token of every training picture with its class (the
ImageFolder subfolder the picture came from), so a token-space generator can be trained in
PyTorch, on a GPU, from files `rtenc` made. The class follows the ImageFolder rule of
`rttrain generator`'s data (tools/build_dataset.py --from-folder, reptok.rtds.ImageFolderSet):
a record's class is the top-level folder of its path, and the classes are those folders' names,
sorted. A record's path is

- in a stream: its name (`rtenc -r photos/ -o all.rtk` names each record by its path below
  photos/, "animals/cat.png", class "animals");
- in a folder of .rtk files: the file's path below the folder without ".rtk" (`rtenc -r photos/
  -d packed/` writes packed/animals/cat.png.rtk), or, for named records inside a file, the file's
  folder below the root joined with the record's name.

Records whose path has no folder have no class: when none has one, all are the one class
"pictures" (as a one-class .rtds pack); a mix is an error. `class_of` (a function of the path) and
`classes` (a fixed list, e.g. the class list of an .rtds pack or of a generator file, so the labels
are its ids) change that.

Differences from `rttrain generator`'s token cache: a record holds the dequantized token of the
whole picture at its level (one per picture), where the trainer's cache holds 16 unquantized
tokens of augmented views per picture; `normalization()` gives the standardization it applies.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
import torch

from . import codec, rtk

__all__ = ["RTKDataset", "record_paths", "DataError"]


class DataError(ValueError):
    """A dataset that cannot be built as asked (no records, classes that do not resolve)."""


def _walk(root: str) -> list[str]:
    """The .rtk files below `root`, relative: a folder's files by name, then its subfolders by name."""
    out = []
    for dp, dn, fn in os.walk(root):
        dn.sort()
        for f in sorted(fn):
            if f.endswith(".rtk"):
                out.append(os.path.relpath(os.path.join(dp, f), root).replace(os.sep, "/"))
    return out


def record_paths(source, *, recover: bool = False, on_error=None) -> list[tuple[rtk.Record, str | None]]:
    """(record, path) for every record of a stream (path: the record's name) or of a folder of .rtk
    files (path: below the folder, see the module's doc)."""
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        root = os.fspath(source)
        out = []
        for rel in _walk(root):
            records = list(rtk.read(os.path.join(root, rel), recover=recover, on_error=on_error))
            folder = os.path.dirname(rel)
            for r in records:
                if r.name is not None:
                    out.append((r, f"{folder}/{r.name}" if folder else r.name))
                else:
                    out.append((r, rel[:-len(".rtk")] if len(records) == 1 else rel))
        return out
    if isinstance(source, (list, tuple)) and not all(isinstance(r, rtk.Record) for r in source):
        out = []
        for s in source:
            out += record_paths(s, recover=recover, on_error=on_error)
        return out
    records = [source] if isinstance(source, rtk.Record) else \
        list(source) if isinstance(source, (list, tuple)) else list(rtk.read(source, recover=recover, on_error=on_error))
    return [(r, r.name) for r in records]


def _top_folder(path: str | None) -> str | None:
    if not path or "/" not in path:
        return None
    return path.split("/", 1)[0]


class RTKDataset(torch.utils.data.Dataset):
    """Tokens and class labels of .rtk records (see the module's doc).

    `source`: a stream (path, bytes or file object), a folder of .rtk files, a list of those, or
    Records. `model`: the codec model (path, CodecModel, or list; default: found by fingerprint as
    rtdec does); all records must name one model. `classes`: a fixed class list (labels are its
    indices); `class_of(path) -> str`: the class of a record's path (default: its top folder).
    `transform(token) -> tensor`: applied to each token tensor on access.

    Attributes: `tokens` (float32 [N, D] numpy), `labels` (int64 [N]), `class_names`, `paths`,
    `records`, `model` (the CodecModel), `fingerprint`."""

    def __init__(self, source, model=None, *, classes: Sequence[str] | None = None,
                 class_of: Callable[[str | None], str | None] | None = None,
                 transform: Callable | None = None, recover: bool = False, on_error=None):
        pairs = record_paths(source, recover=recover, on_error=on_error)
        if not pairs:
            raise DataError("no .rtk records in the dataset's source")
        self.records = [r for r, _ in pairs]
        self.paths = [p for _, p in pairs]
        fps = sorted({r.fingerprint for r in self.records})
        if len(fps) != 1:
            raise DataError("the records name %d models (%s): a dataset holds the tokens of one model"
                            % (len(fps), ", ".join("%016x" % f for f in fps[:4])))
        self.fingerprint = fps[0]
        self.model = codec.find_model(self.fingerprint, model)
        self.tokens = self.model.tokens(self.records)
        names = [(class_of or _top_folder)(p) for p in self.paths]
        if classes is not None:
            self.class_names = list(classes)
            index = {c: i for i, c in enumerate(self.class_names)}
            for n, p in zip(names, self.paths):
                if n not in index:
                    raise DataError(f"record {p!r}: class {n!r} is not in the given classes")
            labels = [index[n] for n in names]
        elif all(n is None for n in names):
            self.class_names = ["pictures"]
            labels = [0] * len(names)
        else:
            missing = [p for n, p in zip(names, self.paths) if n is None]
            if missing:
                raise DataError(f"{len(missing)} record(s) have no class folder (first: {missing[0]!r}); "
                                "give class_of or classes")
            self.class_names = sorted(set(names))
            index = {c: i for i, c in enumerate(self.class_names)}
            labels = [index[n] for n in names]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        z = torch.from_numpy(self.tokens[i])
        if self.transform is not None:
            z = self.transform(z)
        return z, int(self.labels[i])

    @property
    def dim(self) -> int:
        return self.tokens.shape[1]

    def normalization(self, per_dim_std: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(mean [D], std [D] or [1]) of the tokens, as `rttrain generator` standardizes them
        (u = (z - mean) / std; --per-dim-std: one std per dimension, else the RMS over all; at
        least 1e-8), in float64, returned as float32."""
        t = self.tokens.astype(np.float64)
        mean = t.mean(0)
        ss = ((t - mean) ** 2).sum(0)
        n = t.shape[0]
        std = np.maximum(np.sqrt(ss / n), 1e-8) if per_dim_std else np.array([max(np.sqrt(ss.sum() / (n * t.shape[1])), 1e-8)])
        return mean.astype(np.float32), std.astype(np.float32)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {c: int(k) for c, k in zip(self.class_names, counts)}
