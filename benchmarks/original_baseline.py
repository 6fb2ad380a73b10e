"""Interleaved measurement of `cffaudit bench`'s original-code re-implementation against cffaudit.

Each repeat is a fresh process running `cffaudit bench --seeds 1`, which measures in turn
(a) the re-implemented original with the system allocator, (b) cffaudit with one seed,
(a') the re-implementation again with cffaudit's CPU allocator setting. Repeating the
process interleaves them (a, b, a', a, b, a', ...), so load from other users of a shared
machine falls on all of them alike; the record keeps every repeat, the medians and the
machine load (`uptime`) before and after each repeat.

The real original code (github HosseinAghagol/ContrastiveFF) is not run here: it needs
torchvision, which does not import beside this project's torch. Its figures, measured
outside this repository, go into the record with `--original-json` (a JSON object with
at least `views_per_s`, `how`); without it the record says the real code was not run.

    python benchmarks/original_baseline.py --repeats 3 --steps 4 --warmup 2 \
        --out benchmarks/results/DATE-cpu-2core-original-baseline.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _one_repeat(config: str, steps: int, warmup: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "cffaudit", "bench", "--device", "cpu", "--config", config, "--seeds", "1",
               "--steps", str(steps), "--warmup", str(warmup), "--workers", str(workers), "--no-profile",
               "--json", str(out)]
        before = _uptime()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        after = _uptime()
        rec = json.loads(out.read_text())
    row = {"uptime_before": before, "uptime_after": after,
           "a_reimplementation_views_per_s": rec["baseline_views_per_s"],
           "b_cffaudit_1_seed_views_per_s": rec["views_per_s"],
           "augment_us_per_view": rec["baseline"]["augment"]["us_per_view"],
           "a_s_per_step": [rec["baseline"]["min_s_per_step"], rec["baseline"]["max_s_per_step"]],
           "b_s_per_step": [rec["solo"]["min_s_per_step"], rec["solo"]["max_s_per_step"]],
           "env": rec["env"], "allocators": {"a": rec["baseline"]["cpu_allocator"],
                                             "b": rec["solo"]["cpu_allocator"]}}
    if "baseline_retained_memory" in rec:
        row["a_prime_reimplementation_memory_kept_views_per_s"] = rec["baseline_retained_memory"]["views_per_s"]
    return row


def _record(rows: list[dict], args: argparse.Namespace) -> dict:
    keys = [key for key in rows[0] if key.endswith("_per_s") or key.endswith("per_view")]
    medians = {key: statistics.median(r[key] for r in rows if key in r) for key in keys}
    b = medians["b_cffaudit_1_seed_views_per_s"]
    record = {
        "what": "cffaudit bench's re-implementation of the original CFF code (a, a') against cffaudit with "
                "one seed (b), interleaved in fresh processes; medians over repeats",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "config": args.config, "n_timed_steps_per_measurement": args.steps, "warmup_steps": args.warmup,
        "repeats": len(rows), "repeats_planned": args.repeats, "dataloader_workers": args.workers,
        "cpu_count": os.cpu_count(), "env": rows[0]["env"], "medians": medians,
        "speedup_b_over_a": b / medians["a_reimplementation_views_per_s"],
        "repeats_detail": [{k: v for k, v in r.items() if k != "env"} for r in rows],
    }
    if "a_prime_reimplementation_memory_kept_views_per_s" in medians:
        record["speedup_b_over_a_prime"] = b / medians["a_prime_reimplementation_memory_kept_views_per_s"]
    record["real_original"] = (json.loads(args.original_json.read_text()) if args.original_json else
                               {"measured_here": False, "why": "not given (--original-json)"})
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="paper")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--original-json", type=Path, default=None,
                   help="figures of the real original code, measured elsewhere (see the module docstring)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")

    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for k in range(args.repeats):
        rows.append(_one_repeat(args.config, args.steps, args.warmup, args.workers))
        print(f"repeat {k + 1}/{args.repeats}: " + ", ".join(f"{key} {val:.1f}" for key, val in rows[-1].items()
                                                             if key.endswith("_per_s") or key.endswith("per_view")),
              flush=True)
        # Rewritten after every repeat: on a shared machine a slow run stopped early keeps
        # the repeats it finished (the record says how many of those planned).
        args.out.write_text(json.dumps(_record(rows, args), indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
