import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "Sources", "RepTokCodec", "Models")


@pytest.fixture
def default_model():
    """The shipped default model file (skips when this checkout has no Sources/)."""
    p = os.path.join(MODELS, "default.safetensors")
    if not os.path.exists(p):
        pytest.skip("no Sources/RepTokCodec/Models/default.safetensors here")
    return p


@pytest.fixture
def ssl_encoder():
    p = os.path.join(MODELS, "ssl-encoder.safetensors")
    if not os.path.exists(p):
        pytest.skip("no Sources/RepTokCodec/Models/ssl-encoder.safetensors here")
    return p
