"""Parameter and multiply-add counts (``nfrepro.analysis.complexity``); Table 1's counts are pinned in
tests/models/test_nfnet.py."""
import torch

from nfrepro.analysis.complexity import count_macs
from nfrepro.models.nfnet import NFNet


def tiny():
    return NFNet("F0", channels=(32, 64, 64, 64), depths=(1, 2, 2, 1), group_size=16, num_classes=10)


def test_count_macs_on_a_real_model_matches_meta():
    model = tiny()
    with torch.device("meta"):
        twin = tiny()
    assert count_macs(model, 32) == count_macs(twin, 32) > 0
