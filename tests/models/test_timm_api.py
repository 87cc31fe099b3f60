"""timm's model API side by side: each call runs on timm's ``dm_nfnet_f0`` and on our ``nfnet_f0``
with the same arguments, and the answers must agree in names, signatures, counts, channels,
reductions and meaning; then the same calls on every family.

The real F0 is compared on the meta device (shapes and parameter groups, no arithmetic); the
numerical checks use both models narrowed the same way through their constructors (``SMALL``: F0's
stem, fewer and narrower blocks), at 64 px, to stay quick on a CPU."""
import inspect

import pytest
import torch
import torch.nn as nn

import nfrepro

timm = pytest.importorskip("timm")

X = torch.randn(1, 3, 64, 64)
SMALL = dict(depths=(1, 2, 1, 1), channels=(256, 64, 64, 128), group_size=16)   # ours; timm's below
SMALL_TIMM = dict(SMALL, num_features=256)     # timm's F0 config fixes the final conv's width at 3072
TINY = {
    "nfnet_f0": dict(depths=(1, 2, 1, 1), channels=(16, 32, 32, 64), group_size=8),
    "nfnet_bn_f0": dict(depths=(1, 2, 1, 1), channels=(16, 32, 32, 64), group_size=8),
    "nf_resnet26": dict(depths=(1, 2, 1, 1), widths=(16, 32, 32, 64)),
    "bn_resnet26": dict(depths=(1, 2, 1, 1), widths=(16, 32, 32, 64)),
    "nf_resnet_small": {},
}
METHODS = ("set_grad_checkpointing", "reset_classifier", "forward_intermediates",
           "prune_intermediate_layers", "group_matcher", "forward_head", "get_classifier")


def small_pair():
    """(timm's dm_nfnet_f0, our nfnet_f0), both ``SMALL``, eval mode, random weights."""
    torch.manual_seed(0)
    return (timm.create_model("dm_nfnet_f0", pretrained=False, **SMALL_TIMM).eval(),
            nfrepro.create_model("nfnet_f0", pretrained=False, **SMALL).eval())


@pytest.fixture(scope="module")
def pair():
    return small_pair()


@pytest.fixture(scope="module")
def real_f0():
    """The real F0s on the meta device: shapes and parameters, no memory, no arithmetic."""
    with torch.device("meta"):
        return timm.create_model("dm_nfnet_f0", pretrained=False), nfrepro.create_model("nfnet_f0")


def tiny(name, **kw):
    torch.manual_seed(0)
    return nfrepro.create_model(name, **{**TINY[name], **kw})


def test_same_method_names_and_signatures_as_timm(real_f0):
    theirs, ours = real_f0
    for method in METHODS:
        a, b = inspect.signature(getattr(theirs, method)), inspect.signature(getattr(ours, method))
        assert list(a.parameters) == list(b.parameters), method
        defaults = [[p.default for p in sig.parameters.values()] for sig in (a, b)]
        assert defaults[0] == defaults[1], method
    assert theirs.default_cfg is theirs.pretrained_cfg and ours.default_cfg is ours.pretrained_cfg
    assert theirs.head_hidden_size == ours.head_hidden_size == ours.num_features == 3072


# ---------------------------------------------------------------- 1. gradient checkpointing
def _grads(model, x, enable):
    model.set_grad_checkpointing(enable)
    model.zero_grad()
    torch.manual_seed(1)                  # the same stochastic-depth and dropout draws
    model(x).square().mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", list(TINY))
def test_grad_checkpointing_leaves_the_gradients_unchanged(name):
    model = tiny(name, stochdepth_rate=0.5, drop_rate=0.3).train()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "skip_gain" in n:
                p.fill_(1.0)              # SkipInit's 0 would hide the branches' gradients
    x = torch.randn(2, 3, 32, 32)
    plain, checkpointed = _grads(model, x, False), _grads(model, x, True)
    assert plain.keys() == checkpointed.keys() and len(plain) == len(list(model.parameters()))
    for n in plain:
        assert torch.allclose(plain[n], checkpointed[n], rtol=1e-5, atol=1e-7), n


def _block_memory(model, x):
    """Bytes the blocks keep for the backward pass: what autograd saves while they run (seen by a
    saved-tensors hook; inside a checkpoint, the checkpoint's own hook takes them instead), plus
    each block's input, which a checkpoint holds to recompute from."""
    saved, held, inside = {}, {}, [False]

    def pack(t):
        if inside[0]:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    def enter(module, args):
        inside[0] = True
        if model.grad_checkpointing:
            held[args[0].untyped_storage().data_ptr()] = args[0].untyped_storage().nbytes()

    hooks = [b.register_forward_pre_hook(enter) for b in model.blocks]
    hooks.append(model.blocks[-1].register_forward_hook(lambda m, a, o: inside.__setitem__(0, False)))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).sum()
    for hook in hooks:
        hook.remove()
    loss.backward()
    return sum(saved.values()) + sum(held.values())


@pytest.mark.parametrize("name", ["nfnet_f0", "nf_resnet26"])
def test_grad_checkpointing_keeps_fewer_activations(name):
    model = tiny(name).train()
    x = torch.randn(2, 3, 64, 64)
    model.set_grad_checkpointing(False)
    plain = _block_memory(model, x)
    model.set_grad_checkpointing()        # timm's default: enable=True
    assert model.grad_checkpointing
    assert _block_memory(model, x) < 0.5 * plain
    with torch.no_grad():                 # nothing to save: the blocks run plainly
        assert model(x).shape == (2, 1000)


def test_timm_checkpoints_too(pair):
    for model in pair:
        assert model.grad_checkpointing is False
        model.set_grad_checkpointing()
        assert model.grad_checkpointing is True
        model.set_grad_checkpointing(False)


# ---------------------------------------------------------------- 2. the head: pools, reset_classifier, cfg
POOL_OF = {"avg": lambda f: f.mean((2, 3)), "max": lambda f: f.amax((2, 3)),
           "avgmax": lambda f: 0.5 * (f.mean((2, 3)) + f.amax((2, 3))), "": lambda f: f}


@pytest.mark.parametrize("global_pool", list(POOL_OF))
def test_global_pool_and_reset_classifier_as_in_timm(pair, global_pool):
    shapes = []
    for model in pair:
        with torch.no_grad():
            feats = model.forward_features(X)
            for num_classes in ((0,) if global_pool == "" else (0, 7)):
                model.reset_classifier(num_classes, global_pool)
                out, pre = model.forward_head(feats), model.forward_head(feats, pre_logits=True)
                assert torch.allclose(pre, POOL_OF[global_pool](feats), atol=1e-5)
                assert torch.equal(out, pre) == (num_classes == 0)
                shapes.append((num_classes, tuple(out.shape), tuple(pre.shape)))
            if global_pool:             # None keeps the pool ('' cannot feed a classifier: below)
                model.reset_classifier(3)
                assert model.forward_head(feats).shape == (1, 3)
                kept = model.head.global_pool.pool_type if hasattr(model, "head") else model.global_pool
                assert kept == global_pool
            model.reset_classifier(1000, "avg")
    theirs, ours = shapes[:len(shapes) // 2], shapes[len(shapes) // 2:]
    assert theirs == ours


def test_create_model_global_pool_and_pretrained_flags():
    headless = dict(global_pool="", num_classes=0, pretrained=False)
    model = nfrepro.create_model("nfnet_f0", **headless, **SMALL)
    reference = timm.create_model("dm_nfnet_f0", **headless, **SMALL_TIMM)
    with torch.no_grad():
        assert model(X).shape == reference(X).shape == (1, 256, 2, 2)    # the unpooled map
    assert tiny("nfnet_f0", global_pool="max").global_pool == "max"
    with pytest.raises(ValueError, match="pass num_classes=0"):
        tiny("nfnet_f0", global_pool="")     # timm builds it, then fails in its first forward
    with pytest.raises(ValueError, match="choose one of"):
        tiny("nfnet_f0", global_pool="catavgmax")
    with pytest.raises(ValueError, match="pretrained=PATH"):
        tiny("nfnet_f0", pretrained=True)
    with pytest.raises(ValueError, match="pass num_classes=0"):
        model.reset_classifier(5)             # the kept '' pool cannot feed a classifier
    model.reset_classifier(5, "avg")
    assert model(X).shape == (1, 5) and model.default_cfg["num_classes"] == 5
    assert model.default_cfg is model.pretrained_cfg


# ---------------------------------------------------------------- 3. intermediates, pruning, groups
def _shapes(maps, size=64):
    return [(m.shape[1], size // m.shape[-1]) for m in maps]   # (channels, reduction)


F0_TAPS = [(64, 2), (256, 4), (512, 8), (1536, 16), (3072, 32)]   # timm's feature_info for dm_nfnet_f0


@pytest.mark.parametrize("indices, taken", [(None, [0, 1, 2, 3, 4]), (2, [3, 4]), ([0, -1], [0, 4]),
                                            ((1, 3), [1, 3])])
def test_real_f0_taps_are_timms(real_f0, indices, taken):
    x = torch.empty(2, 3, 256, 256, device="meta")
    shapes = [_shapes(m.forward_intermediates(x, indices, intermediates_only=True), 256) for m in real_f0]
    assert shapes[0] == shapes[1] == [F0_TAPS[i] for i in taken]
    assert [(f["num_chs"], f["reduction"]) for f in real_f0[0].feature_info] == F0_TAPS


@pytest.mark.parametrize("indices", [None, 2, [0, -1], (1, 3)])
def test_forward_intermediates_as_in_timm(pair, indices):
    theirs, ours = pair
    with torch.no_grad():
        (a, taps_a), (b, taps_b) = (m.forward_intermediates(X, indices=indices) for m in pair)
        assert _shapes(taps_a) == _shapes(taps_b)
        assert a.shape == b.shape
        for model, final, taps in ((theirs, a, taps_a), (ours, b, taps_b)):
            assert torch.equal(final, model.forward_features(X))
            if indices is None:   # the last tap is taken before the final activation
                assert torch.equal(model.final_act(taps[-1]), final)
            only = model.forward_intermediates(X, indices=indices, intermediates_only=True, stop_early=True)
            assert all(torch.equal(p, q) for p, q in zip(only, taps, strict=True))


def test_forward_intermediates_refuses_what_timm_refuses(pair):
    ours = pair[1]
    for bad in (6, 0, [5], [-6]):
        with pytest.raises(ValueError, match="taps|last"):
            ours.forward_intermediates(X, indices=bad)
    with pytest.raises(ValueError, match="NCHW"):
        ours.forward_intermediates(X, output_fmt="NHWC")


@pytest.mark.parametrize("indices", [1, (0, 2), [0]])
def test_prune_intermediate_layers_as_in_timm(indices):
    results = []
    for model in small_pair():
        kept = model.prune_intermediate_layers(indices)
        assert isinstance(model.get_classifier(), nn.Identity)
        with torch.no_grad():
            final, taps = model.forward_intermediates(X, indices=indices)
            out = model(X)
            assert torch.equal(out, model.forward_features(X))    # unpooled, headless
        results.append((kept, _shapes(taps), tuple(out.shape), model.num_features, model.head_hidden_size,
                        sum(p.numel() for p in model.parameters())))
    assert results[0] == results[1]


def test_group_matcher_gives_timm_layer_decay_groups(real_f0):
    from timm.models import group_parameters
    from timm.optim import create_optimizer_v2, param_groups_layer_decay

    def layers(model):
        numel = {}
        for group in param_groups_layer_decay(model, layer_decay=0.65, weight_decay=1e-5):
            scale = group["lr_scale"]
            numel[scale] = numel.get(scale, 0) + sum(p.numel() for p in group["params"])
        return sorted(numel.items())

    theirs, ours = real_f0
    assert layers(theirs) == layers(ours)
    assert len(layers(ours)) == 1 + 12 + 1        # stem, F0's 12 blocks (final conv with the last), head
    for coarse in (False, True):
        a, b = (group_parameters(m, m.group_matcher(coarse=coarse), return_values=True) for m in real_f0)
        assert [sum(p.numel() for p in a[k]) for k in a] == [sum(p.numel() for p in b[k]) for k in b]
    assert len(b) == 1 + 4 + 1
    opt = create_optimizer_v2(ours, "sgd", lr=0.1, weight_decay=1e-5, layer_decay=0.65)
    assert {g["lr_scale"] for g in opt.param_groups} == {0.65 ** i for i in range(14)}


def test_resnet_taps_match_timm_nf_resnet50():
    with torch.device("meta"):
        theirs, ours = timm.create_model("nf_resnet50", pretrained=False), nfrepro.create_model("nf_resnet50")
        taps = [_shapes(m.forward_intermediates(torch.empty(1, 3, 64, 64), intermediates_only=True))
                for m in (theirs, ours)]
    assert taps[0] == taps[1] == [(64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)]
    assert len(group_layers(theirs)) == len(group_layers(ours)) == 1 + 16 + 1


def group_layers(model):
    from timm.models import group_parameters
    return group_parameters(model, model.group_matcher(), return_values=True)


@pytest.mark.parametrize("name", list(TINY))
def test_every_family_answers_the_timm_api(name):
    model = tiny(name).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        final, taps = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        assert torch.equal(model.final_act(taps[-1]), final) and len(taps) == len(model.widths) + 1
        assert model.prune_intermediate_layers([-2]) == [len(model.widths) - 1]
        assert len(model.forward_intermediates(x, intermediates_only=True)) == len(model.widths)
        assert model(x).shape[1] == model.num_features == model.widths[-2]
    assert len(group_layers(model)) >= 3
