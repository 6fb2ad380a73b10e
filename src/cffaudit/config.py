"""Typed run configuration: one frozen dataclass per concern, composed into RunConfig.

Builders below this module take plain keyword arguments; only the wiring code
(`cffaudit.train.run`, the CLI, sweeps) touches these dataclasses. Overrides are
strict: an unknown key or a value of the wrong type is a ``ValueError`` naming it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Optional

# The datasets and margin variants are defined by their registries (torch-free modules,
# so this one stays importable without torch); the names here are views of them.
from cffaudit.dictpaths import flatten_paths, set_path, without_paths  # noqa: F401  (re-exported)
from cffaudit.data.sources import DATASETS, DEFAULT_NORMALIZATION, NORMALIZATIONS, SOURCES
from cffaudit.loss.links import LINKS, WeinceParams
from cffaudit.loss.margins import MARGIN_SCHEDULES, MARGIN_SHAPES, layer_margins
from cffaudit.loss.variants import MARGIN_VARIANTS, STABILITIES
from cffaudit.suggest import did_you_mean

MARGINS = tuple(MARGIN_VARIANTS)
LINK_NAMES = tuple(LINKS)
LOCALITIES = ("local", "global", "last")  # stage1.locality; see cffaudit.train.stage1
# augment.PRESETS with "auto" (the dataset's default preset); tests/data/test_sources.py
# checks the two agree, since the presets module imports torch.
AUGMENT_PRESETS = ("auto", "cifar", "svhn_easy", "svhn_medium", "svhn_hard", "fashion_mnist", "none")
PROBE_AUGMENT = ("view", "none")
MODEL_INITS = ("original", "small")  # cffaudit.model.vit.INITS; config must not import torch
DEVICES = ("auto", "cpu", "cuda")

#: The training protocol the defaults of ``RunConfig`` describe; raise it whenever a
#: default changes what a run trains (see
#: ``cffaudit.experiments.identity``); every result.json records it as ``protocol``.
#:   1: (no key in the identity) the first release.
#:   2: normalisation by the original CFF code's constants (``data.normalization:
#:      original``; CIFAR std 0.2023/0.1994/0.2010, and CIFAR-10's constants for
#:      CIFAR-100), and the original code's initialisation of the model.
PROTOCOL_VERSION = 2


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "cifar10"  # a name of DATASETS
    data_dir: Optional[str] = None
    download: bool = False
    augment: str = "auto"
    # Per-channel statistics: "original" (the original CFF code's constants) or "dataset"
    # (each dataset's own); see cffaudit.data.sources.
    normalization: str = DEFAULT_NORMALIZATION
    limit_train: Optional[int] = None
    limit_val: Optional[int] = None
    # Sizes of the synthetic dataset (ignored for real datasets).
    synthetic_train: int = 5000
    synthetic_test: int = 1000
    synthetic_classes: int = 10


@dataclass(frozen=True)
class ModelConfig:
    embed_dim: int = 128
    depth: int = 8
    heads: int = 4
    patch_size: int = 4
    mlp_ratio: float = 2.0
    image_size: int = 32
    in_chans: int = 3
    # "original": the original CFF code's initialisation (N(0, 1) positions, the attention
    # of nn.MultiheadAttention); "small": earlier cffaudit versions'. See cffaudit.model.vit.
    init: Literal["original", "small"] = "original"


@dataclass(frozen=True)
class LossConfig:
    margin: str = "clamp"  # a name of MARGINS
    stability: str = "detach"  # a name of STABILITIES
    margin_schedule: str = "standard"
    m0: Optional[float] = None
    mL: Optional[float] = None
    # How the margins run from m0 to mL over the blocks (a name of MARGIN_SHAPES) and the
    # shape's parameter k (> 0; the linear shape ignores it).
    margin_shape: str = "linear"
    margin_k: float = 1.0
    temperature: float = 0.15
    link: str = "standard"  # a name of LINK_NAMES: how similarities become logits
    weince: WeinceParams = field(default_factory=WeinceParams)  # used by link "weince" only


@dataclass(frozen=True)
class Stage1Config:
    epochs: int = 600
    lr: float = 0.004
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.01
    batch_size: int = 512
    # "auto" picks per device: per-block backward on CPU, fused backward elsewhere.
    step_order: Literal["auto", "per_block", "fused"] = "auto"
    # Encoder handed to the probe: the last epoch's, or (as the original CFF code) the
    # epoch with the lowest last-layer validation loss, chosen per seed.
    select: Literal["last", "best_val_loss"] = "last"
    # Which losses train which blocks: "local" (CFF: each block's input detached, so a
    # loss trains its own block), "global" (the per-layer losses summed without the
    # detach: a block also gets the gradients of every later loss) or "last" (only the
    # last block's loss, end to end: a plain supervised-contrastive ViT). The other
    # layers' losses and CAR are recorded under every locality.
    locality: Literal["local", "global", "last"] = "local"


@dataclass(frozen=True)
class Stage2Config:
    epochs: int = 50
    lr: float = 0.0005
    weight_decay: float = 0.01
    batch_size: int = 512
    probe_augment: Literal["view", "none"] = "view"
    # Probes trained on the one encoder, each from its own probe streams (weights, views,
    # order); test_acc is the first one's, whatever their number.
    probe_seeds: int = 1
    # The same probe on the encoder as initialised (untrained_test_acc): "auto" is on with
    # cached features (probe_augment none, one extra probe) and off when the probe re-runs
    # the encoder (view, one extra stage 2).
    untrained_baseline: Literal["auto", "on", "off"] = "auto"


@dataclass(frozen=True)
class SeedsConfig:
    """Per-source seeds: None draws a source from the run seed; an integer k draws it as
    the run with seed k would, so a design can vary one source with the others held.
    The sources and the streams each sets are ``cffaudit.train.seeds.SOURCES``."""

    init: Optional[int] = None
    split: Optional[int] = None
    data: Optional[int] = None
    augment: Optional[int] = None
    probe: Optional[int] = None


@dataclass(frozen=True)
class PerfConfig:
    # "auto": bf16 autocast (loss in float32) and torch.compile on CUDA; float32, eager on CPU.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    # "retain": a CPU run keeps freed memory in its heap instead of returning it to the
    # OS every step (glibc only; see cffaudit.train.memory). "system": malloc as is.
    cpu_allocator: Literal["retain", "system"] = "retain"


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    perf: PerfConfig = field(default_factory=PerfConfig)
    seed: int = 0
    seeds: SeedsConfig = field(default_factory=SeedsConfig)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        validate(self)

    # -- derived values -------------------------------------------------------------
    def margins(self) -> list[float]:
        """Per-block margins m_l from m0 (block 0) to mL (last block), along the margin shape."""
        return layer_margins(self.loss.margin_schedule, self.model.depth, m0=self.loss.m0, mL=self.loss.mL,
                             shape=self.loss.margin_shape, k=self.loss.margin_k)

    def augment_preset(self) -> str:
        return resolve_augment(self.data.dataset, self.data.augment)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved(self) -> dict[str, Any]:
        """The config with every derived value written out, as stored in result.json."""
        d = self.to_dict()
        d["loss"]["margins"] = self.margins()
        d["loss"]["m0"], d["loss"]["mL"] = d["loss"]["margins"][0], d["loss"]["margins"][-1]
        d["data"]["augment"] = self.augment_preset()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Build from a nested dict; unknown keys and wrong types raise ValueError.

        Keys that ``resolved()`` adds (``loss.margins``) are accepted and checked for
        consistency, so a stored config round-trips.
        """
        cfg = _from_dict(cls, d, prefix="")
        stored = (d.get("loss") or {}).get("margins")
        if stored is not None and [round(m, 9) for m in stored] != [round(m, 9) for m in cfg.margins()]:
            raise ValueError(
                f"loss.margins {stored} does not follow from loss.m0/mL/margin_schedule "
                f"and model.depth ({cfg.margins()}); drop it or fix m0/mL"
            )
        return cfg

    def override(self, updates: dict[str, Any]) -> "RunConfig":
        """Return a copy with dotted-path updates applied, e.g. {"loss.margin": "subtract"}."""
        d = self.to_dict()
        for path, value in updates.items():
            set_path(d, path, value)
        return RunConfig.from_dict(d)


def resolve_augment(dataset: str, augment: str) -> str:
    """The augmentation preset a run uses: ``augment``, or the dataset's default for "auto"."""
    if augment != "auto":
        return augment
    return SOURCES[dataset].augment


def validate(cfg: RunConfig) -> None:
    def choice(name: str, value: Any, options) -> None:
        if value not in options:
            raise ValueError(f"{name}: {value!r} is not one of {list(options)}")

    def positive(name: str, value: Any) -> None:
        if value is None or value <= 0:
            raise ValueError(f"{name}: must be > 0, got {value!r}")

    choice("data.dataset", cfg.data.dataset, DATASETS)
    choice("data.augment", cfg.data.augment, AUGMENT_PRESETS)
    choice("data.normalization", cfg.data.normalization, NORMALIZATIONS)
    choice("loss.margin", cfg.loss.margin, MARGINS)
    choice("loss.stability", cfg.loss.stability, STABILITIES)
    choice("loss.margin_schedule", cfg.loss.margin_schedule, tuple(MARGIN_SCHEDULES))
    choice("loss.margin_shape", cfg.loss.margin_shape, tuple(MARGIN_SHAPES))
    choice("loss.link", cfg.loss.link, LINK_NAMES)
    choice("stage1.step_order", cfg.stage1.step_order, ("auto", "per_block", "fused"))
    choice("stage1.select", cfg.stage1.select, ("last", "best_val_loss"))
    choice("stage1.locality", cfg.stage1.locality, LOCALITIES)
    if cfg.stage1.locality != "local" and cfg.stage1.step_order == "per_block":
        raise ValueError(f"stage1.step_order=per_block backpropagates each layer's loss on its own and "
                         f"needs stage1.locality=local; with locality {cfg.stage1.locality!r} the gradients "
                         "cross blocks, so use step_order fused or auto")
    choice("perf.precision", cfg.perf.precision, ("auto", "fp32", "bf16"))
    choice("perf.compile", cfg.perf.compile, ("auto", "on", "off"))
    choice("perf.cpu_allocator", cfg.perf.cpu_allocator, ("retain", "system"))
    if cfg.perf.compile == "on" and cfg.stage1.step_order == "per_block":
        raise ValueError("perf.compile=on compiles the fused step and cannot act on "
                         "stage1.step_order=per_block; use step_order fused or auto")
    choice("stage2.probe_augment", cfg.stage2.probe_augment, PROBE_AUGMENT)
    choice("stage2.untrained_baseline", cfg.stage2.untrained_baseline, ("auto", "on", "off"))
    positive("stage2.probe_seeds", cfg.stage2.probe_seeds)
    choice("device", cfg.device, DEVICES)
    for name in ("embed_dim", "depth", "heads", "patch_size", "image_size", "in_chans"):
        positive(f"model.{name}", getattr(cfg.model, name))
    positive("model.mlp_ratio", cfg.model.mlp_ratio)
    choice("model.init", cfg.model.init, MODEL_INITS)
    if cfg.model.embed_dim % cfg.model.heads:
        raise ValueError(
            f"model.embed_dim ({cfg.model.embed_dim}) must be divisible by model.heads ({cfg.model.heads})"
        )
    if cfg.model.image_size % cfg.model.patch_size:
        raise ValueError(
            f"model.patch_size ({cfg.model.patch_size}) must divide model.image_size ({cfg.model.image_size})"
        )
    positive("loss.temperature", cfg.loss.temperature)
    for name in ("m0", "mL"):
        v = getattr(cfg.loss, name)
        if v is not None and not (0.0 <= v <= 2.0):
            raise ValueError(f"loss.{name}: a margin must lie in [0, 2], got {v!r}")
    positive("loss.margin_k", cfg.loss.margin_k)
    cfg.margins()  # a shape that cannot run between these end points raises here, not mid-run
    cfg.loss.weince.validate("loss.weince.")
    for stage in ("stage1", "stage2"):
        s = getattr(cfg, stage)
        if s.epochs < 0:
            raise ValueError(f"{stage}.epochs: must be >= 0, got {s.epochs}")
        positive(f"{stage}.lr", s.lr)
        positive(f"{stage}.batch_size", s.batch_size)
        if s.weight_decay < 0:
            raise ValueError(f"{stage}.weight_decay: must be >= 0, got {s.weight_decay}")
    if cfg.stage1.batch_size < 2:
        raise ValueError("stage1.batch_size: a contrastive batch needs at least 2 images")
    if cfg.data.limit_train is not None and cfg.data.limit_train < 2:
        raise ValueError(f"data.limit_train: must be >= 2, got {cfg.data.limit_train}")
    if cfg.data.limit_val is not None and cfg.data.limit_val < 1:
        raise ValueError(f"data.limit_val: must be >= 1, got {cfg.data.limit_val}")
    for name in ("synthetic_train", "synthetic_test"):
        positive(f"data.{name}", getattr(cfg.data, name))
    if cfg.data.synthetic_classes < 2:
        raise ValueError("data.synthetic_classes: must be >= 2")
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {cfg.seed!r}")
    for source, value in dataclasses.asdict(cfg.seeds).items():
        if value is not None and value < 0:
            raise ValueError(f"seeds.{source}: must be a non-negative integer or null (the run seed), got {value!r}")


# -- strict dict <-> dataclass ---------------------------------------------------------

_DERIVED_KEYS = {"loss": {"margins"}}


def _check_type(name: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(name, value, inner[0])
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f"{name}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{name}: expected a string, got {value!r}")
        return value
    return value


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    # Resolving the string annotations was most of the cost of `override`, which a
    # sweep's expansion calls for every run.
    return typing.get_type_hints(cls)


def _from_dict(cls: type, d: Any, prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {d!r}")
    hints = _type_hints(cls)
    known = {f.name for f in fields(cls)}
    derived = _DERIVED_KEYS.get(prefix.rstrip("."), set())
    unknown = set(d) - known - derived
    if unknown:
        first = sorted(unknown, key=str)[0]
        raise ValueError(
            f"unknown config key(s) {sorted(prefix + str(k) for k in unknown)}"
            f"{did_you_mean(prefix + str(first), [prefix + k for k in known])} "
            f"(known keys here: {sorted(prefix + k for k in known)})"
        )
    kwargs = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _from_dict(tp, d[f.name], prefix + f.name + ".")
        else:
            kwargs[f.name] = _check_type(prefix + f.name, d[f.name], tp)
    return cls(**kwargs)


#: The files of a run folder: the outcome (written last, atomically) and the checkpoint
#: a resume continues from.
RESULT_NAME = "result.json"
CHECKPOINT_NAME = "checkpoint.pt"

#: Dotted config paths that never change a trained model or its accuracy: left out of
#: run ids (experiments.identity) and of the config a checkpoint must match (train.run).
NON_RESULT_KEYS = ("data.data_dir", "data.download", "device", "perf.cpu_allocator",
                   # an extra probe on the initial encoder; the trained model and test_acc are the same
                   "stage2.untrained_baseline")


#: Config fields added after results were first stored, whose defaults train what a result
#: stored without them was trained with (so run ids left them out): readers of stored
#: results fill them in (``added_field_defaults``), so that the report does not split runs
#: into designs by a key that only the newer results spell out.
ADDED_FIELDS = ("loss.margin_shape", "loss.margin_k", "loss.link", "loss.weince", "stage1.locality",
                "stage2.probe_seeds", "seeds")


@functools.cache
def _added_field_defaults() -> tuple[tuple[str, Any], ...]:
    flat = flatten_paths(RunConfig().to_dict())
    return tuple((k, v) for k, v in flat.items() if any(k == p or k.startswith(p + ".") for p in ADDED_FIELDS))


def added_field_defaults() -> dict[str, Any]:
    """{dotted.path: default} of every field in ``ADDED_FIELDS`` (a fresh dict)."""
    return dict(_added_field_defaults())


def parse_seeds(value: Any) -> tuple[int, ...]:
    """Seeds from a list of ints, one int, or a string of ranges ("1-7", "1-5,10")."""
    if isinstance(value, bool):
        raise ValueError(f"expected seeds, got {value!r}")
    if isinstance(value, int):
        seeds = [value]
    elif isinstance(value, str):
        seeds = []
        for part in value.replace(" ", "").split(","):
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not m:
                raise ValueError(f"cannot read {value!r}; write e.g. 1-7 or 1-5,10 or a list")
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                raise ValueError(f"range {part!r} runs backwards")
            seeds.extend(range(lo, hi + 1))
    elif isinstance(value, list):
        seeds = []
        for s in value:
            if isinstance(s, bool) or not isinstance(s, int):
                raise ValueError(f"seeds must be integers, got {s!r}")
            seeds.append(s)
    else:
        raise ValueError(f"expected a list, an integer or a range string, got {value!r}")
    if not seeds:
        raise ValueError("no seeds given")
    if any(s < 0 for s in seeds):
        raise ValueError("seeds must be non-negative")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"repeated seed in {value!r}")
    return tuple(seeds)
