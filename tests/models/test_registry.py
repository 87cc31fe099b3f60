"""The model registry and the model contract of DESIGN.md, generic over every registered model."""
import functools

import pytest
import torch
import torch.nn as nn

import nfrepro
from nfrepro.analysis.complexity import count_params
from nfrepro.models.factory import create_model
from nfrepro.models.registry import build_model, list_models, register_model

REAL_FORWARD_MAX_PARAMS = 30_000_000
IMAGE_SIZE = 64


def test_nfnet_names_are_registered():
    names = set(list_models())
    assert {f"nfnet_f{i}" for i in range(8)} <= names
    assert {f"nfnet_f{i}_plus" for i in range(8)} <= names
    assert {f"nfnet_bn_f{i}" for i in range(4)} <= names
    assert list_models("nfnet_f?") == [f"nfnet_f{i}" for i in range(8)]
    assert nfrepro.list_models is list_models


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match="Did you mean nfnet_f0_plus"):
        create_model("nfnet_f0_pluss")


def test_registering_another_function_under_a_taken_name_fails():
    def nfnet_f0(**kwargs):  # noqa: ARG001
        return nn.Identity()
    with pytest.raises(ValueError, match="registered twice"):
        register_model(nfnet_f0)
    assert create_model.__module__ == "nfrepro.models.factory"  # which builds through the registry


def test_overrides_reach_the_constructor():
    with torch.device("meta"):
        model = create_model("nfnet_f0", num_classes=10, in_chans=1, drop_rate=0.0)
    assert model.get_classifier().out_features == 10 and model.stem.conv0.in_channels == 1


@functools.lru_cache(maxsize=None)
def _on_meta(name: str) -> nn.Module:
    """Each registered model built once with its defaults on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return create_model(name)


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.stem.modules() if isinstance(m, nn.Conv2d))


def _check_contract(model: nn.Module) -> None:
    assert isinstance(model.stem, nn.Module) and isinstance(_first_conv(model), nn.Conv2d)
    assert isinstance(model.blocks, nn.Sequential) and len(model.blocks) > 0
    stages = [block.stage for block in model.blocks]
    assert all(isinstance(s, int) for s in stages) and stages == sorted(stages) and stages[0] == 0
    assert all(isinstance(block.residual_out, nn.Identity) for block in model.blocks)
    classifier = model.get_classifier()
    assert isinstance(classifier, nn.Linear)
    assert any(p is classifier.weight for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_with_defaults_and_follows_the_contract(name):
    model = _on_meta(name)
    _check_contract(model)
    assert count_params(model) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_small_models_run_forward_passes(name):
    """A real forward pass (train and eval) for every model under 30M parameters.

    The big ones run a shape-only forward on the meta device; F0 also runs for real in
    test_pretrained.py.
    """
    shape_only = _on_meta(name)
    in_chans = _first_conv(shape_only).in_channels
    num_classes = shape_only.get_classifier().out_features
    if count_params(shape_only) > REAL_FORWARD_MAX_PARAMS:
        # too big for a real forward on a 2-core CPU: a shape-only forward on the meta device
        out = shape_only(torch.empty(2, in_chans, IMAGE_SIZE, IMAGE_SIZE, device="meta"))
        assert out.shape == (2, num_classes)
        return
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.randn(2, in_chans, IMAGE_SIZE, IMAGE_SIZE)
    for train in (True, False):
        out = model.train(train)(x)
        assert out.shape == (2, num_classes) and torch.isfinite(out).all()


# --- bad constructor arguments name themselves ----------------------------------------------
@pytest.mark.parametrize("name", ["nf_resnet_small", "bn_resnet_small", "plain_resnet_small", "nfnet_f0"])
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(in_chans=0), ValueError, "in_chans must be >= 1"),
    (dict(in_chans=-3), ValueError, "in_chans"),
    (dict(num_classes=-1), ValueError, "num_classes must be >= 0"),
    (dict(num_classes="10"), TypeError, "num_classes must be an int"),
    (dict(alpha=float("nan")), ValueError, "alpha must be finite"),
    (dict(alpha=float("inf")), ValueError, "alpha must be finite"),
    (dict(alpha=-5.0), ValueError, "alpha"),
    (dict(alpha="0.2"), TypeError, "alpha must be a number"),
])
def test_bad_constructor_arguments_are_named(name, kwargs, error, match):
    with torch.device("meta"), pytest.raises(error, match=match):
        create_model(name, **kwargs)


def test_model_parameters_lists_what_a_model_accepts():
    from nfrepro.models.registry import model_parameters

    accepted = model_parameters("nf_resnet_small")
    assert {"alpha", "depths", "widths", "num_classes", "in_chans", "drop_rate"} <= accepted
    assert "colour" not in accepted and "family" not in accepted  # bound by the variant
    with pytest.raises(ValueError, match="Did you mean"):
        model_parameters("nf_resnet_smal")


def test_a_model_name_that_is_not_a_string_is_one_clear_error():
    with pytest.raises(TypeError, match="a model name is a string"):
        build_model(None)


@pytest.mark.parametrize("value, error", [(0, ValueError), (-128, ValueError), (1.5, TypeError)])
def test_nfnet_group_size_must_be_a_positive_whole_number(value, error):
    with pytest.raises(error, match="group_size must be"):
        build_model("nfnet_f0", group_size=value)
