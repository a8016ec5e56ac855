"""reptok for Python: the PyTorch side of the reptok codec (one-token image codec, RepTok).

The modules mirror the Swift targets (Sources/), one to one:

  reptok.rng          Philox4x32-10, mix64, the trainer's per-step streams   (RepTokTensor Random)
  reptok.rtds         .rtds packs and ImageFolders                           (RepTokData)
  reptok.resample     resampling, the codec's model view                     (RepTokImage Resample)
  reptok.views        training views                                         (RepTokData ViewSampler)
  reptok.zstd         zstd as RTKZstd uses it                                (RepTokFormat Zstd)
  reptok.quantizer    the PCA / zstd quantizer, record sizes                 (RepTokCodec Quantizer)
  reptok.modelfile    model files: safetensors, reptok.config, fingerprint  (RepTokModels ModelFile,
                      and Hugging Face views of the encoder                   CodecModel.fingerprint)
  reptok.model        the PyTorch model: encoder, adapter, decoder, RepTok   (RepTokModels)
  reptok.export       the export to a model file                             (RepTokTrain Export)
  reptok.train        the trainer (`reptok-train`, `python -m reptok.train`) (RepTokTrain, rttrain)
  reptok.build_dataset  the training set (`reptok-build-dataset`)

Importing `reptok` imports nothing heavy: rng, rtds, resample, zstd, quantizer and modelfile need
numpy only; model, views, export and train need torch (`pip install -e python[train]`).
"""

__version__ = "0.1.0"

# ---- decoding API (helper B: reptok.rtk, reptok.entropy, reptok.codec, reptok.data) -----------
# B adds its light imports here (e.g. `from .rtk import read`); keep them free of torch, and
# mind that `python -m reptok.build_dataset` (standard library only) imports this file first on
# machines that may lack numpy.
# Reading and decoding .rtk records: reptok.read (standard library only) and, imported on first
# use, reptok.tokens / reptok.decode (numpy; decode runs torch) and reptok.RTKDataset (torch).
from .rtk import Record, RTKError, read, read_one  # noqa: E402

_LAZY = {"tokens": "codec", "decode": "codec", "load_model": "codec", "find_model": "codec",
         "CodecModel": "codec", "ModelError": "codec", "PayloadError": "entropy",
         "RTKDataset": "data"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module("." + _LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
# ---- end of the decoding API ------------------------------------------------------------------
