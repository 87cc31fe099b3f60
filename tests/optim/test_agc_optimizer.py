"""The AGC optimizer wrapper (``nfrepro.optim.agc_optimizer``): "clip by hand, then step" with SGD,
AdamW, LR schedulers, state dicts, hooks and ``GradScaler('cpu')``."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from contract_nets import TinyNet, backward

from nfrepro.optim.agc import AGCSelection, adaptive_grad_clip_reference_, clip_parameters
from nfrepro.optim.agc_optimizer import AGC

LAMBDA, EPS = 0.01, 1e-3


def _twins():
    torch.manual_seed(0)
    a = TinyNet()
    return a, copy.deepcopy(a)


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
    lambda ps: torch.optim.AdamW(ps, lr=1e-2),
])
def test_wrapper_equals_clip_then_step(make_opt):
    model, twin = _twins()
    opt = AGC(make_opt(model.parameters()), clip_parameters(model), clipping=LAMBDA)
    bare = make_opt(twin.parameters())
    for step in range(3):
        for m in (model, twin):
            m.zero_grad()
            backward(m, seed=step)
        opt.step()
        adaptive_grad_clip_reference_(clip_parameters(twin), LAMBDA)
        bare.step()
        assert float(opt.last_stats["frac_units_clipped"]) > 0
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
    assert opt.param_groups is opt.optimizer.param_groups and opt.state is opt.optimizer.state
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_wrapper_state_dict_round_trip():
    model, twin = _twins()
    opt = AGC(torch.optim.AdamW(model.parameters(), lr=1e-2), clip_parameters(model))
    for step in range(2):
        opt.zero_grad()
        backward(model, seed=step)
        opt.step()
    saved = copy.deepcopy(opt.state_dict())
    assert saved.keys() == {"state", "param_groups"}  # the inner optimizer's own format
    twin.load_state_dict(model.state_dict())
    restored = AGC(torch.optim.AdamW(twin.parameters(), lr=1e-2), clip_parameters(twin))
    restored.load_state_dict(saved)
    for o, m in ((opt, model), (restored, twin)):
        o.zero_grad()
        backward(m, seed=5)
        o.step()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("make_sched", [
    lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4),
    lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1.0 / (1 + t)),
])
def test_wrapper_drives_lr_schedulers(make_sched):
    model, twin = _twins()
    opt = AGC(torch.optim.SGD(model.parameters(), lr=0.1), clip_parameters(model))
    bare = torch.optim.SGD(twin.parameters(), lr=0.1)
    sched, bare_sched = make_sched(opt), make_sched(bare)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        for step in range(3):
            opt.zero_grad()
            backward(model, seed=step)
            opt.step()
            sched.step()
            bare.step()
            bare_sched.step()
            assert opt.param_groups[0]["lr"] == bare.param_groups[0]["lr"] == sched.get_last_lr()[0]


def test_wrapper_param_groups_hooks_and_errors():
    model = TinyNet()
    head = list(model.fc.parameters())
    body = [p for n, p in model.named_parameters() if not n.startswith("fc")]
    opt = AGC(torch.optim.SGD(body, lr=0.1), body)
    opt.add_param_group({"params": [model.fc.bias], "lr": 0.01})
    opt.add_param_group({"params": [model.fc.weight]}, clip=False)
    assert len(opt.param_groups) == 3 and id(model.fc.bias) in {id(p) for p in opt._clip_params}
    assert id(model.fc.weight) not in {id(p) for p in opt._clip_params}
    calls = []
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(o))
    backward(model)
    opt.step()
    assert calls == [opt]
    with pytest.raises(ValueError, match="not in the optimizer"):
        AGC(torch.optim.SGD(body, lr=0.1), head)
    with pytest.raises(TypeError, match="already wrapped"):
        AGC(opt, body)
    with pytest.raises(TypeError, match="Optimizer"):
        AGC(object(), body)


def _scaled_run(unscale_first: bool, fused: bool = False):
    model, twin = _twins()
    make = (lambda ps: torch.optim.Adam(ps, lr=1e-2, fused=True)) if fused else \
        (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9))
    opt = AGC(make(model.parameters()), clip_parameters(model))
    ref = AGC(make(twin.parameters()), clip_parameters(twin))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    for step in range(2):
        for _m, o in ((model, opt), (twin, ref)):
            o.zero_grad()
        g = torch.Generator().manual_seed(step)
        x, y = torch.randn(4, 3, 6, 6, generator=g), torch.randint(0, 5, (4,), generator=g)
        scaler.scale(F.cross_entropy(model(x), y)).backward()
        if unscale_first:
            scaler.unscale_(opt)  # the documented path
        scaler.step(opt)  # unscales first if not yet done, then AGC.step clips
        scaler.update()
        F.cross_entropy(twin(x), y).backward()
        ref.step()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert float(opt.last_stats["frac_units_clipped"]) == float(ref.last_stats["frac_units_clipped"]) > 0


@pytest.mark.parametrize("unscale_first", [True, False])
def test_grad_scaler_clips_unscaled_grads(unscale_first):
    _scaled_run(unscale_first)


def test_grad_scaler_with_fused_inner_optimizer():
    """A fused Adam may take scaled grads itself; the wrapper must still make the scaler unscale."""
    assert torch.optim.Adam([nn.Parameter(torch.ones(1))], fused=True)._step_supports_amp_scaling
    assert AGC._step_supports_amp_scaling is False
    _scaled_run(unscale_first=False, fused=True)


def test_grad_scaler_skips_step_and_clip_on_inf():
    model = TinyNet()
    opt = AGC(torch.optim.SGD(model.parameters(), lr=0.1), clip_parameters(model))
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, 6, 6, generator=g), torch.randint(0, 5, (4,), generator=g)
    scaler.scale(F.cross_entropy(model(x), y)).backward()
    model.stem[0].weight.grad[0, 0, 0, 0] = float("inf")
    scaler.step(opt)
    scaler.update()
    assert opt.last_stats is None  # step (and so the clip) skipped
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    assert scaler.get_scale() == 2.0 ** 11


# ---------------------------------------------------------------- hard to misuse
def _tiny_nf():
    import nfrepro
    torch.manual_seed(0)
    return nfrepro.create_model("nf_resnet_small", num_classes=3, widths=(4, 8, 8), depths=(1, 1, 1))


def test_from_model_selects_all_but_the_classifier_weight():
    from nfrepro.optim import AGC, clip_parameters
    model = _tiny_nf()
    agc = AGC.from_model(model, torch.optim.SGD(model.parameters(), lr=0.1), clipping=0.02)
    assert [id(p) for p in agc._clip_params] == [id(p) for p in clip_parameters(model)]
    assert all(p is not model.fc.weight for p in agc._clip_params) and agc.clipping == 0.02
    frozen = AGC.from_model(model, torch.optim.SGD(model.fc.parameters(), lr=0.1))  # a frozen backbone
    assert [id(p) for p in frozen._clip_params] == [id(model.fc.bias)]


def test_every_parameter_warns_and_the_classifier_on_purpose_does_not():
    import warnings

    from nfrepro.optim import AGC
    model = _tiny_nf()
    with pytest.warns(UserWarning, match="AGC.from_model"):
        AGC(torch.optim.SGD(model.parameters(), lr=0.1), model.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AGC(torch.optim.SGD(model.parameters(), lr=0.1), model.parameters(), clip_classifier=True)
        AGC.from_model(model, torch.optim.SGD(model.parameters(), lr=0.1),
                       selection=AGCSelection(clip_classifier=True))


def test_models_without_get_classifier_need_an_explicit_exclude():
    torchvision = pytest.importorskip("torchvision")
    from nfrepro.optim import AGC
    net = torchvision.models.resnet18(num_classes=3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(TypeError, match=r"exclude=\[model.fc\]") as info:
        AGC.from_model(net, opt)
    assert "DESIGN" not in str(info.value)
    agc = AGC.from_model(net, opt, exclude=[net.fc])
    assert {id(p) for p in agc._clip_params} == {id(p) for n, p in net.named_parameters()
                                                 if not n.startswith("fc.")}
    agc = AGC.from_model(net, opt, exclude=[net.fc.weight])
    assert any(p is net.fc.bias for p in agc._clip_params)


def test_grad_scaler_stepping_the_inner_optimizer_raises():
    from nfrepro.optim import AGC
    from nfrepro.optim.agc_optimizer import InnerStepError
    model = _tiny_nf()
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    agc = AGC.from_model(model, inner)
    scaler = torch.amp.GradScaler("cpu")
    x = torch.randn(4, 3, 8, 8)
    scaler.scale(model(x).square().mean()).backward()
    with pytest.raises(InnerStepError, match=r"scaler.step\(agc\)"):
        scaler.step(inner)
    with pytest.raises(InnerStepError):
        inner.step()
    scaler = torch.amp.GradScaler("cpu")
    agc.zero_grad()
    scaler.scale(model(x).square().mean()).backward()
    scaler.step(agc)              # the right way: unscale, clip, step
    scaler.update()
    assert agc.last_stats is not None
    clone = copy.deepcopy(agc)    # the guard survives a copy
    with pytest.raises(InnerStepError):
        clone.optimizer.step()


def test_an_exhausted_generator_is_an_error_not_a_silent_no_op():
    model = TinyNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    params = model.parameters()
    list(params)  # read once already
    with pytest.raises(ValueError, match="no parameters to clip"):
        AGC(opt, params)


def test_non_finite_weights_and_gradients_are_counted_and_warned_about_once():
    model = TinyNet()
    opt = AGC(torch.optim.SGD(model.parameters(), lr=0.0), clip_parameters(model))
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))  # one unit's weights
    with pytest.warns(RuntimeWarning, match="non-finite weight or gradient"):
        backward(model)
        opt.step()
    assert int(opt.last_stats["num_nonfinite"]) >= 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: the second step is silent
        backward(model)
        opt.step()
    quiet = AGC(torch.optim.SGD(model.parameters(), lr=0.0), clip_parameters(model), warn_nonfinite=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backward(model)
        quiet.step()
    assert int(quiet.last_stats["num_nonfinite"]) >= 1


def test_a_nan_weight_is_counted_by_the_reference_and_the_fast_path_alike():
    from nfrepro.optim.agc import adaptive_grad_clip_
    w = torch.ones(3, 4, requires_grad=True)
    with torch.no_grad():
        w[1, 0] = float("nan")
    w.grad = torch.ones(3, 4)
    fast = adaptive_grad_clip_([w], 0.01)
    w.grad = torch.ones(3, 4)
    reference = adaptive_grad_clip_reference_([w], 0.01)
    assert int(fast["num_nonfinite"]) == int(reference["num_nonfinite"]) == 1
