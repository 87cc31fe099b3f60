"""Engine: what a run is (``config``), how it trains (``training``), grids of runs (``sweep``),
resumable ``checkpoint``s, ``distributed`` data parallelism under torchrun, ``device`` defaults
(bf16, channels_last), ``records`` (results CSV + JSON run record) and ``profiles`` (smoke / cpu /
gpu, and where outputs go). Needs the ``train`` extra: ``pip install "nfrepro[train]"``.
"""
try:
    import pandas  # noqa: F401
    import tqdm  # noqa: F401
except ModuleNotFoundError as _err:  # a clear message instead of a traceback deep in training
    raise ModuleNotFoundError(f"nfrepro.engine needs {_err.name!r}, one of the 'train' extra's packages: "
                              f"pip install \"nfrepro[train]\"", name=_err.name) from _err

from nfrepro.engine.config import ConfigError, TrainConfig
from nfrepro.engine.sweep import run_sweep
from nfrepro.engine.training import RunResult, evaluate, train, train_step

__all__ = ["ConfigError", "TrainConfig", "RunResult", "evaluate", "train", "train_step", "run_sweep"]
