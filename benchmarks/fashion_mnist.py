"""Real-data check: CFF on the real Fashion-MNIST, small model, on this machine's CPU.

Not a test: it prints test accuracy, time and the environment, and writes the full
result.json. Default: E=64, 4 blocks, the first 10k training images, 3 stage-1 epochs.

    python benchmarks/fashion_mnist.py [--epochs-stage1 3] [--out benchmarks/_tmp/fmnist]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cffaudit.config import RunConfig
from cffaudit.train.run import train_run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs-stage1", type=int, default=3)
    p.add_argument("--epochs-stage2", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--limit-train", type=int, default=10_000)
    p.add_argument("--margin", default="clamp")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe-augment", default="none")
    p.add_argument("--init", default=None, choices=("original", "small"),
                   help="model.init (default: the config's, original); small reproduces protocol-1 runs")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", type=Path, default=Path("benchmarks/_tmp/fmnist"))
    args = p.parse_args()
    cfg = RunConfig().override({
        "data.dataset": "fashion_mnist", "data.data_dir": args.data_dir, "data.limit_train": args.limit_train,
        "model.embed_dim": 64, "model.depth": 4, "model.heads": 4,
        "stage1.epochs": args.epochs_stage1, "stage2.epochs": args.epochs_stage2,
        "stage1.batch_size": args.batch_size,
        "stage2.probe_augment": args.probe_augment, "loss.margin": args.margin, "seed": args.seed,
        "device": "cpu",
        **({"model.init": args.init} if args.init else {}),
    })
    t0 = time.perf_counter()
    res = train_run(cfg, args.out, progress=True)
    wall = time.perf_counter() - t0
    if res["status"] != "done":
        raise SystemExit(f"run failed: {res['error']}")
    summary = {
        "test_acc": res["test_acc"], "best_val_acc": res["best_val_acc"], "wall_s": round(wall, 1),
        "stage1_s": round(res["timing"]["stage1_s"], 1), "stage2_s": round(res["timing"]["stage2_s"], 1),
        "train_images": res["data"]["train"], "epochs_stage1": args.epochs_stage1,
        "batch_size": args.batch_size, "model_init": cfg.model.init,
        "epochs_stage2": args.epochs_stage2, "probe_augment": args.probe_augment,
        "car_layer0_last_epoch": [h for h in res["history"] if h["stage"] == 1][-1]["layers"][0]["car"],
        "device": res["env"].get("device_name"), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "git": res["env"].get("git_revision"),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
