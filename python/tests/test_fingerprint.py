"""The fingerprint rule's golden vectors (Tests/Parity/fingerprint, also read by
Tests/CodecTests/FingerprintGoldenTests.swift): reptok.modelfile.canonical_json gives the
hand-written canonical form of every case, and reptok.modelfile.fingerprint the fingerprints the
Swift side computes for the vector file and the committed models (Man/rtk.5 MODEL FINGERPRINTS)."""
import json
import pathlib

import pytest

from reptok.modelfile import canonical_json, fingerprint, read_header, CONFIG_KEY

ROOT = pathlib.Path(__file__).resolve().parents[2]
VECTORS = ROOT / "Tests" / "Parity" / "fingerprint"
SSL = dict(prefixes=("encoder.",), parts=("encoder",))


def test_canonical_forms():
    doc = json.loads((VECTORS / "canonical.json").read_text())
    assert len(doc["cases"]) > 50
    for case in doc["cases"]:
        assert canonical_json(json.loads(case["input"])) == case["canonical"], case["input"]
        # a fixed point
        assert canonical_json(json.loads(case["canonical"])) == case["canonical"], case["canonical"]
    # Python's json reads 1e400 as inf (and accepts duplicate keys and NaN): no canonical form
    for err in doc["errors"]:
        if err["why"] == "not finite":
            with pytest.raises(ValueError):
                canonical_json(json.loads(err["input"]))


def test_vector_model():
    expected = json.loads((VECTORS / "expected.json").read_text())
    path = str(VECTORS / "model.safetensors")
    config = json.loads(read_header(path)[0][CONFIG_KEY])
    for part, text in expected["parts"].items():
        assert canonical_json(config[part]) == text, part
    assert fingerprint(path) == expected["codec"]
    assert fingerprint(path, **SSL) == expected["ssl"]


def test_committed_models():
    expected = json.loads((VECTORS / "expected.json").read_text())
    assert expected["committed"]["Sources/RepTokCodec/Models/default.safetensors"]["codec"] == "fd873927ad45f67f"
    for rel, fps in expected["committed"].items():
        path = ROOT / rel
        if not path.exists():
            pytest.skip("no %s here" % rel)
        if "codec" in fps:
            assert fingerprint(str(path)) == fps["codec"], rel
        if "ssl" in fps:
            assert fingerprint(str(path), **SSL) == fps["ssl"], rel
