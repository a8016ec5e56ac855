import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "Sources", "RepTokCodec", "Models")


def _bundled(name):
    """A model file shipped in Sources/RepTokCodec/Models (skips when this checkout has none)."""
    p = os.path.join(MODELS, name)
    if not os.path.exists(p):
        pytest.skip(f"no Sources/RepTokCodec/Models/{name} here")
    return p


@pytest.fixture
def default_model():
    """The shipped default model file."""
    return _bundled("default.safetensors")


@pytest.fixture
def ssl_encoder():
    """The shipped SSL encoder."""
    return _bundled("ssl-encoder.safetensors")
