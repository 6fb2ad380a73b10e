"""`cffaudit train`: flags -> RunConfig -> `train_seeds`. Parsing only; the folder layout is
`cffaudit.train.layout`, the training `cffaudit.train.run`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cffaudit import config as C
from cffaudit.cli import CLIError
from cffaudit.train.layout import run_folders

# flag -> dotted config path (every flag maps to exactly one config field)
_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--dataset": ("data.dataset", str, f"one of {', '.join(C.DATASETS)}"),
    "--data-dir": ("data.data_dir", str, "folder holding the dataset files (default: per-dataset cache)"),
    "--augment": ("data.augment", str, f"augmentation preset: {', '.join(C.AUGMENT_PRESETS)}"),
    "--limit-train": ("data.limit_train", int, "use the first N training images after the split"),
    "--limit-val": ("data.limit_val", int, "use the first N validation images (quick runs)"),
    "--synthetic-train": ("data.synthetic_train", int, "synthetic dataset: training+validation images"),
    "--synthetic-test": ("data.synthetic_test", int, "synthetic dataset: test images"),
    "--margin": ("loss.margin", str, " | ".join(C.MARGINS)),
    "--stability": ("loss.stability", str, " | ".join(C.STABILITIES)),
    "--margin-schedule": ("loss.margin_schedule", str,
                          " | ".join(f"{n} ({m0}->{mL})" for n, (m0, mL) in C.MARGIN_SCHEDULES.items())),
    "--m0": ("loss.m0", float, "margin of layer 0 (overrides the schedule)"),
    "--mL": ("loss.mL", float, "margin of the last layer (overrides the schedule)"),
    "--margin-shape": ("loss.margin_shape", str,
                       f"{' | '.join(C.MARGIN_SHAPES)}: how the margins run from m0 to mL over the blocks (linear)"),
    "--margin-k": ("loss.margin_k", float, "shape parameter k > 0 of the margin shape (1; linear ignores it)"),
    "--temperature": ("loss.temperature", float, "softmax temperature (0.15)"),
    "--link": ("loss.link", str, f"{' | '.join(C.LINK_NAMES)}: similarities -> logits (standard: s/tau); "
                                 "WEINCE's hyperparameters: --set loss.weince.NAME=VALUE"),
    "--embed-dim": ("model.embed_dim", int, "embedding width E (128)"),
    "--depth": ("model.depth", int, "number of blocks (8)"),
    "--heads": ("model.heads", int, "attention heads (4)"),
    "--patch-size": ("model.patch_size", int, "patch side in pixels (4)"),
    "--epochs-stage1": ("stage1.epochs", int, "stage-1 epochs (600)"),
    "--batch-size": ("stage1.batch_size", int, "stage-1 images per batch (512; two views each)"),
    "--lr1": ("stage1.lr", float, "stage-1 AdamW learning rate (0.004)"),
    "--step-order": ("stage1.step_order", str, "auto | per_block | fused (same updates; speed only)"),
    "--locality": ("stage1.locality", str, f"{' | '.join(C.LOCALITIES)}: local (CFF, each block's input detached), "
                                           "global (the layer losses summed, gradients cross blocks) or "
                                           "last (the last layer's loss only, end to end)"),
    "--stage1-select": ("stage1.select", str, "last | best_val_loss (the original code's choice): encoder given to the probe"),
    "--epochs-stage2": ("stage2.epochs", int, "linear-probe epochs (50)"),
    "--lr2": ("stage2.lr", float, "probe AdamW learning rate (0.0005)"),
    "--probe-augment": ("stage2.probe_augment", str, "view (one augmented view per image, as the original) | none (cached features, faster)"),
    "--probe-seeds": ("stage2.probe_seeds", int, "probes trained on the one encoder, each from its own streams (1); "
                                                 "test_acc is the first one's, probe_test_accs all"),
    "--untrained-baseline": ("stage2.untrained_baseline", str,
                             "auto | on | off: also train the probe on the encoder as initialised "
                             "(untrained_test_acc); auto: on with --probe-augment none"),
    **{f"--seed-{source}": (f"seeds.{source}", int, f"draw the {what} from this seed instead of the run seed")
       for source, what in (("init", "initial weights"), ("split", "train/validation split"),
                            ("data", "data order"), ("augment", "stage-1 augmentations"),
                            ("probe", "probes (weights, views, order)"))},
    "--precision": ("perf.precision", str, "auto | fp32 | bf16"),
    "--compile": ("perf.compile", str, "auto | on | off"),
    "--cpu-allocator": ("perf.cpu_allocator", str, "retain (keep freed memory in the process: no page faults per step) | system"),
    "--device": ("device", str, "auto | cpu | cuda"),
}


def add_train_command(sub: argparse._SubParsersAction) -> None:
    """Register `cffaudit train` on the CLI's subparsers."""
    p = sub.add_parser(
        "train", help="train one CFF run (stage 1 + linear probe) and write result.json",
        description="Train a ViT by Contrastive Forward-Forward (stage 1: every block by its own "
                    "supervised contrastive loss) and a linear probe on its frozen output (stage 2); "
                    "write result.json with the test accuracy, per-layer diagnostics and the resolved config.")
    add_train_arguments(p)
    p.set_defaults(func=run_train_command)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `cffaudit train`: one per config field, plus --config, --set and the run's folder."""
    for flag, (path, tp, help_) in _FLAGS.items():
        p.add_argument(flag, dest=path.replace(".", "__"), type=tp, default=None, help=help_,
                       metavar=flag.lstrip("-").upper().replace("-", "_"))
    p.add_argument("--download", action="store_true", help="fetch the dataset (checksum-verified) if missing")
    p.add_argument("--seed", type=int, default=None, help="run seed (0): init, split, order, augmentation, probe")
    p.add_argument("--seeds", default=None,
                   help="train several independent seeds together, e.g. 1-8 or 1,3,5; one result per seed")
    p.add_argument("--config", type=Path, default=None,
                   help="YAML or JSON file with a nested config (flags override it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field by dotted path, e.g. --set stage2.weight_decay=0.05")
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="output folder (runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an --out that already holds a checkpoint or result")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                   help="also write TensorBoard logs (per-layer loss, CAR, gradient norms, validation loss, "
                        "probe curves, config) to DIR/seed-<k>; needs cffaudit[tensorboard]")


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return C.parse_seeds(text)
    except ValueError as exc:
        raise ValueError(f"--seeds: {exc}") from None


def _parse_value(text: str) -> Any:
    """A --set value: YAML scalars, plus numbers YAML 1.1 reads as strings (1e-3)."""
    import yaml

    value = yaml.safe_load(text)
    if isinstance(value, str):
        for number in (int, float):
            try:
                return number(value)
            except ValueError:
                pass
    return value


def config_from_args(args: argparse.Namespace) -> C.RunConfig:
    """Base (file or defaults) <- --set overrides <- explicit flags; strict throughout."""
    base: dict[str, Any] = C.RunConfig().to_dict()
    if args.config is not None:
        if not args.config.exists():
            raise ValueError(f"--config: {args.config} does not exist")
        import yaml

        loaded = yaml.safe_load(args.config.read_text())
        if not isinstance(loaded, dict):
            raise ValueError(f"--config: {args.config} must hold a mapping of config sections")
        base = C.RunConfig.from_dict(loaded).to_dict()
    updates: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set: expected KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        updates[key.strip()] = _parse_value(value)
    for flag, (path, _, _) in _FLAGS.items():
        value = getattr(args, path.replace(".", "__"))
        if value is not None:
            updates[path] = value
    if args.download:
        updates["data.download"] = True
    if args.seed is not None:
        updates["seed"] = args.seed
    cfg = C.RunConfig.from_dict(base)
    return cfg.override(updates) if updates else cfg


def _no_checkpoint(out: Path, checkpoint: Path) -> str:
    """Why --resume cannot go on, and what to do: most often a mistyped --out."""
    from cffaudit.suggest import did_you_mean

    near = []
    if out.parent.is_dir():  # sibling folders a typo may have missed
        near = [str(d) for d in out.parent.iterdir() if d.is_dir() and any(d.glob("checkpoint*.pt"))]
    others = sorted(p.name for p in out.glob("checkpoint*.pt")) if out.is_dir() else []
    hint = f"; {out} holds {', '.join(others)} (of other --seeds)" if others else did_you_mean(str(out), near)
    return (f"--resume: no checkpoint at {checkpoint}, so there is nothing to resume; check --out "
            f"and --seeds, or drop --resume to start a new run{hint}")


def run_train_command(args: argparse.Namespace) -> int:
    """Run `cffaudit train`; returns 0 when every seed finished, 1 when one failed."""
    try:
        cfg = config_from_args(args)
        seeds = list(_seeds(args.seeds)) if args.seeds else [cfg.seed]
        if args.seeds and args.seed is not None:
            raise ValueError("--seed and --seeds: give one or the other")
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    tensorboard = tensorboard_dirs(args.tensorboard, [f"seed-{s}" for s in seeds])

    from cffaudit.train.threads import available_cores, limit_threads

    limit_threads(available_cores())  # before torch is imported: see train/threads.py
    from cffaudit.train.run import train_seeds

    folders = run_folders(args.out, seeds)
    if args.resume and not folders.checkpoint.exists():
        raise CLIError(_no_checkpoint(args.out, folders.checkpoint))
    existing = folders.existing()
    if existing and not args.resume and not args.overwrite:
        raise CLIError(f"{existing[0]} exists: pass --resume to continue that run, --overwrite to start "
                       "it afresh, or choose another --out")
    results = train_seeds(cfg, seeds, folders.out_dirs, checkpoint=folders.checkpoint, resume=args.resume,
                          progress=not args.no_progress, tensorboard=tensorboard)
    failed = 0
    for seed, path, res in zip(seeds, folders.results, results):
        if res["status"] == "done":
            print(f"seed {seed}: test accuracy {res['test_acc']:.2f}% (best validation "
                  f"{res['best_val_acc']:.2f}% at probe epoch {res['best_epoch']}) -> {path}")
        else:
            failed += 1
            print(f"seed {seed}: FAILED: {res['error']} -> {path}", file=sys.stderr)
    note = _synthetic_note(cfg, results)
    if note:
        print(note, file=sys.stderr)
    return 1 if failed else 0


def tensorboard_dirs(root: Path | None, names: list[str]) -> list[Path] | None:
    """`root/<name>` per run, or None without --tensorboard; fails before any training
    when TensorBoard's writer cannot be imported, saying what to install."""
    if root is None:
        return None
    from cffaudit.train.tblog import require_tensorboard

    try:
        require_tensorboard()
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    return [root / name for name in names]


def _synthetic_note(cfg: C.RunConfig, results: list[dict]) -> str:
    """Why a synthetic run at or below chance is not a bug (one line), or ''."""
    if cfg.data.dataset != "synthetic":
        return ""
    chance = 100.0 / cfg.data.synthetic_classes
    accs = [r["test_acc"] for r in results if r["status"] == "done" and r.get("test_acc") is not None]
    if not accs or min(accs) > chance:
        return ""
    return (f"note: test accuracy at or below chance ({chance:.0f}% for {cfg.data.synthetic_classes} classes): "
            "the synthetic data set is built so that an untrained encoder cannot separate it, and a few "
            "stage-1 epochs or probe steps leave the probe at chance or mapping classes to the wrong labels; "
            "a budget that learns it: --synthetic-train 1000 --epochs-stage1 8 --epochs-stage2 10 --lr2 0.01 "
            "(see the README, Synthetic data)")
