"""Per-layer training diagnostics: clamp activation rate, gradient norms, epoch records."""

from cffaudit.diagnostics.layers import EpochStats, block_grad_norms

__all__ = ["EpochStats", "block_grad_norms"]
