"""nfrepro.optim.recipe pinned to App. A and the official code (optim.py, utils.tf1_ema, experiment)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import nfrepro
from nfrepro.optim import recipe
from nfrepro.optim.agc import AGCSelection
from nfrepro.optim.agc_optimizer import AGC


def _small(name="nf_resnet_small"):
    return nfrepro.create_model(name, num_classes=10, in_chans=1, depths=(1, 1), widths=(4, 8))


def test_linear_lr_scaling_and_schedule():
    assert recipe.scaled_lr(0.1, 4096) == pytest.approx(1.6)  # App. A: 1.6 at batch 4096

    def f(t):
        return recipe.warmup_cosine(t, 10, 110)

    assert f(0) == 0.0 and f(5) == 0.5 and f(10) == 1.0  # linear warmup from 0
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0) and f(200) == 0.0
    # official WarmupCosineDecay(start_val=0, min_val=0) for t > warmup
    assert f(37) == pytest.approx(0.5 * (1 + math.cos(math.pi * 27 / 100)))
    assert recipe.warmup_cosine(0, 0, 10) == 1.0  # no warmup: cosine from the first step


def test_scheduler_steps_per_update():
    model = nn.Linear(2, 2)
    opt = recipe.make_optimizer(model, lr=0.4)
    sched = recipe.make_scheduler(opt, warmup_steps=4, total_steps=8)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert lrs[6] == pytest.approx(0.4 * 0.5 * (1 + math.cos(math.pi * 2 / 4)))


@pytest.mark.parametrize("name", ["nf_resnet_small", "bn_resnet_small"])
def test_no_weight_decay_on_gains_biases_and_skip_gains(name):
    model = _small(name)
    decay, no_decay = recipe.param_groups(model, 2e-5)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 2e-5 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"])
    assert any(p is model.get_classifier().weight for p in decay["params"])
    skipped = {names[id(p)].rsplit(".", 1)[-1] for p in no_decay["params"]}
    assert "bias" in skipped and (skipped & {"gain", "skip_gain", "weight"})
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_name_rule_catches_a_4d_gain():
    assert recipe.excluded_from_weight_decay("conv.gain", torch.ones(4, 1, 1, 1))
    assert not recipe.excluded_from_weight_decay("conv.weight", torch.ones(4, 1, 1, 1))


def test_optimizer_is_nesterov_sgd_and_agc_skips_the_classifier():
    model = _small()
    plain = recipe.make_optimizer(model, lr=0.1)
    assert isinstance(plain, torch.optim.SGD) and plain.defaults["nesterov"]
    assert plain.defaults["momentum"] == 0.9
    clipped = recipe.make_optimizer(model, lr=0.1, clipping=0.01)
    assert isinstance(clipped, AGC) and clipped.clipping == 0.01
    assert all(p is not model.get_classifier().weight for p in clipped._clip_params)


def test_foreach_sgd_steps_are_bit_identical_to_the_per_parameter_loop():
    # make_optimizer asks for foreach=True on every device; on the CPU that must not change a step
    torch.manual_seed(0)
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))
    start = _small().state_dict()
    final = {}
    for foreach in (True, False):
        model = _small()
        model.load_state_dict(start)
        opt = recipe.make_optimizer(model, lr=0.3, weight_decay=5e-5)
        assert opt.defaults["foreach"] is True
        for group in opt.param_groups:
            group["foreach"] = foreach
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        final[foreach] = model.state_dict()
    assert all(torch.equal(final[True][k], final[False][k]) for k in start)
    assert not all(torch.equal(final[True][k], start[k]) for k in start)  # the steps moved the weights


def test_weight_decay_is_added_after_clipping():
    # one unit, ||W|| = 1, ||G|| = 10: AGC(0.01) scales G to norm 0.01, then wd * W is added
    layer = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    layer.weight.grad = torch.full((1, 1), 10.0)
    opt = AGC(torch.optim.SGD([{"params": [layer.weight], "weight_decay": 0.5}], lr=1.0,
                              momentum=0.9, nesterov=True), [layer.weight], clipping=0.01)
    opt.step()
    g = 0.01 + 0.5 * 1.0  # clipped grad + coupled decay
    assert layer.weight.item() == pytest.approx(1.0 - (g + 0.9 * g))  # Nesterov: g + mu * buf


def test_ema_decay_warmup_and_update():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = recipe.EMA(model, decay=0.99999)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(10**9) == 0.99999
    old = ema.module[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(3.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update(model, step=0)
    torch.testing.assert_close(ema.module[0].weight, 0.1 * old + 0.9 * model[0].weight)
    torch.testing.assert_close(ema.module[1].running_mean, torch.full((2,), 2.7))
    assert ema.module[1].num_batches_tracked.item() == 7
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_cross_entropy_label_smoothing_matches_the_official_formula():
    logits, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 4])
    onehot = nn.functional.one_hot(y, 5).float()
    smoothed = 0.9 * onehot + 0.1 / 5
    ref = -(smoothed * logits.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(recipe.cross_entropy(logits, y, 0.1), ref)
    torch.testing.assert_close(recipe.cross_entropy(logits, onehot, 0.1), ref)
    assert recipe.cross_entropy(logits.bfloat16(), y).dtype == torch.float32


def test_sam_ascent_on_a_fraction_and_weights_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))

    def loss_of(xb, yb):
        return recipe.cross_entropy(model(xb), yb, 0.0)

    before = [p.clone() for p in model.parameters()]
    recipe.sam_backward(model, loss_of, x, y, rho=0.0)
    sam0 = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    loss_of(x, y).backward()
    for a, b in zip(sam0, model.parameters(), strict=True):  # rho = 0: plain gradient
        torch.testing.assert_close(a, b.grad)
    model.zero_grad()
    seen = []
    hook = model[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    recipe.sam_backward(model, loss_of, x, y, rho=0.5, fraction=0.2)
    hook.remove()
    assert seen == [2, 10]  # ascent on 20% of the batch, descent on all of it
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert not all(torch.allclose(a, b.grad) for a, b in zip(sam0, model.parameters(), strict=True))


def test_clipping_the_classifier_on_purpose_does_not_warn(recwarn):
    """§4.1's layer ablation asks for the classifier to be clipped: AGC must not warn that it was
    given the classifier by mistake (the warning landed in notebook 03's outputs)."""
    model = nfrepro.create_model("nf_resnet_small", num_classes=10)
    opt = recipe.make_optimizer(model, lr=0.1, clipping=0.01,
                                 selection=AGCSelection(clip_classifier=True))
    assert isinstance(opt, AGC) and not [w for w in recwarn if "classifier" in str(w.message)]
