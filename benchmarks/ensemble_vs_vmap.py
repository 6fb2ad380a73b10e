"""Two ways to train S seeds at once, measured: cffaudit's ensemble dimension against
`torch.func.stack_module_state` + `vmap` over S solo models.

Both evaluate the fused stage-1 objective (every layer's loss on detached inputs, summed
over layers and seeds) and its backward, on the same weights and batch, and must agree
on the loss. The issue asked to measure both where unsure; this is the record of why the
model carries the ensemble dimension itself.

    python benchmarks/ensemble_vs_vmap.py [--device cpu|cuda] [--config small|paper] [--seeds 4] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from cffaudit.loss import get_margin_variant
from cffaudit.model import CFFViT
from cffaudit.provenance import environment
from cffaudit.train.seeds import generator
from cffaudit.train.stage1 import LossSpec, layer_losses

CONFIGS = {"small": dict(embed_dim=64, depth=4, heads=4, patch_size=4, batch=256),
           "paper": dict(embed_dim=128, depth=8, heads=4, patch_size=4, batch=512)}


class Objective(nn.Module):
    """The fused stage-1 objective of a model as a module, for `functional_call`."""

    def __init__(self, model: CFFViT, spec: LossSpec) -> None:
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, views: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return layer_losses(self.model, views, labels, self.spec)[0]


def timed(fn, reps: int, device: torch.device) -> float:
    times = []
    for _ in range(reps + 1):  # the first call is warm-up
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--config", default="small", choices=sorted(CONFIGS))
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    dev, S = torch.device(a.device), a.seeds
    c = dict(CONFIGS[a.config])
    B = c.pop("batch")
    spec = LossSpec(tuple(torch.linspace(0.4, 0.1, c["depth"]).tolist()), get_margin_variant("clamp"), "detach", 0.15)
    g = torch.Generator().manual_seed(0)
    views = torch.randn(S, 2 * B, 3, 32, 32, generator=g).to(dev)
    labels = torch.randint(0, 10, (S, B), generator=g).repeat(1, 2).to(dev)

    ens = CFFViT(ensemble=S, **c)
    ens.init_weights([generator(k) for k in range(S)])
    ens_obj = Objective(ens.to(dev), spec)
    solos = []
    for k in range(S):
        m = CFFViT(ensemble=1, **c)
        m.init_weights([generator(k)])
        solos.append(Objective(m.to(dev), spec))
    params, buffers = stack_module_state(solos)  # each (S, 1, ...): seed, then the model's own S=1
    base = solos[0]

    def one_seed(p, b, v, y):  # v: (1, 2B, ...) for one seed
        return functional_call(base, (p, b), (v, y))

    batched = torch.vmap(one_seed, in_dims=(0, 0, 0, 0))

    def step_ensemble():
        ens.zero_grad(set_to_none=True)
        loss = ens_obj(views, labels)
        loss.backward()
        return loss

    def step_vmap():
        for t in params.values():
            t.grad = None
        loss = batched(params, buffers, views[:, None], labels[:, None]).sum()
        loss.backward()
        return loss

    la, lb = float(step_ensemble().detach()), float(step_vmap().detach())
    ok = abs(la - lb) <= 1e-4 * max(1.0, abs(la))
    t_ens, t_vmap = timed(step_ensemble, a.reps, dev), timed(step_vmap, a.reps, dev)
    env = environment(dev)
    print(f"config {a.config} {c}, batch {B} images x2 views, S = {S} seeds, n = {a.reps} timed calls (median)")
    print(f"device {env.get('device_name')} ({dev.type}), torch {env.get('torch')}, threads {torch.get_num_threads()}")
    print(f"loss agrees: {ok} (ensemble {la:.6f}, vmap {lb:.6f})")
    print(f"ensemble dimension : {t_ens:.3f} s per forward+backward")
    print(f"vmap over S models : {t_vmap:.3f} s  (x{t_vmap / t_ens:.2f} the ensemble's time)")


if __name__ == "__main__":
    main()
