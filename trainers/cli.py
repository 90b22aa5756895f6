"""`scalesweep train`: train one model standalone, like nanoGPT's train.py.

    scalesweep train --config run.yaml
    scalesweep train --target-params 1e5 --dataset-tokens 2e6 --n-ctx 128 --storage runs/
    torchrun --nproc_per_node 2 -m trainers.cli --config run.yaml   # data parallel
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml


def _scalar(text: str) -> Any:
    """A flag's value, read as the same YAML scalar in --config would be (`TrainConfig.from_dict`
    then parses it, so a bad value names the field)."""
    return yaml.safe_load(text)


def _config_flags() -> dict[str, str]:
    """TrainConfig's scalar fields (those with a parser) -> help text, from the fields' docs."""
    import dataclasses

    from trainers.config import TrainConfig

    flags = {}
    for f in dataclasses.fields(TrainConfig):
        parse = f.metadata.get("parse")
        if parse is not None:
            default = f.metadata.get("shown_default") or repr(f.default)
            flags[f.name] = f"{f.metadata['doc']} ({getattr(parse, 'rule', 'value')}; default {default})"
    return flags


def _shape_flags() -> dict[str, str]:
    """ModelShape's fields and the `target_params` form's keys -> help text."""
    import dataclasses

    from trainers.config import SHAPE_TARGET_PARSERS
    from trainers.shapes import FAMILIES, ModelShape

    flags = {f.name: f"shape.{f.name}: explicit shape (integer > 0)" for f in dataclasses.fields(ModelShape)}
    flags["family"] = f"shape.family: model family, {' | '.join(FAMILIES)} (default transformer; an lstm " \
                      "has no n_heads/d_ff/d_attn)"
    for name, parse in SHAPE_TARGET_PARSERS.items():
        flags.setdefault(name, f"shape.{name}: shape from a target N ({parse.rule}); overrides explicit sizes")
    return flags


_EXPLICIT_SIZES = ("n_layer", "d_model", "n_heads", "d_ff")
#: where a run lands in the metrics store (--sweep, --trial-id): their defaults; read only with --storage
STORE_NAMES = {"sweep": "standalone", "trial_id": "run"}


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train one model (DeepSpeed) and print its summary")
    add_train_arguments(parser)
    parser.set_defaults(func=run_train)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file with TrainConfig fields (flags below override it)")
    for flag, help_text in {**_shape_flags(), **_config_flags()}.items():
        parser.add_argument(f"--{flag.replace('_', '-')}", type=_scalar, help=help_text)
    parser.add_argument("--corpus", help="builtin | path/glob | *.jsonl | *.parquet | *.bin")
    parser.add_argument("--tokenizer", help="byte | bpe:<vocab> | tiktoken:gpt2")
    parser.add_argument("--storage", help="metrics store root (path or pyarrow.fs URI)")
    parser.add_argument("--sweep", default=STORE_NAMES["sweep"],
                        help=f"sweep name in the metrics store (default {STORE_NAMES['sweep']})")
    parser.add_argument("--trial-id", default=STORE_NAMES["trial_id"],
                        help=f"trial id in the metrics store (default {STORE_NAMES['trial_id']})")
    parser.add_argument("--checkpoint-dir", help="save DeepSpeed checkpoints here (at evaluations)")
    parser.add_argument("--resume-from", help="continue from this checkpoint directory")


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    if args.config:
        from trainers.fields import load_yaml  # refuses duplicate keys, names the file

        raw = load_yaml(args.config) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"--config: {args.config} must hold a mapping of TrainConfig fields")
    shape = dict(raw.get("shape") or {})
    given = {flag: getattr(args, flag) for flag in _shape_flags() if getattr(args, flag) is not None}
    sizes = [k for k in _EXPLICIT_SIZES if k in given]
    if sizes and "target_params" in {**shape, **given}:  # the size flags were dropped without a word
        where = "--target-params" if "target_params" in given else f"the target_params of --config {args.config}"
        raise ValueError(f"--{sizes[0].replace('_', '-')} {given[sizes[0]]}: {where} chooses "
                         f"{', '.join(_EXPLICIT_SIZES)}; give it or explicit sizes, not both")
    shape.update(given)
    if "target_params" in shape:  # --target-params over a --config's explicit sizes
        for explicit in _EXPLICIT_SIZES:
            shape.pop(explicit, None)
    if not set(shape) & {"target_params", *_EXPLICIT_SIZES}:  # no size given: a small default
        shape = {"target_params": 1e5, "n_ctx": 128, **shape}
    raw["shape"] = shape
    for flag in _config_flags():
        if getattr(args, flag) is not None:
            raw[flag] = getattr(args, flag)
    corpus = raw.get("corpus") or {}
    corpus = {"source": corpus} if isinstance(corpus, str) else dict(corpus)
    if args.corpus:
        corpus["source"] = args.corpus
    if args.tokenizer:
        corpus["tokenizer"] = args.tokenizer
    raw["corpus"] = corpus
    raw.setdefault("dataset_tokens", 1_000_000)
    return raw


def run_train(args: argparse.Namespace) -> int:
    from trainers.config import RunOutput, TrainConfig

    config = TrainConfig.from_dict(config_from_args(args))  # bad flags refused before torch is imported
    named = [(k, getattr(args, k)) for k, default in STORE_NAMES.items() if getattr(args, k) != default]
    if named and not args.storage:  # read by nothing
        key, value = named[0]
        raise ValueError(f"--{key.replace('_', '-')} {value}: names the run in the metrics store; without --storage "
                         f"nothing is written")
    from trainers.deepspeed_trainer import train

    output = RunOutput(storage=args.storage, sweep=args.sweep, trial_id=args.trial_id,
                       checkpoint_dir=args.checkpoint_dir, resume_from=args.resume_from)
    result = train(config, output)
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        print(format_summary(config, result))
    from metrics.statuses import USABLE_STATUSES

    return 0 if result.status in USABLE_STATUSES else 1


def format_summary(config, result) -> str:
    shape = config.shape
    best = f"{result.best_val_loss:.4f} @ step {result.best_step}" if result.best_val_loss is not None else "n/a"
    lines = [
        f"status      {result.status}",
        f"shape       {shape.family} n_layer={shape.n_layer} d_model={shape.d_model} n_heads={shape.n_heads} "
        f"d_ff={shape.d_ff} n_ctx={shape.n_ctx} vocab={shape.vocab_size}",
        f"N           {config.non_embedding_params:,} non-embedding params",
        f"D           {config.dataset_tokens:,} tokens ({config.regime} regime)",
        f"trained     {result.steps} steps, {result.tokens_seen:,} tokens",
        f"FLOPs       {result.flops:.3e} exact ({result.flops_6n:.3e} as 6ND)",
        f"val loss    best {best}; final {result.final_val_loss}",
        f"throughput  {result.tokens_per_s:,.0f} tokens/s, MFU {100 * result.mfu:.1f}%",
        f"wall        {result.wall_s:.1f} s",
    ]
    if result.curve:
        lines.append("curve       " + "  ".join(f"{r['step']}:{r['val_loss']:.3f}" for r in result.curve[-8:]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.cli", description=__doc__)
    add_train_arguments(parser)
    from scalesweep.cli import USER_ERRORS

    try:
        return run_train(parser.parse_args(argv))
    except USER_ERRORS as err:
        print(f"train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
