"""Command line: ``python -m nfrepro {train,eval,bench,sweep} ...`` (``--help`` on each).

    python -m nfrepro train --model nf_resnet_small --batch-size 1024 --clipping 0.04 --epochs 10
    torchrun --nproc_per_node=4 -m nfrepro train --batch-size 4096 ...   # data parallel
    python -m nfrepro train --model nfnet_f0 --dataset folder --data-root /data/imagenet --mix mixup_cutmix
    python -m nfrepro eval --model nfnet_f0 --weights F0_haiku.npz --data /data/imagenet/val
    python -m nfrepro bench --which agc throughput
    python -m nfrepro sweep --grid '{"clipping": [0.01, 0.04], "seed": [0, 1]}' --epochs 5

``train`` and ``sweep`` take one option per :class:`~nfrepro.engine.training.TrainConfig` field
(``--batch-size``, ``--clipping none`` ...; ``--model-arg drop_rate=0.2`` sets a model argument).
Bad input (unknown model, lambda <= 0, a batch size the processes cannot share, missing data, a
corrupt checkpoint, a busy run folder...) prints one line saying what to do and exits with
status 2, before any work where it can be known up front. Ctrl-C exits with status 130; the same
command then resumes from the last finished epoch. Set ``NFREPRO_DEBUG=1`` to see the traceback
instead.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import typing
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from torch.utils.data import DataLoader, Subset

from nfrepro.bench import runner
from nfrepro.data.datasets import DataIntegrityError, DataNotFoundError
from nfrepro.data.imagenet import image_folder
from nfrepro.engine.checkpoint import CheckpointError
from nfrepro.engine.config import ConfigError, TrainConfig, options
from nfrepro.engine.device import AMP_MODES, autocast, check_device
from nfrepro.engine.distributed import cleanup, is_main_process
from nfrepro.engine.faults import (
    FolderInUseError,
    OutputLocationError,
    check_output_dir,
    error_line,
)
from nfrepro.engine.sweep import run_sweep
from nfrepro.engine.training import evaluate, train
from nfrepro.models.factory import create_model
from nfrepro.models.pretrained import load_pretrained
from nfrepro.models.registry import list_models

USAGE_ERRORS = (ConfigError, DataNotFoundError, DataIntegrityError, CheckpointError, ValueError,
                FileNotFoundError, FolderInUseError, OutputLocationError)
def _parse_value(text: str) -> Any:
    """A JSON value (number, true/false, list...), ``none`` for None, else the text itself."""
    if text.lower() == "none":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _typed(kind: type, optional: bool):
    def parse(text: str) -> Any:
        if optional and text.lower() == "none":
            return None
        return kind(text)
    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per key of a TrainConfig's ``config.json``, typed from its annotation; the
    help text, default and choices are the field's own (:func:`nfrepro.engine.config.options`)."""
    for o in options():
        flag = "--" + o.name.replace("_", "-")
        args = typing.get_args(o.hint) if typing.get_origin(o.hint) not in (list, tuple) else ()
        optional = type(None) in args  # list[int] has args (int,) too: only a Union is "optional"
        base = next((a for a in args if a is not type(None)), o.hint)
        text = f"{o.help} (default: {o.default}" + (f"; here: {o.here()}" if o.here else "") + ")"
        if o.choices:
            text += f"; choices: {', '.join(str(c) for c in o.choices)}"
        if o.name == "model_kwargs":
            parser.add_argument("--model-arg", dest="model_kwargs", action="append", default=[],
                                metavar="KEY=VALUE", help="model constructor argument, repeatable "
                                "(value parsed as JSON: --model-arg depths=[1,1])")
        elif base is bool:
            parser.add_argument(flag, dest=o.name, action=argparse.BooleanOptionalAction,
                                default=o.default, help=text)
        elif typing.get_origin(base) in (list, tuple):
            parser.add_argument(flag, dest=o.name, type=int, nargs="+", default=o.default, help=text)
        else:
            parser.add_argument(flag, dest=o.name, type=_typed(base, optional), default=o.default,
                                help=text, metavar=base.__name__.upper(), choices=o.choices)
    parser.add_argument("--config", action=LoadConfig, metavar="RUN/config.json",
                        help="re-run a saved configuration (a run folder's config.json); options "
                             "given on the command line win. The same configuration maps to the "
                             "same run folder (it resumes there); pass --run-dir to run it elsewhere")


class LoadConfig(argparse.Action):
    """``--config RUN/config.json``: the saved TrainConfig's values for every option still at its default."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            stored = json.loads(Path(values).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"--config {values}: cannot read a JSON configuration ({err})") from None
        if not isinstance(stored, dict):
            raise ConfigError(f"--config {values}: holds a JSON {type(stored).__name__}, not an object of "
                              f"TrainConfig fields (a run folder's config.json is one)")
        if not isinstance(stored.get("model_kwargs", {}), dict):
            raise ConfigError(f"--config {values}: model_kwargs must be an object of names to values")
        unknown = set(stored) - {o.name for o in options()}
        if unknown:
            raise ConfigError(f"--config {values}: unknown TrainConfig field(s) {', '.join(sorted(unknown))}")
        for name, value in stored.items():
            if getattr(namespace, name) != parser.get_default(name):
                continue  # given on the command line
            if name == "model_kwargs":
                value = [f"{k}={json.dumps(v)}" for k, v in value.items()]
            setattr(namespace, name, value)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {o.name: getattr(args, o.name) for o in options()}
    kwargs = {}
    for item in values["model_kwargs"]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-arg {item!r}: write KEY=VALUE, e.g. --model-arg drop_rate=0.2")
        kwargs[key] = _parse_value(value)
    values["model_kwargs"] = kwargs
    config = TrainConfig.from_dict(values)
    config.validate()  # the model, the data set's shape and the device included
    return config


def _check_model(name: str) -> None:
    if name not in list_models():
        create_model(name)  # raises ValueError with close matches


def cmd_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    result = train(config)
    if is_main_process():
        print(f"{result.status}: test top-1 {result.final('test_top1'):.2f}% "
              f"(EMA {result.final('test_top1_ema'):.2f}%) after {len(result.metrics)} epochs, "
              f"{result.wall_time_s:.0f} s; run folder {result.run_dir}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    try:
        grid = json.loads(args.grid)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--grid is not JSON ({err.msg}): write e.g. "
                          "'{\"clipping\": [0.01, 0.04], \"seed\": [0, 1]}'") from err
    if not isinstance(grid, dict) or not grid:
        raise ConfigError("--grid must be a non-empty JSON object of lists, e.g. "
                          "'{\"clipping\": [0.01, 0.04]}'")
    df = run_sweep(grid, config_from_args(args), args.results, runs_dir=args.runs_dir,
                   progress=args.progress)
    print(f"{df['run'].nunique()} runs in {args.results}")
    return 0


def _check_eval_args(args: argparse.Namespace) -> None:
    """Every eval value that would be ignored, or mean "default" by accident, is refused."""
    for flag, value, low in (("--image-size", args.image_size, 8), ("--limit", args.limit, 1),
                             ("--num-classes", args.num_classes, 1), ("--batch-size", args.batch_size, 1),
                             ("--workers", args.workers, 0)):
        if value is not None and value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}"
                              + (" (leave it out for the default)" if flag != "--workers" else ""))


def cmd_eval(args: argparse.Namespace) -> int:
    _check_eval_args(args)
    _check_model(args.model)
    device = check_device(args.device)
    model = create_model(args.model, **({"num_classes": args.num_classes} if args.num_classes else {}))
    if args.weights:
        load_pretrained(model, args.weights, use_ema=args.use_ema)
    size = args.image_size if args.image_size is not None else getattr(
        getattr(model, "variant", None), "test_px", None)
    if size is None:
        raise ConfigError(f"{args.model} has no variant test resolution: pass --image-size")
    dataset = image_folder(args.data, size)
    if args.limit is not None:
        dataset = Subset(dataset, range(min(args.limit, len(dataset))))
    if not args.weights:
        print(f"note: no --weights, so this scores {args.model} as initialised (untrained)",
              file=sys.stderr)
    model = model.to(device)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers,
                        pin_memory=device.type == "cuda")
    top1 = evaluate(model, loader, functools.partial(autocast, device, args.amp))
    print(f"{args.model}: top-1 {top1:.2f}% on {len(dataset)} images of {args.data} "
          f"(resize {size + 32}x{size + 32} bicubic, centre crop {size})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.profile is not None and args.out_dir is not None:
        raise ConfigError("--profile only chooses the output folder (.scratch/smoke/results for "
                          "smoke), which --out-dir replaces: give one of them")
    check_device(args.device)
    if args.out_dir is not None:
        check_output_dir(args.out_dir)
    for name, path in runner.run_benchmarks(which=args.which, device=args.device, out_dir=args.out_dir,
                                             profile=args.profile or "cpu").items():
        print(f"{name} ({path}):")
        print(pd.read_csv(path).to_string(index=False) if Path(path).exists() else "(no rows)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nfrepro", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one model (torchrun-ready)")
    add_config_options(train)
    train.set_defaults(run=cmd_train)
    sweep = sub.add_parser("sweep", help="train a grid of configurations into one tidy CSV")
    sweep.add_argument("--grid", required=True, help="JSON object: TrainConfig field -> list")
    sweep.add_argument("--results", default="results/sweep.csv", help="tidy results CSV")
    sweep.add_argument("--runs-dir", default=None, help="run folders (default: runs/)")
    add_config_options(sweep)
    sweep.set_defaults(run=cmd_sweep)
    ev = sub.add_parser("eval", help="top-1 on an ImageNet-style folder, the paper's protocol")
    about = {o.name: o.help for o in options()}
    ev.add_argument("--model", required=True, help=about["model"])
    ev.add_argument("--weights", default=None, help="weights file: DeepMind .npz / pickle, timm .pth / "
                    ".pth.tar / .safetensors, or a state dict (format read from the content)")
    ev.add_argument("--use-ema", action=argparse.BooleanOptionalAction, default=None,
                    help="a training checkpoint's EMA weights (timm's state_dict_ema, ours ema): --use-ema "
                         "takes them, --no-use-ema the raw weights (default: the raw weights, with a "
                         "warning when EMA weights are there too)")
    ev.add_argument("--data", required=True, help="folder with one sub-folder per class")
    ev.add_argument("--image-size", type=int, default=None, help="default: the variant's test px")
    ev.add_argument("--num-classes", type=int, default=None,
                    help="classifier outputs (default: the model's, 1000 for the ImageNet models)")
    ev.add_argument("--batch-size", type=int, default=50, help="images per batch (default: 50)")
    ev.add_argument("--workers", type=int, default=4, help="data-loading processes (default: 4)")
    ev.add_argument("--limit", type=int, default=None, help="only the first N images")
    ev.add_argument("--device", default="auto", help=about["device"] + " (default: auto)")
    ev.add_argument("--amp", default="auto", choices=AMP_MODES,
                    help="mixed precision (default: auto); choices: " + ", ".join(AMP_MODES))
    ev.set_defaults(run=cmd_eval)
    bench = sub.add_parser("bench", help="benchmarks (AGC cost, training throughput)")
    bench.add_argument("--which", nargs="+", default=["agc"], choices=list(runner.BENCHMARKS),
                       help="benchmarks to run (default: agc); choices: " + ", ".join(runner.BENCHMARKS))
    bench.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the GPU if any)")
    bench.add_argument("--out-dir", default=None, help="folder for the results CSVs (default: the "
                       "profile's results folder; not with --profile)")
    bench.add_argument("--profile", default=None, choices=("smoke", "cpu", "gpu"),
                       help="where the results go: smoke (a scratch folder), cpu or gpu (results/); "
                            "default: cpu")
    bench.set_defaults(run=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except ConfigError as err:  # --config's file, read while parsing: one line, as every usage error
        print(f"nfrepro: error: {error_line(err, 1000)}", file=sys.stderr)
        return 2
    try:
        return args.run(args)
    except USAGE_ERRORS as err:
        if os.environ.get("NFREPRO_DEBUG"):
            raise
        print(f"nfrepro {args.command}: error: {error_line(err, 1000)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # checkpoints and results are written atomically: nothing is half-done
        if os.environ.get("NFREPRO_DEBUG"):
            raise
        resume = " (the same command resumes from the last finished epoch)" if args.command in (
            "train", "sweep") else ""
        print(f"\nnfrepro {args.command}: interrupted{resume}", file=sys.stderr)
        return 130
    finally:
        cleanup()
