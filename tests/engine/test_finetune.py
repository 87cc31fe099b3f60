"""nfrepro.engine.finetune and the fine-tuning fields of a run: pre-trained weights, a class split,
a frozen backbone (linear probe) and re-estimated BatchNorm statistics."""
from __future__ import annotations

import torch
import torch.nn as nn

from nfrepro.engine import finetune
from nfrepro.engine.config import ConfigError, TrainConfig
from nfrepro.engine.training import train
from nfrepro.models import create_model

TINY = {"depths": [1, 1], "widths": [4, 8]}


def _config(tmp_path, name, **overrides) -> TrainConfig:
    values = dict(model="bn_resnet_small", model_kwargs=dict(TINY), dataset="synthetic", train_subset=128,
                  test_subset=64, batch_size=16, epochs=1, warmup_epochs=0.25, ema_decay=None,
                  run_dir=str(tmp_path / name), progress=False)
    values.update(overrides)
    return TrainConfig(**values)


def test_freeze_backbone_and_train_mode_leave_only_the_classifier_training():
    model = create_model("bn_resnet_small", num_classes=3, in_chans=1, **TINY)
    finetune.freeze_backbone(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    finetune.train_mode(model, frozen_backbone=True)
    assert model.fc.training and not any(m.training for m in model.modules()
                                         if isinstance(m, finetune.BatchNorm))
    finetune.train_mode(model)
    assert all(m.training for m in model.modules())


def test_reestimated_statistics_are_the_plain_average_over_the_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(2)).eval()
    batches = [(torch.randn(4, 2, 3, 3) * 3 + 1, None) for _ in range(3)]
    assert finetune.reestimate_bn_statistics(model, batches) == 1
    bn = model[0]
    means = torch.stack([x.mean((0, 2, 3)) for x, _ in batches]).mean(0)
    variances = torch.stack([x.var((0, 2, 3), unbiased=True) for x, _ in batches]).mean(0)
    torch.testing.assert_close(bn.running_mean, means)
    torch.testing.assert_close(bn.running_var, variances)
    assert bn.momentum == 0.1 and not model.training
    assert finetune.reestimate_bn_statistics(nn.Sequential(nn.Linear(2, 2)), batches) == 0  # no BN


def test_a_linear_probe_from_pretrained_weights_moves_the_classifier_only(tmp_path):
    source = train(_config(tmp_path, "source", classes=[0, 1, 2, 3, 4, 5]))
    weights = tmp_path / "source.pt"
    torch.save(source.model.state_dict(), weights)
    probe = train(_config(tmp_path, "probe", classes=[6, 7, 8, 9], per_class=8, pretrained=str(weights),
                          freeze_backbone=True, weight_decay=0.0, batch_size=8))
    before, after = source.model.state_dict(), probe.model.state_dict()
    assert probe.model.fc.out_features == 4 and probe.status == "completed"
    for key, value in after.items():  # weights and BN statistics of the backbone stay as loaded
        if not key.startswith("fc."):
            torch.testing.assert_close(value, before[key], msg=key)
    assert probe.metrics["step"].iloc[-1] == 4  # 4 classes x 8 images at batch 8


def test_bn_reestimate_replaces_the_source_statistics_before_the_first_step(tmp_path):
    model = create_model("bn_resnet_small", num_classes=4, in_chans=1, **TINY)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)  # running statistics at their defaults: mean 0, var 1
    kept = train(_config(tmp_path, "kept", classes=[6, 7, 8, 9], pretrained=str(weights),
                         freeze_backbone=True))
    redone = train(_config(tmp_path, "redone", classes=[6, 7, 8, 9], pretrained=str(weights),
                           freeze_backbone=True, bn_reestimate=True))
    stem_bn = next(k for k in kept.model.state_dict() if k.endswith("running_var"))
    assert torch.equal(kept.model.state_dict()[stem_bn], torch.ones_like(kept.model.state_dict()[stem_bn]))
    assert not torch.allclose(redone.model.state_dict()[stem_bn], kept.model.state_dict()[stem_bn])


def test_bad_fine_tuning_settings_are_refused(tmp_path):
    for overrides, expected in ((dict(classes=[0, 0]), "classes"), (dict(classes=[10]), "classes"),
                                (dict(per_class=0), "per_class"),
                                (dict(pretrained=str(tmp_path / "none.pt")), "no weights file")):
        try:
            _config(tmp_path, "bad", **overrides).validate()
        except ConfigError as err:
            assert expected in str(err)
        else:
            raise AssertionError(f"{overrides} passed")
