"""A procedurally generated, learnable, class-conditional 32x32 RGB dataset.

Each class is a smooth random colour field plus an oriented grating (its "prototype").
A sample is its class prototype, circularly shifted by a few pixels, scaled in
brightness, mixed with a random smooth nuisance field and Gaussian pixel noise. Raw pixels
separate the classes well, but pooled colour statistics (what the token mean of an
untrained ViT sees) do not, so a CFF run beats an untrained encoder only if its layers
learn texture and layout: the data tells a working pipeline from a broken one.

Everything is drawn from explicit ``torch.Generator`` streams: the prototypes from one
seed, the samples of each split from another, so the dataset is a fixed object (like a
real one) and its test split never shares a draw with its training split.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IMAGE_SIZE = 32
# Seeds of the fixed synthetic dataset. Distinct constants so that the prototypes and the
# two splits are independent streams; changing them changes the dataset.
PROTOTYPE_SEED = 20_240_601
TRAIN_SEED = 1
TEST_SEED = 2
_MAX_SHIFT = 4  # pixels; circular shift per sample
_CHUNK = 4096  # samples generated per step, bounds peak memory for large datasets
# Amplitudes of the per-sample nuisance field and pixel noise (the prototype spans ~0.35).
NUISANCE = 0.15  # tuned so that CFF on a tiny ViT learns it clearly (tests/train)
NOISE = 0.1


def _smooth_field(n: int, coarse: int, generator: torch.Generator) -> torch.Tensor:
    """Random smooth RGB fields in [-1, 1]: coarse noise upsampled bilinearly."""
    field = torch.rand(n, 3, coarse, coarse, generator=generator) * 2 - 1  # (n, 3, c, c)
    return F.interpolate(field, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=True)


def class_prototypes(num_classes: int, *, seed: int = PROTOTYPE_SEED) -> torch.Tensor:
    """The float prototype image of every class, shape (K, 3, 32, 32), values about [0, 1].

    Args:
        num_classes: number of classes K (>= 2).
        seed: seed of the prototype stream.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes: must be >= 2, got {num_classes}")
    g = torch.Generator().manual_seed(seed)
    colour = _smooth_field(num_classes, 4, g)  # (K, 3, 32, 32)
    # An oriented grating per class gives each class a texture as well as a colour layout.
    angle = torch.rand(num_classes, generator=g) * math.pi
    freq = 1.0 + torch.rand(num_classes, generator=g) * 3.0  # cycles per image
    phase = torch.rand(num_classes, generator=g) * 2 * math.pi
    tint = torch.rand(num_classes, 3, generator=g) * 2 - 1
    coords = torch.linspace(0, 1, IMAGE_SIZE)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (32, 32)
    proj = xx[None] * torch.cos(angle)[:, None, None] + yy[None] * torch.sin(angle)[:, None, None]
    grating = torch.sin(2 * math.pi * freq[:, None, None] * proj + phase[:, None, None])  # (K, 32, 32)
    pattern = 0.6 * colour + 0.4 * grating[:, None] * tint[:, :, None, None]
    return 0.5 + 0.35 * pattern


def make_synthetic(
    n: int, *, num_classes: int = 10, seed: int = TRAIN_SEED, prototype_seed: int = PROTOTYPE_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``n`` labelled synthetic images.

    Labels cycle through the classes in a seeded random order, so every class has
    ``n // K`` or ``n // K + 1`` samples.

    Args:
        n: number of images (>= 1).
        num_classes: number of classes (>= 2).
        seed: seed of the per-sample stream (use different seeds for different splits).
        prototype_seed: seed of the class prototypes (the same for all splits).

    Returns:
        ``(x, y)``: uint8 images (n, 3, 32, 32) and int64 labels (n,).
    """
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    protos = class_prototypes(num_classes, seed=prototype_seed)  # (K, 3, 32, 32)
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    xs = []
    for start in range(0, n, _CHUNK):
        yc = y[start : start + _CHUNK]
        m = yc.numel()
        img = protos[yc]  # (m, 3, 32, 32)
        # Per-sample circular shift, done as a gather so a chunk needs no Python loop.
        dy = torch.randint(-_MAX_SHIFT, _MAX_SHIFT + 1, (m,), generator=g)
        dx = torch.randint(-_MAX_SHIFT, _MAX_SHIFT + 1, (m,), generator=g)
        ar = torch.arange(IMAGE_SIZE)
        rows = (ar[None] - dy[:, None]) % IMAGE_SIZE  # (m, 32)
        cols = (ar[None] - dx[:, None]) % IMAGE_SIZE  # (m, 32)
        img = img[torch.arange(m)[:, None, None, None], torch.arange(3)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]
        brightness = 0.75 + 0.5 * torch.rand(m, 1, 1, 1, generator=g)
        nuisance = _smooth_field(m, 6, g)
        noise = torch.randn(m, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)
        img = (img - 0.5) * brightness + 0.5 + NUISANCE * nuisance + NOISE * noise
        xs.append((img.clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.cat(xs), y.to(torch.int64)
