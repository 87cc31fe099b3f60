"""Fixtures shared by the signal-propagation tests (analysis.spp measures, experiments checks)."""
import pytest
import torch

import nfrepro
from nfrepro.analysis import spp


@pytest.fixture(scope="module")
def one_thread():
    """Thousands of tiny convolutions: one intra-op thread avoids the synchronisation cost."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- The paper's SPP shapes on the project's ResNets (NF-ResNet paper Fig. 1 and 2) ----------
# Two short stages at 64 px keep this under a few seconds; the 600-layer nets are in the slow
# test below. Feature maps of at least 8 x 8: zero padding at the borders of smaller maps lowers
# every 3 x 3 conv's output variance and would bias the comparison with the theory.
NETS = {
    "bn_relu_conv": ("bn_resnet600", dict(order="bn_relu_conv")),
    "relu_bn_conv": ("bn_resnet600", dict(order="relu_bn_conv")),
    "nf_he": ("nf_resnet600", dict(use_ws=False, skip_gain_init=1.0)),
    "nf_ws": ("nf_resnet600", dict(skip_gain_init=1.0)),
    "plain": ("plain_resnet600", dict()),
}


def spp_of(nets=NETS, *, depths, widths, resolution, batch, seed=0):
    x = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
    frames, models = {}, {}
    for label, (name, kwargs) in nets.items():
        torch.manual_seed(seed)
        models[label] = nfrepro.create_model(name, depths=depths, widths=widths, **kwargs)
        frames[label] = spp.signal_propagation(models[label], x)
    return frames, models


@pytest.fixture(scope="session")
def short_nets():
    """SPPs of the five §2 nets (NETS), two stages of 8 blocks, 64 px."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return spp_of(depths=(8, 8), widths=(64, 128), resolution=64, batch=4)
    finally:
        torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` run only where CUDA is present; elsewhere they are skipped, visibly."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: run `make gpu-check` on a GPU machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


class Killed(BaseException):
    """Stands for SIGKILL in the resume tests: not an Exception, so no handler of ours swallows it."""


def train_killed_after(config, epoch: int = 1):
    """Run ``config`` until the end of ``epoch`` and stop it there, as a kill would."""
    from nfrepro.engine.training import train

    def kill(done, row):
        if done == epoch:
            raise Killed

    with pytest.raises(Killed):
        train(config, on_epoch_end=kill)
