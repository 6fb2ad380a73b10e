"""Where a run computes: device, precision, compilation, step order, CPU allocator.

Resolved once from the config (``auto`` settings become concrete choices for this
machine) and stored in every result and checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from cffaudit.config import RunConfig
from cffaudit.train.memory import retain_freed_memory


def resolve_device(name: str) -> torch.device:
    """The torch device for a config's ``device`` ("auto", "cpu", "cuda", "cuda:1", ...).

    Raises:
        ValueError: CUDA was asked for and torch sees no CUDA device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was requested but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


@dataclass(frozen=True)
class Runtime:
    """Device-dependent choices, resolved once and stored in the result."""

    device: torch.device
    precision: str
    compile: bool
    step_order: str
    cpu_allocator: str = "system"

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "Runtime":
        """The concrete choices for `cfg` on this machine."""
        device = resolve_device(cfg.device)
        gpu = device.type == "cuda"
        # bf16 only where the GPU has it natively (Ampere and later); emulated bf16 on
        # a V100 would be slower than float32.
        native_bf16 = gpu and torch.cuda.is_bf16_supported(including_emulation=False)
        precision = cfg.perf.precision if cfg.perf.precision != "auto" else ("bf16" if native_bf16 else "fp32")
        compile_ = {"auto": gpu, "on": True, "off": False}[cfg.perf.compile]
        # Measured at the paper configuration on a 2-core CPU (2026-11-22, freed memory
        # retained): 5.5 s per step per-block vs 6.2-6.7 s fused, 6.5 s fused and compiled
        # (the per-block order frees each block's activations early). On a GPU one
        # backward means fewer, larger launches and one compiled graph.
        # A non-local locality sends gradients across blocks: one backward of the sum.
        order = cfg.stage1.step_order if cfg.stage1.step_order != "auto" else (
            "fused" if gpu or compile_ or cfg.stage1.locality != "local" else "per_block")
        allocator = cfg.perf.cpu_allocator if device.type == "cpu" else "system"
        return cls(device, precision, compile_ and order == "fused", order, allocator)

    def prepare_process(self) -> "Runtime":
        """Apply the process-wide settings; the runtime as it is in effect."""
        if self.cpu_allocator == "retain" and not retain_freed_memory():
            return dataclasses.replace(self, cpu_allocator="system")  # not glibc: nothing to do
        return self

    def autocast(self) -> Callable[[], contextlib.AbstractContextManager] | None:
        """A factory of the forward's autocast context, or None in float32."""
        if self.precision == "fp32":
            return None
        return lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form stored in results and checkpoints."""
        return {"device": str(self.device), "precision": self.precision, "compile": self.compile,
                "step_order": self.step_order, "cpu_allocator": self.cpu_allocator}
