"""Adaptive Gradient Clipping (NFNets §4; official ``agc_optax.py``).

The vectorised :func:`adaptive_grad_clip_` is pinned to the plain loop
:func:`adaptive_grad_clip_reference_`, and both to the paper's rule; the parameter selection is
checked on a tiny contract-following net (stem, blocks with ``.stage``, ``get_classifier``), bare,
wrapped by ``torch.compile`` and by DDP (2 gloo processes on the CPU); the optimizer wrapper is
checked against "clip by hand, then step" with SGD, AdamW, LR schedulers and ``GradScaler('cpu')``.
"""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from contract_nets import TinyNet, backward

from nfrepro.models.utils import unwrap_model
from nfrepro.optim.agc import (
    AGCSelection,
    adaptive_grad_clip_,
    adaptive_grad_clip_reference_,
    clip_parameters,
    unitwise_norm,
)
from nfrepro.optim.agc_optimizer import AGC

LAMBDA, EPS = 0.01, 1e-3


# ---------------------------------------------------------------- the clipping function
def _params(dtype=torch.float32):
    """Every layout AGC meets: conv, linear, 1-d, 0-d, zero-initialised, strided, channels_last."""
    g = torch.Generator().manual_seed(0)
    rand = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    tensors = [
        rand(6, 4, 3, 3),  # conv O x I x kh x kw
        rand(7, 5),  # linear O x I
        rand(9),  # bias / WS gain
        rand(()),  # scalar skip gain
        torch.zeros(5, 3, dtype=dtype),  # zero-initialised: ||W_i|| floored at eps
        torch.zeros((), dtype=dtype),  # SkipInit gain at 0
        rand(5, 8).t(),  # non-contiguous (strided) 8 x 5
        rand(6, 4, 3, 3).to(memory_format=torch.channels_last),
    ]
    params = [nn.Parameter(t) for t in tensors]
    for p in params:
        # unit-wise grads spanning 1e-5..10 x the unit's weight scale: some clipped, some not
        spread = 10 ** (torch.rand(p.shape[0] if p.ndim > 1 else (), generator=g, dtype=dtype) * 6 - 5)
        grad = torch.randn(p.shape, generator=g, dtype=dtype) * spread.view(_row(p))
        p.grad = torch.empty_like(p).copy_(grad)  # same strides as the parameter
    return params


def _row(x):
    """Shape broadcasting one value per unit over ``x``."""
    return (-1,) + (1,) * (x.ndim - 1) if x.ndim > 1 else ()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vectorised_matches_reference(dtype):
    fast, ref = _params(dtype), _params(dtype)
    stats, ref_stats = adaptive_grad_clip_(fast), adaptive_grad_clip_reference_(ref)
    assert not fast[6].grad.is_contiguous() and fast[7].grad.is_contiguous(memory_format=torch.channels_last)
    for p, q in zip(fast, ref, strict=True):
        rel = ((p.grad - q.grad).norm() / q.grad.norm().clamp_min(1e-30)).item()
        assert rel <= 1e-6, (tuple(p.shape), rel)
    assert stats["num_units"] == ref_stats["num_units"] == 6 + 7 + 1 + 1 + 5 + 1 + 8 + 6
    assert int(stats["num_clipped"]) == int(ref_stats["num_clipped"])
    assert 0 < float(stats["frac_units_clipped"]) < 1


def test_low_precision_matches_reference():
    fast, ref = _params(torch.bfloat16), _params(torch.bfloat16)
    adaptive_grad_clip_(fast)
    adaptive_grad_clip_reference_(ref)
    for p, q in zip(fast, ref, strict=True):
        assert p.grad.dtype == torch.bfloat16
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-2, atol=0)


@pytest.mark.parametrize("clip", [adaptive_grad_clip_, adaptive_grad_clip_reference_])
def test_below_threshold_is_bit_for_bit_unchanged(clip):
    params = _params()
    for p in params:  # ||G_i|| = 0.5 * lambda * max(||W_i||, eps): below the threshold everywhere
        w = unitwise_norm(p.detach()).clamp_min(EPS)
        p.grad = p.grad / unitwise_norm(p.grad).view(_row(p)) * (0.5 * LAMBDA * w).view(_row(p))
    before = [p.grad.clone() for p in params]
    stats = clip(params, LAMBDA, eps=EPS)
    assert int(stats["num_clipped"]) == 0 and float(stats["frac_units_clipped"]) == 0.0
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p.grad, b)


@pytest.mark.parametrize("clip", [adaptive_grad_clip_, adaptive_grad_clip_reference_])
def test_above_threshold_norm_is_lambda_times_weight_norm(clip):
    params = _params(torch.float64)
    for p in params:
        p.grad = p.grad * 1e6  # far above the threshold everywhere
    weight_norms = [unitwise_norm(p.detach()) for p in params]
    stats = clip(params, LAMBDA, eps=EPS)
    assert float(stats["frac_units_clipped"]) == 1.0
    for p, w in zip(params, weight_norms, strict=True):
        # §4: ||G_i|| -> lambda * max(||W_i||, eps), unit by unit (rows for conv and linear)
        torch.testing.assert_close(unitwise_norm(p.grad), LAMBDA * w.clamp_min(EPS), rtol=1e-12, atol=0)
    assert float(unitwise_norm(params[4].grad).max()) == pytest.approx(LAMBDA * EPS)  # zero weights


def test_linear_units_are_rows_not_columns():
    """Pitfall: PyTorch's linear weight is O x I, so a unit is a row (the JAX IO layout's column)."""
    w = nn.Parameter(torch.tensor([[1.0, 0.0], [0.0, 100.0]]))
    w.grad = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    adaptive_grad_clip_([w], clipping=0.1)
    # row 0: max 0.1 * 1 -> scaled to norm 0.1; row 1: max 0.1 * 100 = 10 > sqrt(2) -> unchanged
    torch.testing.assert_close(w.grad[0], torch.full((2,), 0.1 / 2 ** 0.5))
    assert torch.equal(w.grad[1], torch.ones(2))


def test_skips_params_without_grad_and_stats_flag():
    params = _params()
    params[0].grad = None
    assert adaptive_grad_clip_(params)["num_units"] == 35 - 6
    assert adaptive_grad_clip_(params + params[1:3])["num_units"] == 35 - 6  # repeats count once
    assert adaptive_grad_clip_(params, stats=False) == {}
    empty = adaptive_grad_clip_([nn.Parameter(torch.ones(3))])
    assert empty["num_units"] == 0 and int(empty["num_clipped"]) == 0


@pytest.mark.parametrize("kwargs", [dict(clipping=0.0), dict(clipping=-0.01), dict(clipping=float("nan")),
                                    dict(eps=0.0), dict(eps=-1e-3)])
def test_bad_hyperparameters_raise(kwargs):
    params = _params()
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        adaptive_grad_clip_(params, **kwargs)
    with pytest.raises(ValueError, match=name):
        adaptive_grad_clip_reference_(params, **kwargs)
    with pytest.raises(ValueError, match=name):
        AGC(torch.optim.SGD(params, lr=0.1), params, **kwargs)


def test_sparse_grads_rejected():
    p = nn.Parameter(torch.ones(4, 3))
    p.grad = torch.eye(4, 3).to_sparse()
    with pytest.raises(ValueError, match="sparse"):
        adaptive_grad_clip_([p])


# ---------------------------------------------------------------- which parameters are clipped
def test_clip_parameters_excludes_classifier_weight_only():
    model = TinyNet()
    params = clip_parameters(model)
    ids = {id(p) for p in params}
    assert id(model.fc.weight) not in ids and id(model.fc.bias) in ids  # §4: the bias IS clipped
    assert len(params) == len(list(model.parameters())) - 1
    assert len(clip_parameters(model, AGCSelection(clip_classifier=True))) == len(list(model.parameters()))


def test_clip_parameters_through_torch_compile_wrapper():
    model = TinyNet()
    compiled = torch.compile(model)  # only wrapped (never called, so never compiled)
    assert unwrap_model(compiled) is model
    assert [id(p) for p in clip_parameters(compiled)] == [id(p) for p in clip_parameters(model)]


def test_clip_parameters_exclusions_and_errors():
    model = TinyNet()
    first = model.stem[0]
    ids = {id(p) for p in clip_parameters(model, AGCSelection(exclude_first_conv=True))}
    assert id(first.weight) not in ids and id(first.bias) not in ids and id(model.stem[2].weight) in ids
    ids = {id(p) for p in clip_parameters(model, AGCSelection(exclude_stages=(1,)))}
    assert all(id(p) not in ids for b in model.blocks[1:] for p in b.parameters())
    assert all(id(p) in ids for p in model.blocks[0].parameters())
    with pytest.raises(ValueError, match=r"stage \[4\]"):
        clip_parameters(model, AGCSelection(exclude_stages=(4,)))
    # one change at a time: the stage's weights unclipped, its SkipInit gains still clipped
    weights_only = AGCSelection(exclude_stages=(1,), exclude_stage_skip_gains=False)
    kept = {id(p) for p in clip_parameters(model, weights_only)}
    later = model.blocks[1:]
    assert {id(p) for b in later for p in b.parameters()} & kept == {id(b.skip_gain) for b in later}
    freed = AGCSelection(exclude_stages=(1,), exclude_stage_skip_gains=False, exclude_skip_gains=True)
    assert {id(p) for p in clip_parameters(model, freed)} == kept - {id(b.skip_gain) for b in model.blocks}

    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(TypeError, match="get_classifier"):
        clip_parameters(plain)
    assert len(clip_parameters(plain, AGCSelection(clip_classifier=True))) == 4
    no_stem = AGCSelection(clip_classifier=True, exclude_first_conv=True)
    assert len(clip_parameters(plain, no_stem)) == 2  # no stem: the first conv of the model
    with pytest.raises(ValueError, match="blocks"):
        clip_parameters(plain, AGCSelection(clip_classifier=True, exclude_stages=(0,)))


def test_selection_is_a_validated_hashable_value():
    selection = AGCSelection(exclude_stages=[2, 0], exclude_first_conv=True)
    assert selection.exclude_stages == (2, 0) and hash(selection) == hash(AGCSelection(
        exclude_first_conv=True, exclude_stages=(2, 0)))
    assert repr(selection) == "AGCSelection(exclude_first_conv=True, exclude_stages=(2, 0))"
    assert repr(AGCSelection()) == "AGCSelection()" and AGCSelection().eps == EPS
    with pytest.raises(TypeError):
        AGCSelection(True)  # keyword-only: no positional booleans
    for bad, error in ((dict(eps=0.0), ValueError), (dict(eps=float("nan")), ValueError),
                       (dict(eps="1e-3"), TypeError), (dict(clip_classifier=1), TypeError),
                       (dict(exclude_stages=0), TypeError), (dict(exclude_stages=(True,)), TypeError),
                       (dict(exclude_stages="0"), TypeError)):
        with pytest.raises(error, match=next(iter(bad))):
            AGCSelection(**bad)


def test_negative_stages_count_from_the_last():
    model = TinyNet()
    last = {id(p) for p in clip_parameters(model, AGCSelection(exclude_stages=(-1,)))}
    assert last == {id(p) for p in clip_parameters(model, AGCSelection(exclude_stages=(1,)))}
    with pytest.raises(ValueError, match=r"stage \[-3\]"):
        clip_parameters(model, AGCSelection(exclude_stages=(-3,)))


def _ddp_worker(rank, world_size, init_file, out_dir):
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        model = TinyNet()
        ddp = DDP(model)
        assert [id(p) for p in clip_parameters(ddp)] == [id(p) for p in clip_parameters(model)]
        opt = AGC(torch.optim.SGD(ddp.parameters(), lr=0.0), clip_parameters(ddp), clipping=LAMBDA)
        backward(ddp, seed=100 + rank)  # different data per rank; DDP averages the grads
        averaged = [p.grad.clone() for p in model.parameters()]
        opt.step()
        torch.save({"averaged": averaged, "clipped": [p.grad.clone() for p in model.parameters()],
                    "weights": [p.detach().clone() for p in model.parameters()],
                    "frac": float(opt.last_stats["frac_units_clipped"])}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # ~10 s on a quiet 2-core machine: two processes each import torch and DDP's torch._dynamo
def test_ddp_two_processes_clip_identically(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert 0 < r0["frac"] == r1["frac"]
    for a, b in zip(r0["clipped"], r1["clipped"], strict=True):
        assert torch.equal(a, b)
    # the clip ran on the all-reduced gradients, and left the classifier weight alone
    model = TinyNet()
    with torch.no_grad():
        for p, w, g in zip(model.parameters(), r0["weights"], r0["averaged"], strict=True):
            p.copy_(w)
            p.grad = g.clone()
    adaptive_grad_clip_reference_(clip_parameters(model), LAMBDA)
    for p, c in zip(model.parameters(), r0["clipped"], strict=True):
        torch.testing.assert_close(c, p.grad, rtol=1e-6, atol=0)
    assert torch.equal(r0["clipped"][-2], r0["averaged"][-2])  # fc.weight


# ---------------------------------------------------------------- the optimizer wrapper
# ---------------------------------------------------------------- mixed precision: GradScaler
# torch.amp.GradScaler("cpu") exists and is enabled on the CPU in torch >= 2.3, so the real
# scaler runs here (no mock). Its scale is a power of two, so unscaling is exact and a scaled run
# must match an unscaled one.
def test_clip_parameters_can_leave_the_skip_gains_unclipped():
    from nfrepro.models.factory import create_model

    model = create_model("nf_resnet_small")
    gains = {id(b.skip_gain) for b in model.blocks}
    kept = {id(p) for p in clip_parameters(model, AGCSelection(exclude_skip_gains=True))}
    assert len(gains) == len(model.blocks) and not gains & kept
    assert kept | gains == {id(p) for p in clip_parameters(model)}
    with pytest.raises(ValueError, match="skip_gain"):
        clip_parameters(create_model("nf_resnet_small", skip_gain_init=None),
                        AGCSelection(exclude_skip_gains=True))
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2))  # no model.blocks
    with pytest.raises(ValueError, match="skip_gain"):
        clip_parameters(plain, AGCSelection(clip_classifier=True, exclude_skip_gains=True))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("clipping, error", [(float("inf"), ValueError), (float("nan"), ValueError),
                                             (0.0, ValueError), ("0.01", TypeError), (None, TypeError),
                                             (True, TypeError)])
def test_clipping_must_be_a_finite_positive_number(clipping, error):
    p = nn.Parameter(torch.ones(3, 2))
    p.grad = torch.ones(3, 2)
    for clip in (adaptive_grad_clip_, adaptive_grad_clip_reference_):
        with pytest.raises(error, match="clipping"):
            clip([p], clipping)
    with pytest.raises(error, match="clipping"):
        AGC(torch.optim.SGD([p], lr=0.1), [p], clipping=clipping)


def test_non_finite_gradients_are_counted_and_behave_as_documented():
    """NaN units pass unchanged, inf units become NaN (0 x inf), finite units are clipped as usual."""
    for clip in (adaptive_grad_clip_, adaptive_grad_clip_reference_):
        w = nn.Parameter(torch.ones(4, 3))
        g = torch.ones(4, 3)
        g[1, 0], g[2, 2] = float("nan"), float("inf")
        w.grad = g.clone()
        stats = clip([w], 0.01)
        assert int(stats["num_nonfinite"]) == 2 and stats["num_units"] == 4
        assert torch.isnan(w.grad[1, 0]) and torch.equal(w.grad[1, 1:], g[1, 1:])  # NaN row unchanged
        assert torch.isnan(w.grad[2, 2]) and torch.equal(w.grad[2, :2], torch.zeros(2))  # inf row x 0
        assert torch.isfinite(w.grad[[0, 3]]).all() and int(stats["num_clipped"]) == 3
    w.grad = torch.ones(4, 3)
    assert int(adaptive_grad_clip_([w], 0.01)["num_nonfinite"]) == 0
