"""Measure kornia's functional kernels against cffaudit's augmentation kernels.

The decision it informs (see `cffaudit/augment/kernels.py`): cffaudit samples every
parameter from an explicit generator itself; the question is only whether kornia's
functional kernels (which take per-sample parameters) are faster for 32x32 batches.
Needs `pip install kornia` (not a dependency of cffaudit).

    python benchmarks/kornia_vs_kernels.py [--device cpu|cuda] [--batch 512]
"""

from __future__ import annotations

import argparse
import time

import torch

from cffaudit.augment import kernels


def timed(fn, reps: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def main() -> None:
    import kornia

    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--reps", type=int, default=10)
    a = p.parse_args()
    g = torch.Generator(device=a.device).manual_seed(0)
    x = torch.rand(a.batch, 3, 32, 32, generator=g, device=a.device)
    deg = (torch.rand(a.batch, generator=g, device=a.device) * 2 - 1) * 15
    f = 0.6 + 0.8 * torch.rand(a.batch, generator=g, device=a.device)
    hue = (torch.rand(a.batch, generator=g, device=a.device) * 2 - 1) * 0.1
    pairs = {
        "rotate": (lambda: kernels.rotate(x, deg),
                   lambda: kornia.geometry.transform.rotate(x, deg, mode="nearest")),
        "contrast": (lambda: kernels.adjust_contrast(x, f), lambda: kornia.enhance.adjust_contrast(x, f)),
        "saturation": (lambda: kernels.adjust_saturation(x, f), lambda: kornia.enhance.adjust_saturation(x, f)),
        "hue": (lambda: kernels.adjust_hue(x, hue), lambda: kornia.enhance.adjust_hue(x, hue * 2 * torch.pi)),
    }
    print(f"device {a.device}, batch {a.batch}, torch {torch.__version__}, kornia {kornia.__version__}, "
          f"n = {a.reps} calls after one warm-up")
    for name, (ours, theirs) in pairs.items():
        t_ours, t_k = timed(ours, a.reps), timed(theirs, a.reps)
        print(f"  {name:10s} cffaudit {1e3 * t_ours:7.2f} ms   kornia {1e3 * t_k:7.2f} ms   ratio {t_k / t_ours:5.2f}")


if __name__ == "__main__":
    main()
