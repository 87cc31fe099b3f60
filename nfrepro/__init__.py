"""nfrepro: a notebook-driven reproduction of NFNets, AGC and NF-ResNets (Brock et al., 2021).

The public entry points are re-exported here; each lives in a module named after its paper
concept (see DESIGN.md).
"""
from nfrepro.models import create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = ["create_model", "list_models", "register_model", "load_pretrained", "__version__"]


def __getattr__(name):  # lazy: importing the package does not build or load anything heavy
    if name == "load_pretrained":
        from nfrepro.models.pretrained import load_pretrained
        return load_pretrained
    raise AttributeError(f"module 'nfrepro' has no attribute {name!r}")
