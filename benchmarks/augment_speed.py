"""Throughput of each augmentation preset (images/s), one random view per call.

Usage: python benchmarks/augment_speed.py [--batch 512] [--repeats 20] [--device cpu|cuda|all]

Warm-up calls are excluded; on CUDA the timing uses device events. Reports torch version,
device, thread count, batch size and the median and spread over ``repeats`` calls.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from cffaudit.augment import PRESETS, build_augment

DATASET_OF = {"cifar": "cifar10", "svhn_easy": "svhn", "svhn_medium": "svhn", "svhn_hard": "svhn",
              "fashion_mnist": "fashion_mnist", "none": "cifar10"}


def time_preset(preset: str, device: torch.device, batch: int, repeats: int) -> list[float]:
    """Seconds per call of ``preset`` on a uint8 batch, ``repeats`` timed calls."""
    grey = preset == "fashion_mnist"
    x = torch.randint(0, 256, (batch, 1 if grey else 3, 28 if grey else 32, 28 if grey else 32),
                      dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).to(device)
    aug = build_augment(preset, dataset=DATASET_OF[preset])
    g = torch.Generator(device=device).manual_seed(0)
    for _ in range(3):  # warm-up: allocator, kernels, caches
        aug(x, g)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            aug(x, g)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            aug(x, g)
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    args = parser.parse_args()
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    print(f"torch {torch.__version__}, python {platform.python_version()}, {platform.processor() or platform.machine()}, "
          f"torch threads {torch.get_num_threads()}, batch {args.batch}, n={args.repeats} timed calls per preset")
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        print(f"\ndevice: {name}")
        print(f"{'preset':<14} {'images/s (median)':>18} {'ms/call median':>15} {'min..max ms':>16}")
        for preset in PRESETS:
            t = time_preset(preset, device, args.batch, args.repeats)
            med = statistics.median(t)
            print(f"{preset:<14} {args.batch / med:>18,.0f} {med * 1e3:>15.2f} {min(t) * 1e3:>7.2f}..{max(t) * 1e3:<7.2f}")


if __name__ == "__main__":
    main()
