"""Model files: the safetensors container, the `reptok.config` metadata and the fingerprint.

A model file (`format: "reptok-model"`, docs/ARCHITECTURE.md) is a safetensors file whose tensor
names carry a prefix per part (`encoder.`, `adapter.`, `decoder.`, `quantizer.`, `frozen.`, and
`generator.` / `normalization.` in generator files) and whose `__metadata__` holds
`reptok.config`, a JSON object with the parts' configs. This module writes such files
(`write_safetensors`, `config_json` with the Swift field names and float spelling), reads their
header (`read_header`), recomputes `CodecModel.fingerprint` (`fingerprint`) and turns the encoder
config into one Hugging Face's `Dinov2Config` accepts (`hf_encoder_config`). No torch at import.
"""

from __future__ import annotations

import json
import os
import struct

from ._floats import MASK64, f32_json

__all__ = ["FORMAT", "VERSION", "CONFIG_KEY", "ENC_KEYS", "DEC_KEYS", "clean_config", "write_safetensors",
           "read_header", "read_config", "config_json", "canonical_json", "swift_json", "fingerprint", "hf_encoder_config",
           "DECODE_PREFIXES"]

FORMAT = "reptok-model"
VERSION = 1
CONFIG_KEY = "reptok.config"
# the tensors a decoder needs, and what the fingerprint covers
DECODE_PREFIXES = ("encoder.", "adapter.", "decoder.", "quantizer.")


class QuantizerKey:
    """The quantizer tensors of a codec model file, spelled once (CodecModelFile.Key in Swift):
    read by reptok.codec, written and checked by reptok.export."""
    MEAN = "quantizer.mean"
    ROTATION = "quantizer.rotation"
    SIGMA = "quantizer.sigma"
    DICTIONARY = "quantizer.dictionary"
    SYNTHESIS = "quantizer.synthesis"
    SCALE = "quantizer.scale"

# ----------------------------------------------------------------------------------------------
# configs as the Swift side writes them

ENC_KEYS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "patch_size", "image_size",
            "num_channels", "layer_norm_eps", "layerscale_value", "num_register_tokens", "qkv_bias",
            "use_swiglu_ffn", "hidden_act", "image_mean", "image_std"]
DEC_KEYS = ["image_size", "patch_size", "width", "depth", "num_heads", "mlp_ratio", "token_dim", "freq_dim",
            "prediction", "t_eps", "layer_norm_eps"]


def clean_config(cfg: dict, keys) -> dict:
    """Only the fields the Swift configs know, floats as Swift writes its Floats."""
    out = {}
    for k in keys:
        v = cfg[k]
        if isinstance(v, bool) or isinstance(v, str):
            out[k] = v
        elif isinstance(v, (list, tuple)):
            out[k] = [f32_json(x) for x in v]
        elif isinstance(v, float):
            out[k] = f32_json(v)
        else:
            out[k] = int(v)
    return out


# ----------------------------------------------------------------------------------------------
# safetensors writing (per-tensor dtypes) and reading the header

def _st_dtypes():
    import torch
    return {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.uint8: "U8",
            torch.int64: "I64", torch.int32: "I32", torch.float64: "F64"}


def write_safetensors(path: str, tensors: dict, metadata: dict, atomic: bool = True):
    """Torch tensors written as given (dtype kept), sorted by name; atomically (temp + fsync + rename)."""
    import torch
    names = _st_dtypes()
    header = {"__metadata__": {str(k): str(v) for k, v in sorted(metadata.items())}}
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        data = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    h += b" " * (-len(h) % 8)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp" if atomic else path
    with open(tmp, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    if atomic:
        os.replace(tmp, path)
        try:
            fd = os.open(d, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        except OSError:
            pass


def read_header(path: str):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    return h.pop("__metadata__", {}), h, 8 + n


def config_json(enc: dict, dec: dict, **extra) -> str:
    obj = {"format": FORMAT, "version": VERSION, "encoder": clean_config(enc, ENC_KEYS),
           "decoder": dict(clean_config(dec, DEC_KEYS), **({"skip_size": int(dec["skip_size"])} if dec.get("skip_size") else {}))}
    obj.update(extra)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


# ----------------------------------------------------------------------------------------------
# Fingerprint (CodecModelFile.fingerprint): FNV-1a 64 over the decode tensors and the canonical JSON
# of the config parts (Man/rtk.5 MODEL FINGERPRINTS; golden vectors in Tests/Parity/fingerprint)

def _canonical_float(v: float) -> str:
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError("JSON has no %r" % v)
    if v == 0:
        return "0"
    big = abs(v) >= 2 ** 53
    if not big and v.is_integer():
        return str(int(v))
    # the shortest round-trip digits (repr's), as digits d1..dk and the exponent e of d1
    m, _, e = repr(abs(v)).partition("e")
    ip, _, fp = m.partition(".")
    digits = (ip + fp).lstrip("0")
    e = int(e or 0) + len(ip) - 1 - (len(ip + fp) - len((ip + fp).lstrip("0")))
    digits = digits.rstrip("0")
    sign = "-" if v < 0 else ""
    if e >= -4 and not big:
        if e < 0:
            return sign + "0." + "0" * (-e - 1) + digits
        return sign + digits[:e + 1].ljust(e + 1, "0") + ("." + digits[e + 1:] if len(digits) > e + 1 else "")
    return (sign + digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
            + "e" + ("-" if e < 0 else "+") + "%02d" % abs(e))


# the string escapes of the canonical form: these eight by name, other controls as \u00XX
_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\n": "\\n", "\r": "\\r", "\t": "\\t",
            "\b": "\\b", "\f": "\\f"}


def canonical_json(v) -> str:
    """The canonical JSON text of a parsed JSON value, the form fingerprints hash (Swift:
    JSONValue.canonicalText): no whitespace; members sorted by their keys' UTF-16 code units;
    `"` `\\` `/` escaped, the short escapes, other controls as \\u00xx; integers as their digits;
    other numbers as the nearest double: integral below 2^53 as an integer, else the shortest
    round-trip digits, fixed-point from 1e-4 to 2^53, else d.ddde+XX. Non-finite numbers raise."""
    if isinstance(v, dict):
        return "{" + ",".join(canonical_json(k) + ":" + canonical_json(v[k])
                              for k in sorted(v, key=lambda k: k.encode("utf-16-be", "surrogatepass"))) + "}"
    if isinstance(v, list):
        return "[" + ",".join(canonical_json(x) for x in v) + "]"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _canonical_float(v)
    out = ['"']
    for ch in v:
        esc = _ESCAPES.get(ch)
        out.append(esc if esc is not None else "\\u%04x" % ord(ch) if ord(ch) < 0x20 else ch)
    out.append('"')
    return "".join(out)


# the name before the rule was written down (it imitated Foundation's JSONSerialization)
swift_json = canonical_json

CODEC_PARTS = ("encoder", "decoder", "codec")


def fingerprint(path: str, prefixes=DECODE_PREFIXES, parts=CODEC_PARTS) -> str:
    """CodecModelFile.fingerprint of a model file (16 hex digits); with prefixes=("encoder.",) and
    parts=("encoder",), SSLEncoderFile.fingerprint."""
    meta, header, base = read_header(path)
    h = 0xCBF29CE484222325
    prime = 0x100000001B3

    def eat(data: bytes):
        nonlocal h
        x = h
        for b in data:
            x = ((x ^ b) * prime) & MASK64
        h = x

    names = sorted((k for k in header if k.startswith(tuple(prefixes))),
                   key=lambda s: s.encode("utf-8"))
    with open(path, "rb") as f:
        for n in names:
            info = header[n]
            eat(n.encode() + b"\0")
            eat(info["dtype"].encode() + b"\0")
            eat(",".join(str(s) for s in info["shape"]).encode() + b"\0")
            a, b = info["data_offsets"]
            f.seek(base + a)
            eat(f.read(b - a))
    if CONFIG_KEY in meta:
        try:
            obj = json.loads(meta[CONFIG_KEY])
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            for part in parts:
                if part in obj:
                    try:
                        text = canonical_json(obj[part])
                    except ValueError:  # a part without a canonical form adds nothing
                        continue
                    eat(text.encode("utf-8") + b"\0")
    return "%016x" % h


def read_config(source) -> dict:
    """The parsed `reptok.config` of a model file: `source` is a path, a safetensors metadata dict
    (with the JSON string under `reptok.config`) or an already parsed config dict."""
    if isinstance(source, (str, os.PathLike)):
        source = read_header(os.fspath(source))[0]
    if not isinstance(source, dict):
        raise TypeError(f"expected a path or a dict, got {type(source).__name__}")
    if CONFIG_KEY in source:
        v = source[CONFIG_KEY]
        return json.loads(v) if isinstance(v, (str, bytes)) else dict(v)
    return dict(source)


# ----------------------------------------------------------------------------------------------
# Hugging Face views of a model file

# Dinov2Config / Dinov2WithRegistersConfig fields typed float (transformers 5.x validates types
# strictly, and the Swift side writes integral floats as integers: `layerscale_value: 1`)
_HF_FLOAT_FIELDS = ("layerscale_value", "layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob",
                    "drop_path_rate", "initializer_range")
_HF_INT_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "patch_size",
                  "image_size", "num_channels", "num_register_tokens")


def hf_encoder_config(source) -> dict:
    """The encoder part of a model file as keyword arguments for transformers' `Dinov2Config`
    (`num_register_tokens` 0) or `Dinov2WithRegistersConfig` (> 0): the float fields as floats
    (a model file writes `layerscale_value: 1`, which `Dinov2Config(**...)` rejects in
    transformers 5.x), the int fields as ints; `image_mean` / `image_std` are left out (they
    belong to the image processor: `hf_image_processor_config`), and so is
    `num_register_tokens` when it is 0 (`Dinov2Config` has no such field).

    `source`: a path, safetensors metadata, a parsed `reptok.config`, or its `encoder` part."""
    cfg = read_config(source)
    enc = cfg.get("encoder", cfg) if isinstance(cfg.get("encoder"), dict) else cfg
    if "hidden_size" not in enc:
        raise ValueError("no encoder config (hidden_size missing)")
    out = {}
    for k, v in enc.items():
        if k in ("image_mean", "image_std"):
            continue
        if k in _HF_FLOAT_FIELDS and isinstance(v, (int, float)) and not isinstance(v, bool):
            v = float(v)
        elif k in _HF_INT_FIELDS and isinstance(v, float) and v.is_integer():
            v = int(v)
        out[k] = v
    if not out.get("num_register_tokens"):
        out.pop("num_register_tokens", None)
    return out


def hf_image_processor_config(source) -> dict:
    """Keyword arguments for transformers' `BitImageProcessor` (DINOv2's processor class) that
    come as close as Pillow allows to the codec's model view: the WHOLE picture squashed to
    image_size x image_size with the antialiased triangle (bilinear) filter, no aspect-preserving
    resize and no centre crop, then `(pixel / 255 - mean) / std`. The usual DINOv2 preprocessing
    (short side 256, bicubic, centre crop 224) gives other tokens. Pillow rounds its resampling
    differently from `reptok.resample.model_view` (which reproduces the Swift `Resample` bytes), so
    a few pixels may differ by one level; use `model_view` for the codec's exact input."""
    cfg = read_config(source)
    enc = cfg.get("encoder", cfg) if isinstance(cfg.get("encoder"), dict) else cfg
    s = int(enc["image_size"])
    mean = [float(x) for x in enc.get("image_mean", [0.485, 0.456, 0.406])]
    std = [float(x) for x in enc.get("image_std", [0.229, 0.224, 0.225])]
    return {"do_resize": True, "size": {"height": s, "width": s}, "resample": 2,   # PIL.Image.BILINEAR
            "do_center_crop": False, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": mean, "image_std": std, "do_convert_rgb": True}
