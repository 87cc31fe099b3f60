"""CUDA checks: run by ``make gpu-check`` on a GPU machine, skipped with a reason elsewhere.

Tolerances, stated once: bf16 autocast keeps 8 bits of mantissa (relative rounding 2^-8 = 0.4% per
op), so a shallow net's bf16 + channels_last logits are compared with its fp32 logits at 5% of their
largest magnitude, and each parameter's gradient by its cosine similarity to the fp32 gradient
(> 0.98). fp32 comparisons (AGC, folding) run with TF32 off, at 1e-5 / 1e-4 relative.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (resume test)

import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import train_killed_after  # noqa: E402

import nfrepro  # noqa: E402
from nfrepro.engine.checkpoint import load_checkpoint  # noqa: E402
from nfrepro.engine.config import TrainConfig  # noqa: E402
from nfrepro.engine.training import train  # noqa: E402
from nfrepro.layers.ws_fast import _StandardizeWeight  # noqa: E402
from nfrepro.optim.agc import (  # noqa: E402
    adaptive_grad_clip_,
    adaptive_grad_clip_reference_,
    clip_parameters,
)

pytestmark = pytest.mark.cuda
ROOT = Path(__file__).resolve().parents[1]
NFNET = dict(depths=(1, 1, 1, 1), channels=(64, 128, 128, 128), group_size=32, skip_gain_init=1.0)
RESNET = dict(depths=(1, 1, 1, 1), widths=(64, 128, 256, 256))
FAMILIES = {  # one model per family: name, constructor overrides, image size
    "nfnet": ("nfnet_f0", NFNET, 64),
    "nfnet_bn": ("nfnet_bn_f0", NFNET, 64),
    "nf_resnet": ("nf_resnet26", {**RESNET, "skip_gain_init": 1.0}, 64),
    "bn_resnet": ("bn_resnet26", RESNET, 64),
    "plain_resnet": ("plain_resnet26", RESNET, 64),
}


@pytest.fixture
def no_tf32():
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_bf16_channels_last_matches_fp32(family, no_tf32):
    name, kwargs, px = FAMILIES[family]
    torch.manual_seed(0)
    ref = nfrepro.create_model(name, num_classes=10, **kwargs).cuda().eval()
    fast = nfrepro.create_model(name, num_classes=10, **kwargs).cuda().eval()
    fast.load_state_dict(ref.state_dict())
    fast = fast.to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, px, px, device="cuda")
    y = torch.randint(0, 10, (4,), device="cuda")
    logits = ref(x)
    torch.nn.functional.cross_entropy(logits, y).backward()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = fast(x.contiguous(memory_format=torch.channels_last))
        torch.nn.functional.cross_entropy(out.float(), y).backward()
    scale = float(logits.abs().max())
    assert float((out.float() - logits).abs().max()) < 0.05 * scale
    for (n, p), q in zip(ref.named_parameters(), fast.parameters(), strict=True):
        if p.grad is not None and float(p.grad.norm()) > 1e-8:
            cos = torch.nn.functional.cosine_similarity(p.grad.flatten(), q.grad.float().flatten(), dim=0)
            assert float(cos) > 0.98, (family, n, float(cos))


def test_agc_on_cuda_equals_the_cpu_reference(no_tf32):
    torch.manual_seed(0)
    model = nfrepro.create_model("nfnet_f0", num_classes=10, **NFNET)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 10 ** torch.empty(()).uniform_(-4, 1)
    cpu = clip_parameters(model)
    gpu_model = nfrepro.create_model("nfnet_f0", num_classes=10, **NFNET).cuda()
    gpu_model.load_state_dict(model.state_dict())
    for p, q in zip(model.parameters(), gpu_model.parameters(), strict=True):
        q.grad = p.grad.cuda()
    stats = adaptive_grad_clip_(clip_parameters(gpu_model), 0.01)
    ref = adaptive_grad_clip_reference_(cpu, 0.01)
    assert int(stats["num_clipped"]) == int(ref["num_clipped"]) > 0
    for p, q in zip(model.parameters(), gpu_model.parameters(), strict=True):
        torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-5, atol=1e-7)


def test_ws_custom_backward_gradcheck_on_cuda():
    w = torch.randn(6, 4, 3, 3, device="cuda", dtype=torch.float64, requires_grad=True)
    g = torch.rand(6, device="cuda", dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: _StandardizeWeight.apply(a, b, 1e-4), (w, g))


def test_fold_for_inference_on_cuda(no_tf32):
    torch.manual_seed(0)
    model = nfrepro.create_model("nfnet_f0", num_classes=10, **NFNET).cuda().eval()
    folded = nfrepro.fold_for_inference(model)
    x = torch.randn(2, 3, 64, 64, device="cuda")
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(folded(x), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


NCCL_ONE = textwrap.dedent("""
    import os, torch, torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533", RANK="0", WORLD_SIZE="1")
    dist.init_process_group("nccl")
    t = torch.ones(3, device="cuda")
    dist.all_reduce(t)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2).cuda(), device_ids=[0])
    model(torch.randn(8, 4, device="cuda")).sum().backward()
    assert t.tolist() == [1.0, 1.0, 1.0]
    dist.destroy_process_group()
    print("nccl ok")
""")
DDP_ARGS = ["train", "--model", "nf_resnet_small", "--model-arg", "depths=[1,1]", "--model-arg",
            "widths=[8,16]", "--dataset", "synthetic", "--train-subset", "256", "--test-subset", "64",
            "--epochs", "1", "--clipping", "0.05", "--device", "cuda",
            "--no-progress"]


def test_ddp_over_nccl_on_the_gpus_present(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    n = torch.cuda.device_count()
    if n < 2:  # NCCL refuses two ranks on one GPU: check the NCCL path with one rank instead
        out = subprocess.run([sys.executable, "-c", NCCL_ONE], env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0 and "nccl ok" in out.stdout, out.stderr[-2000:]
        return
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          f"--nproc_per_node={n}", "-m", "nfrepro", *DDP_ARGS, "--batch-size", str(16 * n),
                          "--run-dir", str(tmp_path / "ddp")], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0 and "completed" in out.stdout, out.stderr[-3000:]


def test_fifty_bf16_steps_resume_bit_identically(tmp_path):
    """25 steps per epoch, 2 epochs, killed after the first: the resumed run ends on the same weights."""
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    values = dict(model="nf_resnet_small", model_kwargs={"depths": [1, 1], "widths": [8, 16],
                                                         "drop_rate": 0.2, "stochdepth_rate": 0.2},
                  dataset="synthetic", train_subset=400, test_subset=64, batch_size=16, epochs=2,
                  clipping=0.05, ema_decay=0.9, device="cuda", amp="bf16", progress=False)
    whole = train(TrainConfig(**values, run_dir=str(tmp_path / "whole")))
    assert int(whole.metrics["step"].iloc[-1]) == 50
    train_killed_after(TrainConfig(**values, run_dir=str(tmp_path / "resumed")), epoch=1)
    train(TrainConfig(**values, run_dir=str(tmp_path / "resumed")))
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
