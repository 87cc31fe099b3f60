"""nfrepro.engine.config: every bad setting is a ConfigError naming it, before any work."""
from __future__ import annotations

import math

import pytest
import torch

from nfrepro.engine.config import ConfigError, TrainConfig
from nfrepro.optim.agc import AGCSelection

GOOD = dict(model="nf_resnet_small", model_kwargs={"depths": [1, 1], "widths": [4, 8]},
            dataset="synthetic")
NAN, INF = math.nan, math.inf

BAD = {
    "base_lr nan": (dict(base_lr=NAN), "base_lr"),
    "base_lr inf": (dict(base_lr=INF), "base_lr"),
    "base_lr 0": (dict(base_lr=0.0), "base_lr"),
    "clipping inf": (dict(clipping=INF), "clipping"),
    "clipping nan": (dict(clipping=NAN), "clipping"),
    "clipping text": (dict(clipping="0.01"), "clipping must be float | None"),
    "clip_eps 0": (dict(clip_eps=0.0), "clip_eps"),
    "clip_eps text": (dict(clip_eps="1e-3"), "clip_eps must be a number"),
    "clip_classifier 1": (dict(clip_classifier=1), "clip_classifier must be True or False"),
    "clip_exclude_first_conv text": (dict(clip_exclude_first_conv="yes"), "clip_exclude_first_conv"),
    "clip_exclude_stages text": (dict(clip_exclude_stages="0"), "clip_exclude_stages"),
    "train_subset -1": (dict(train_subset=-1), "train_subset"),
    "test_subset 0": (dict(test_subset=0), "test_subset"),
    "batch_size 0": (dict(batch_size=0), "batch_size"),
    "batch_size text": (dict(batch_size="16"), "batch_size must be int"),
    "batch_size bool": (dict(batch_size=True), "batch_size must be int"),
    "eval_batch_size 0": (dict(eval_batch_size=0), "eval_batch_size"),
    "label_smoothing 2": (dict(label_smoothing=2.0), "label_smoothing"),
    "label_smoothing 1": (dict(label_smoothing=1.0), "label_smoothing"),
    "label_smoothing -0.1": (dict(label_smoothing=-0.1), "label_smoothing"),
    "warmup -3": (dict(warmup_epochs=-3.0), "warmup_epochs"),
    "warmup inf": (dict(warmup_epochs=INF), "warmup_epochs"),
    "weight_decay -1": (dict(weight_decay=-1.0), "weight_decay"),
    "momentum 1.5": (dict(momentum=1.5), "momentum"),
    "randaugment one number": (dict(randaugment=[1]), "randaugment takes two"),
    "randaugment three numbers": (dict(randaugment=[1, 2, 3]), "randaugment takes two"),
    "randaugment 0 layers": (dict(randaugment=[0, 5]), "randaugment takes two"),
    "randaugment level 11": (dict(randaugment=[2, 11]), "randaugment takes two"),
    "clip_exclude_stages 2 of 2": (dict(clipping=0.01, clip_exclude_stages=[2]), "clip_exclude_stages: no "
                                   "block has stage [2]"),
    "clip_exclude_stages -3 of 2": (dict(clipping=0.01, clip_exclude_stages=[-3]), "clip_exclude_stages"),
    "clip_exclude_skip_gains, BN": (dict(clipping=0.01, model="bn_resnet_small",
                                         clip_exclude_skip_gains=True), "clip_exclude_skip_gains"),
    "sam_rho 0": (dict(sam_rho=0.0), "sam_rho"),
    "mixup_alpha 0": (dict(mixup_alpha=0.0), "mixup_alpha"),
    "crop_padding -1": (dict(crop_padding=-1), "crop_padding"),
    "seed -1": (dict(seed=-1), "seed"),
    "unknown dataset": (dict(dataset="mnist"), "unknown dataset 'mnist'"),
    "unknown model": (dict(model="nf_resnet_smal"), "Did you mean nf_resnet_small"),
    "model arg unknown key": (dict(model_kwargs={"colour": "red"}), "takes no argument colour"),
    "model arg alpha -5": (dict(model_kwargs={"alpha": -5}), "alpha must be finite and >= 0"),
    "model arg alpha nan": (dict(model_kwargs={"alpha": NAN}), "alpha must be finite"),
    "model arg bad depths": (dict(model_kwargs={"depths": [0]}), "depths"),
    "model arg bad activation": (dict(model_kwargs={"activation": "relu7"}), "relu7"),
    "num_classes vs data": (dict(model_kwargs={"num_classes": 3}), "num_classes=3 disagrees"),
    "in_chans vs data": (dict(model_kwargs={"in_chans": 3}), "in_chans=3 disagrees"),
    "device tpu": (dict(device="tpu"), "device 'tpu'"),
    "device meta": (dict(device="meta"), "device 'meta'"),
}
if not torch.cuda.is_available():
    BAD["device cuda absent"] = (dict(device="cuda"), "CUDA is not available")


@pytest.mark.parametrize("case", list(BAD))
def test_bad_setting_is_one_line_naming_it(case):
    overrides, expected = BAD[case]
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({**GOOD, **overrides}).validate()  # the flat keys of config.json
    message = str(info.value)
    assert expected in message and "\n" not in message, message


def test_good_settings_pass():
    TrainConfig(**GOOD).validate()
    TrainConfig(**GOOD, clipping=0.01, randaugment=[2, 10], agc=AGCSelection(exclude_stages=(0, -1)),
                label_smoothing=0.0, warmup_epochs=0, base_lr=1, train_subset=1).validate()
    TrainConfig(model="nfnet_f0", dataset="cifar10", model_kwargs={"alpha": 0.0}).validate()


def test_config_json_is_flat_and_round_trips():
    """The AGC selection is one object in the config and flat clip_* keys on disk, as before it was one."""
    selection = AGCSelection(exclude_stages=(1,), exclude_skip_gains=True)
    config = TrainConfig(**GOOD, clipping=0.02, agc=selection)
    values = config.to_dict()
    assert "agc" not in values and values["clip_exclude_stages"] == [1] and values["clip_eps"] == 1e-3
    keys = list(values)
    assert keys[keys.index("clipping") + 1:keys.index("ema_decay")] == [
        "clip_eps", "clip_classifier", "clip_exclude_first_conv", "clip_exclude_stages",
        "clip_exclude_skip_gains", "clip_exclude_stage_skip_gains"]
    assert TrainConfig.from_dict(values) == config
    with pytest.raises(ConfigError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({**values, "clip_exclude_stage": [0]})
