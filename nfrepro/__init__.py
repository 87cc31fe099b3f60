"""nfrepro: a notebook-driven reproduction of NFNets, AGC and NF-ResNets (Brock et al., 2021).

The public API, re-exported from the subpackages whose folders are the architecture
(``docs/DESIGN.md``): ``layers`` -> ``models``; ``optim``; ``data`` -> ``engine``; ``analysis``;
``bench``; ``experiments``. ``import nfrepro`` needs torch and numpy only;
:func:`signal_propagation` also needs pandas and is imported on first use.
"""
from nfrepro.models import (
    create_model,
    fold_for_inference,
    fold_weight_standardization,
    list_models,
    load_pretrained,
    register_model,
)
from nfrepro.optim import AGC, AGCSelection, adaptive_grad_clip_, clip_parameters

__version__ = "0.1.0"

__all__ = ["create_model", "list_models", "register_model", "load_pretrained", "fold_for_inference",
           "fold_weight_standardization", "AGC", "AGCSelection", "adaptive_grad_clip_", "clip_parameters",
           "signal_propagation", "__version__"]


def __getattr__(name):  # pandas is not a core dependency: imported when first asked for
    if name == "signal_propagation":
        from nfrepro.analysis.spp import signal_propagation
        return signal_propagation
    raise AttributeError(f"module 'nfrepro' has no attribute {name!r}")
