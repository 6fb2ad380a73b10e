"""Batched augmentation kernels with explicit per-sample parameters.

Each kernel takes a batch (B, C, H, W) and per-sample parameter tensors of leading size
B, and does no random sampling itself; :mod:`cffaudit.augment.presets` samples the
parameters from an explicit ``torch.Generator``. Keeping the two apart makes each kernel
testable against a naive per-image reference for given parameters.

Why our own kernels rather than kornia: kornia's augmentation modules sample their
parameters from the global RNG, so a seed would not fix the stream independently of
whatever else runs; its functional kernels take per-sample parameters and would fit, so
they were measured (benchmarks/kornia_vs_kernels.py, kornia 0.9.0, 2-core CPU, batch
512, 2026-11-22, machine under load): rotation and saturation here took half kornia's
time, kornia's hue about 0.55x ours, and kornia's contrast is a plain multiply rather
than torchvision's blend with the mean grey, so it would change the preset. Mixed speed
and one semantic mismatch do not pay for a dependency; the kernels below are a few lines
of ``torch`` each and run wherever the batch lives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ITU-R 601 luma weights, the ones torchvision's rgb_to_grayscale uses.
_LUMA = (0.2989, 0.587, 0.114)


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Grey (B, 1, H, W) to RGB (B, 3, H, W) by repeating the channel; RGB passes through."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def resize_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of a float batch to size x size (half-pixel centres, as torchvision).

    Used only to upsample (Fashion-MNIST 28 -> 32), where antialiasing has no effect.
    """
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def crop_flip(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
              *, padding: int, size: int) -> torch.Tensor:
    """Zero-pad by ``padding``, crop size x size at (top, left), mirror where ``flip``.

    The whole batch is padded once and each output pixel gathered from its per-sample
    source row and column, so there is no loop over images. Flipping after cropping
    (torchvision's RandomCrop then RandomHorizontalFlip) is a reversed column index.

    Args:
        x: (B, C, H, W), any dtype.
        top, left: (B,) int64 offsets into the padded image, in [0, H + 2p - size].
        flip: (B,) bool.
    Returns:
        (B, C, size, size), dtype of ``x``.
    """
    B, C = x.shape[:2]
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x  # (B, C, H+2p, W+2p)
    ar = torch.arange(size, device=x.device)
    rows = top[:, None] + ar  # (B, size)
    cols = left[:, None] + torch.where(flip[:, None], size - 1 - ar, ar)  # (B, size)
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, size, size)


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image about its centre, counter-clockwise by ``degrees`` (B,).

    Matches torchvision's RandomRotation defaults: nearest-neighbour sampling, same
    output size, zero fill.
    """
    a = degrees.to(x.dtype) * (math.pi / 180)
    cos, sin = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(a)
    # affine_grid maps each output location to the input location it samples, in
    # normalised (x right, y down) coordinates; a counter-clockwise turn on screen
    # samples the input at the clockwise-rotated position.
    theta = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma of an RGB float batch, (B, 1, H, W)."""
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale towards black: ``x * factor``, clamped to [0, 1] (torchvision semantics)."""
    return (x * _per_sample(factor)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean luma (one scalar per image), clamped to [0, 1]."""
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    f = _per_sample(factor)
    return (f * x + (1 - f) * mean).clamp_(0, 1)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the image's own greyscale version, clamped to [0, 1]."""
    f = _per_sample(factor)
    return (f * x + (1 - f) * grayscale(x)).clamp_(0, 1)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB (B, 3, H, W) in [0, 1] to HSV with hue, saturation, value all in [0, 1]."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    d = torch.where(delta > 0, delta, torch.ones_like(delta))  # avoids 0/0 for greys
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, torch.remainder(h / 6.0, 1.0), torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV (B, 3, H, W) in [0, 1] to RGB.

    Uses the branch-free form: channel n (R=5, G=3, B=1) is
    ``v - v*s*clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6h) mod 6``.
    """
    h, s, v = x.unbind(1)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + 6.0 * h, 6.0)
        out.append(v - v * s * torch.minimum(k, 4.0 - k).clamp(0, 1))
    return torch.stack(out, 1)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` (B,) turns, in [-0.5, 0.5] (torchvision's HSV semantics).

    Equal to ``hsv_to_rgb`` of the shifted ``rgb_to_hsv``, fused: a hue rotation keeps
    each pixel's max and chroma (max - min), so only the hue sextant position ``h6`` in
    [0, 6) is needed, and it is shifted in place of a full HSV round trip. This is the
    most expensive colour op, and the fused form does about a third of the passes.
    """
    r, g, b = x.unbind(1)
    mx = torch.maximum(torch.maximum(r, g), b)
    chroma = mx - torch.minimum(torch.minimum(r, g), b)
    inv = 1.0 / chroma.clamp_min(1e-12)  # greys have chroma 0: their hue is irrelevant
    h6 = torch.where(mx == r, (g - b) * inv, torch.where(mx == g, 2.0 + (b - r) * inv, 4.0 + (r - g) * inv))
    h6 = h6 + 6.0 * shift.view(-1, 1, 1)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + h6, 6.0)
        out.append(mx - chroma * torch.minimum(k, 4.0 - k).clamp(0, 1))
    return torch.stack(out, 1)


def erase(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: torch.Tensor,
          width: torch.Tensor, apply: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """Fill the box [top, top+height) x [left, left+width) with ``value`` where ``apply``.

    All arguments after ``x`` are (B,) tensors; a sample with ``apply`` False (or a
    zero-sized box) is left unchanged.
    """
    H, W = x.shape[-2:]
    ys = torch.arange(H, device=x.device)[None, :]
    xs = torch.arange(W, device=x.device)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < (top + height)[:, None])  # (B, H)
    in_cols = (xs >= left[:, None]) & (xs < (left + width)[:, None])  # (B, W)
    box = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]  # (B, H, W)
    return x.masked_fill(box[:, None], value)


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Per-channel ``(x - mean) / std``; mean and std are (3,) on x's device."""
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
