"""Stage-1 throughput of cffaudit against the original code's structure (`cffaudit bench`).

Three measurements in one process, on the same model size and the same data:

(a) baseline: the original CFF code's stage 1 (SPEC.md, "baseline to beat"), re-implemented
    where its cost comes from (`cffaudit.bench_original`): per-image augmentation on the
    CPU in a DataLoader with 4 workers, two views per image, four v2-shaped transform
    calls per view; per block two forwards of B views through `nn.MultiheadAttention`
    (need_weights=True) on the detached inputs, loss, zero_grad, backward, step of the
    block's own AdamW and `loss.item()`; the original's normalisation; float32, eager.
    The real original code is measured outside this repository (README, Speed).
(b) cffaudit, one seed: data resident on the device, batched augmentation, the
    runtime's step order, precision and compilation.
(c) cffaudit, S seeds side by side in one ensemble.

On a CPU, cffaudit keeps freed memory in the process (`cffaudit.train.memory`), a
process-wide setting; (a) runs before it takes effect, and a second baseline run
after it, (a'), separates that setting's gain from the structure's.

Views per second count both views of every image of every seed. Timings exclude
warm-up (and so compilation), use CUDA events on a GPU, and state n.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from cffaudit.config import RunConfig

if TYPE_CHECKING:  # torch loads when a benchmark runs, not when the CLI registers `bench`
    import torch

BENCH_CONFIGS: dict[str, dict[str, Any]] = {
    "paper": {"model.embed_dim": 128, "model.depth": 8, "model.heads": 4, "model.patch_size": 4,
              "stage1.batch_size": 512},
    "small": {"model.embed_dim": 64, "model.depth": 4, "model.heads": 4, "model.patch_size": 4,
              "stage1.batch_size": 256},
    # For tests of this command only: seconds on a CPU, numbers meaningless.
    "tiny": {"model.embed_dim": 16, "model.depth": 2, "model.heads": 2, "model.patch_size": 8,
             "stage1.batch_size": 32},
}

# Dense peak FLOP/s by device-name fragment and precision (vendor data sheets, SXM parts).
PEAK_FLOPS = {
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "H100": {"bf16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
    "V100": {"bf16": 125e12, "fp32": 15.7e12},  # V100 has no bf16: its fp16 tensor-core peak
}

PAPER_TRAIN_IMAGES = 45_000
PAPER_EPOCHS = (600, 50)


def stage1_flops_per_view(embed_dim: int, depth: int, patch_size: int, image_size: int = 32,
                          mlp_ratio: float = 2.0, batch_views: int = 1024) -> float:
    """Matmul FLOPs of one training step per view (forward + backward = 3x forward).

    Counts the linear layers, attention scores and values, and each layer's (N x N)
    similarity matrix; element-wise work is left out, as is usual for MFU.
    """
    T, E = (image_size // patch_size) ** 2, embed_dim
    hidden = int(E * mlp_ratio)
    embed = 2 * T * (3 * patch_size * patch_size) * E
    block = 2 * T * E * 3 * E + 2 * 2 * T * T * E + 2 * T * E * E + 2 * 2 * T * E * hidden
    loss = 2 * batch_views * E  # this view's row of the similarity matrix
    return 3.0 * (embed + depth * (block + loss))


# -- (a) the original code's stage 1, re-implemented (cffaudit.bench_original) ------------------


def _baseline(cfg: RunConfig, device: torch.device, steps: int, warmup: int, workers: int) -> dict[str, Any]:
    from cffaudit.bench_original import time_original_stage1
    from cffaudit.train.memory import freed_memory_retained

    times = time_original_stage1(cfg, device, steps=steps, warmup=warmup, workers=workers)
    out = _rate(times, 2 * cfg.stage1.batch_size)
    out["cpu_allocator"] = "retain" if freed_memory_retained() and device.type == "cpu" else "system"
    return out


def _baseline_augment_cost(n_images: int = 64) -> dict[str, Any]:
    """The re-implementation's per-view augmentation cost, beside the original's."""
    from cffaudit.bench_original import PerImagePipeline, augment_cost_per_view
    from cffaudit.data import make_synthetic
    from cffaudit.data.sources import normalization_stats

    stats = normalization_stats("cifar10", "original")
    images, _ = make_synthetic(n_images, num_classes=10, seed=1)
    return augment_cost_per_view(PerImagePipeline(stats.mean, stats.std), images)


# -- (b), (c) cffaudit ----------------------------------------------------------------------


class _Clock:
    """Timestamps that never synchronise: CUDA events recorded in the stream on a GPU,
    read once after the last step; `perf_counter` on a CPU. A step measured between
    two marks is then timed as the real training loop runs it, the host free to queue
    the next step while the GPU finishes this one."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        import torch

        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def intervals(self, marks: list[Any]) -> list[float]:
        """Seconds between consecutive marks."""
        if self.cuda:
            marks[-1].synchronize()
            return [a.elapsed_time(b) / 1000.0 for a, b in zip(marks, marks[1:])]
        return [b - a for a, b in zip(marks, marks[1:])]


def _cffaudit(cfg: RunConfig, device: torch.device, ensemble: int, steps: int, warmup: int,
              on_step: Callable[[], None] | None = None) -> dict[str, Any]:
    import torch

    from cffaudit.augment import build_augment
    from cffaudit.data import make_synthetic
    from cffaudit.diagnostics import EpochStats
    from cffaudit.train.run import Runtime, build_model
    from cffaudit.train.seeds import generator
    from cffaudit.train.stage1 import LossSpec, Stage1Step, make_optimizer

    rt = Runtime.from_config(cfg.override({"device": device.type})).prepare_process()
    B, S = cfg.stage1.batch_size, ensemble
    x, y = make_synthetic(B * 4, num_classes=10, seed=1)
    x, y = x.to(device), y.to(device)
    augment = build_augment("cifar", dataset="cifar10")
    model = build_model(cfg, range(S), device)
    s1 = cfg.stage1
    opt = make_optimizer(model.parameters(), lr=s1.lr, betas=(s1.beta1, s1.beta2), weight_decay=s1.weight_decay,
                         device=device)
    spec = LossSpec.from_config(cfg)
    step_fn = Stage1Step(model, opt, spec, order=rt.step_order, autocast=rt.autocast(), compile=rt.compile)
    stats = EpochStats(model.depth, S, device)  # the epoch diagnostics are part of a real step
    gens = [generator(k, device) for k in range(S)]
    order = torch.Generator().manual_seed(0)

    # Every step's image indices, on the device before timing starts (the training loop
    # likewise moves an epoch's permutations once, not a copy per step).
    n_batches = steps + warmup
    idx_all = torch.stack([torch.stack([torch.randperm(len(x), generator=order)[:B] for _ in range(S)])
                           for _ in range(n_batches)]).to(device)  # (steps, S, B)

    def batch(i: int):
        idx = idx_all[i % n_batches]
        imgs = x[idx]  # (S, B, 3, 32, 32)
        views = torch.stack([torch.cat([augment(imgs[k], gens[k]), augment(imgs[k], gens[k])]) for k in range(S)])
        labels = y[idx]
        return views, torch.cat([labels, labels], dim=1)

    clock = _Clock(device)
    marks = []
    for step in range(n_batches):
        if step == warmup:
            marks.append(clock.mark())
        step_fn(*batch(step), stats)
        if step >= warmup:
            marks.append(clock.mark())
        if on_step:
            on_step()
    times = clock.intervals(marks)
    # Augmentation alone, timed separately so that the steps above run as in training.
    aug = [clock.mark()]
    for i in range(steps):
        batch(i)
        aug.append(clock.mark())
    aug_times = clock.intervals(aug)
    out = _rate(times, 2 * B * S)
    out.update(ensemble=S, precision=rt.precision, compile=rt.compile, step_order=rt.step_order,
               cpu_allocator=rt.cpu_allocator,
               augment_s_per_step=sum(aug_times) / len(aug_times))
    return out


def _rate(times: list[float], views_per_step: int) -> dict[str, Any]:
    mean = sum(times) / len(times)
    return {"views_per_s": views_per_step / mean, "s_per_step": mean, "n_steps": len(times),
            "min_s_per_step": min(times), "max_s_per_step": max(times), "views_per_step": views_per_step}


def _where_time_goes(cfg: RunConfig, device: torch.device, warmup: int) -> list[dict[str, Any]]:
    """Top operators of one cffaudit step after warm-up (so compilation is not counted)."""
    from torch.profiler import ProfilerActivity, profile, schedule

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    warmup = max(warmup, 1)  # the profiler's own warm-up step is the last untimed one
    with profile(activities=acts, schedule=schedule(wait=warmup - 1, warmup=1, active=1, repeat=1)) as prof:
        _cffaudit(cfg, device, 1, steps=1, warmup=warmup, on_step=prof.step)
    events = [e for e in prof.key_averages() if not e.key.startswith("ProfilerStep")]  # the step's own range
    # On a GPU the kernels' own time is what a step waits for; on a CPU, operator self time.
    clock = "device" if device.type == "cuda" else "cpu"
    if clock == "device":
        from torch.autograd import DeviceType

        # The kernels themselves: each kernel's time also appears in its launching aten
        # op's device total, and user annotations (a compiled region) span whole steps.
        events = [e for e in events if getattr(e, "device_type", None) == DeviceType.CUDA
                  and not getattr(e, "is_user_annotation", False)]
    self_time = (lambda e: e.self_device_time_total) if clock == "device" else (lambda e: e.self_cpu_time_total)
    rows = sorted(events, key=self_time, reverse=True)[:8]
    total = sum(self_time(e) for e in events) or 1
    return [{"op": e.key, "self_share": round(self_time(e) / total, 3), "clock": clock, "calls": e.count}
            for e in rows]


def run_benchmark(*, device: str = "auto", config: str = "paper", steps: int = 5, warmup: int = 2,
                  seeds: int = 8, workers: int = 4, baseline: bool = True, profile: bool = True) -> dict[str, Any]:
    """Measure (a) baseline, (b) solo and (c) `seeds` seeds; return the JSON record."""
    from cffaudit.provenance import environment
    from cffaudit.train.run import resolve_device

    if config not in BENCH_CONFIGS:
        raise ValueError(f"config: {config!r} is not one of {sorted(BENCH_CONFIGS)}")
    if steps < 1 or warmup < 0 or seeds < 1:
        raise ValueError("steps must be >= 1, warmup >= 0 and seeds >= 1")
    dev = resolve_device(device)
    cfg = RunConfig().override({**BENCH_CONFIGS[config], "device": dev.type})
    m = cfg.model
    rec: dict[str, Any] = {"config": config, "model": {"embed_dim": m.embed_dim, "depth": m.depth,
                           "heads": m.heads, "patch_size": m.patch_size}, "batch_images": cfg.stage1.batch_size,
                           "steps": steps, "warmup": warmup, "date": time.strftime("%Y-%m-%d")}
    if baseline:
        rec["baseline"] = _baseline(cfg, dev, steps, warmup, workers)
        rec["baseline"]["dataloader_workers"] = workers
        rec["baseline"]["augment"] = _baseline_augment_cost()
        rec["baseline_views_per_s"] = rec["baseline"]["views_per_s"]
    solo = _cffaudit(cfg, dev, 1, steps, warmup)
    rec["solo"] = solo
    rec["views_per_s"] = solo["views_per_s"]
    if baseline:
        rec["speedup"] = solo["views_per_s"] / rec["baseline_views_per_s"]
        if solo["cpu_allocator"] == "retain" and rec["baseline"]["cpu_allocator"] == "system":
            # (a') The process now keeps freed memory (cffaudit.train.memory), so a second
            # baseline run shows how much of the speedup is the allocator, not the structure.
            again = _baseline(cfg, dev, steps, warmup, workers)
            rec["baseline_retained_memory"] = again
            rec["speedup_over_baseline_retained_memory"] = solo["views_per_s"] / again["views_per_s"]
    if seeds > 1:
        multi = _cffaudit(cfg, dev, seeds, steps, warmup)
        rec["multi_seed"] = multi
        rec["multi_seed_views_per_s"] = multi["views_per_s"]
        # time per seed with S together, relative to a solo run (target on H100: <= 1/3)
        rec["multi_seed_time_per_seed_ratio"] = (multi["s_per_step"] / seeds) / solo["s_per_step"]
    flops_view = stage1_flops_per_view(m.embed_dim, m.depth, m.patch_size, batch_views=2 * cfg.stage1.batch_size)
    best = rec.get("multi_seed", solo)
    rec["flops_per_view"] = flops_view
    rec["achieved_flops_per_s"] = {"solo": flops_view * solo["views_per_s"],
                                   "best": flops_view * best["views_per_s"]}
    env = environment(dev)
    name = env.get("device_name", "")
    peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    prec = solo["precision"]
    rec["peak_flops_per_s"] = peak[prec] if peak else None
    rec["fraction_of_peak"] = (rec["achieved_flops_per_s"]["best"] / peak[prec]) if peak else None
    # Projection of a full paper-protocol run (600 + 50 epochs on 45k images) from the
    # measured solo rate. Stage 2 with an augmented view per probe epoch is a forward
    # pass per image, about a third of a training step per view.
    s1 = PAPER_EPOCHS[0] * PAPER_TRAIN_IMAGES * 2 / solo["views_per_s"]
    s2 = PAPER_EPOCHS[1] * PAPER_TRAIN_IMAGES / (3 * solo["views_per_s"])
    rec["projected_paper_run_s"] = {"stage1": s1, "stage2": s2, "total": s1 + s2,
                                    "per_seed_in_ensemble": (s1 + s2) * rec.get("multi_seed_time_per_seed_ratio", 1.0)}
    if profile:
        rec["where_time_goes"] = _where_time_goes(cfg, dev, warmup)
    rec["env"] = env
    return rec


def format_summary(rec: dict[str, Any]) -> str:
    """The record of `run_benchmark` as the lines `cffaudit bench` prints."""
    env = rec["env"]
    lines = [f"cffaudit bench: config {rec['config']} {rec['model']}, batch {rec['batch_images']} images "
             f"(x2 views), n = {rec['steps']} timed steps after {rec['warmup']} warm-up",
             f"device {env.get('device_name')} ({env.get('device')}), torch {env.get('torch')}, "
             f"cffaudit {env.get('version')} {env.get('git_revision') or ''}"]
    if "baseline" in rec:
        aug = rec["baseline"]["augment"]
        lo, hi = aug["original_us_per_view"]
        lines.append(f"  (a) original, re-impl. : {rec['baseline_views_per_s']:10.1f} views/s "
                     f"(augmentation {aug['us_per_view']:.0f} us a view on one thread; the original's "
                     f"{lo:.0f}-{hi:.0f} us)")
    if "baseline_retained_memory" in rec:
        lines.append(f"  (a') same, memory kept : {rec['baseline_retained_memory']['views_per_s']:10.1f} views/s "
                     f"(the CPU allocator setting alone; cffaudit x{rec['speedup_over_baseline_retained_memory']:.2f})")
    s = rec["solo"]
    lines.append(f"  (b) cffaudit, 1 seed   : {s['views_per_s']:10.1f} views/s "
                 f"[{s['precision']}, compile={s['compile']}, {s['step_order']}]"
                 + (f"  speedup x{rec['speedup']:.2f}" if "speedup" in rec else ""))
    if "multi_seed" in rec:
        ms = rec["multi_seed"]
        lines.append(f"  (c) cffaudit, {ms['ensemble']} seeds  : {ms['views_per_s']:10.1f} views/s; time per seed "
                     f"= {rec['multi_seed_time_per_seed_ratio']:.2f} x solo")
    if rec.get("fraction_of_peak") is not None:
        lines.append(f"  achieved {rec['achieved_flops_per_s']['best'] / 1e12:.1f} TFLOP/s, "
                     f"{100 * rec['fraction_of_peak']:.1f}% of peak")
    proj = rec["projected_paper_run_s"]
    lines.append(f"  projected paper-protocol run (600+50 epochs, 45k images): {proj['total'] / 60:.1f} min solo, "
                 f"{proj['per_seed_in_ensemble'] / 60:.1f} min per seed in an ensemble")
    if rec.get("where_time_goes"):
        rows = rec["where_time_goes"]
        top = ", ".join(f"{r['op']} {100 * r['self_share']:.0f}%" for r in rows[:5])
        lines.append(f"  where the time goes ({rows[0]['clock'].upper()} self time, 1 step): {top}")
    return "\n".join(lines)

