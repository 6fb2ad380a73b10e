"""Augmentation presets of SPEC.md, batched on the device, driven by an explicit generator."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cffaudit.augment import kernels as K
from cffaudit.data.sources import DEFAULT_NORMALIZATION, SOURCES, normalization_stats

OUTPUT_SIZE = 32

# (mean, std) of each dataset under the default ``data.normalization`` (the original CFF
# code's constants); every constant and its source is in the dataset registry,
# ``cffaudit.data.sources``.
NORMALISATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    name: (normalization_stats(name).mean, normalization_stats(name).std) for name in SOURCES
}


@dataclass(frozen=True)
class PresetSpec:
    """What a preset does; zero or None disables a step.

    Steps run in this order: to 3 channels, resize to 32, crop (zero padding) and flip,
    rotation, colour jitter (brightness, contrast, saturation, hue in that fixed order),
    normalisation, random erasing. Erasing comes after normalisation, as in the usual
    torchvision pipelines (it works on tensors), so the erased box is the mean colour.
    """

    crop_padding: int = 0
    flip: bool = False
    rotation: float = 0.0  # degrees, uniform in [-rotation, rotation]
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0  # turns, uniform in [-hue, hue], at most 0.5
    erasing_p: float = 0.0
    erasing_scale: tuple[float, float] = (0.1, 0.3)
    erasing_ratio: tuple[float, float] = (0.3, 3.3)


PRESETS: dict[str, PresetSpec] = {
    "cifar": PresetSpec(crop_padding=12, flip=True),
    "svhn_easy": PresetSpec(crop_padding=12, flip=True),
    "svhn_medium": PresetSpec(crop_padding=4, rotation=10.0, brightness=0.2, contrast=0.2, saturation=0.2),
    "svhn_hard": PresetSpec(crop_padding=6, flip=True, rotation=15.0, brightness=0.4, contrast=0.4,
                            saturation=0.4, hue=0.1, erasing_p=0.5),
    "fashion_mnist": PresetSpec(crop_padding=4, flip=True),
    "none": PresetSpec(),
}

# torchvision's RandomErasing tries this many boxes before giving up on an image.
_ERASING_ATTEMPTS = 10


def _uniform(n: int, low: float, high: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=device)


class Augment:
    """One augmentation preset with its dataset's normalisation, applied to whole batches.

    Call it on a uint8 batch with a generator to get one independent random view per
    image; call it again with the same generator for a second view (the draws advance the
    generator). ``eval`` is the deterministic counterpart for validation and testing.
    Every call draws the same number of random values for a given batch size, whatever
    the image content, so a generator's stream is reproducible.
    """

    def __init__(self, preset: str, spec: PresetSpec, mean: tuple[float, ...], std: tuple[float, ...]):
        self.preset = preset
        self.spec = spec
        self.mean = mean
        self.std = std
        self.output_shape = (3, OUTPUT_SIZE, OUTPUT_SIZE)
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return f"Augment(preset={self.preset!r}, mean={self.mean}, std={self.std}, spec={self.spec})"

    def _mean_std(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Cached per device so a call does not copy the constants to the GPU every step.
        if device not in self._stats:
            self._stats[device] = (torch.tensor(self.mean, device=device), torch.tensor(self.std, device=device))
        return self._stats[device]

    @staticmethod
    def _check(x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] not in (1, 3):
            desc = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected a uint8 batch (B, 1 or 3, H, W), got {desc}")
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"x: expected square images, got {tuple(x.shape[-2:])}")

    def _to_rgb32(self, x: torch.Tensor) -> torch.Tensor:
        """3 channels at 32x32: uint8 when no resize is needed, else float in [0, 255]."""
        x = K.to_rgb(x)
        if x.shape[-1] != OUTPUT_SIZE:
            x = K.resize_bilinear(x.float(), OUTPUT_SIZE)
        return x

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic view: to 3 channels, resize to 32x32 if needed, normalise.

        Args:
            x: uint8 (B, C, H, W) on any device.
        Returns:
            float32 (B, 3, 32, 32) on x's device.
        """
        self._check(x)
        mean, std = self._mean_std(x.device)
        return K.normalise(self._to_rgb32(x).float() / 255.0, mean, std)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random view of every image, all randomness drawn from ``generator``.

        Args:
            x: uint8 (B, C, H, W) on any device, C = 1 or 3.
            generator: a ``torch.Generator`` on x's device; it is advanced.
        Returns:
            float32 (B, 3, 32, 32), normalised, on x's device.
        """
        self._check(x)
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
        if generator.device.type != x.device.type:
            raise ValueError(
                f"generator: is on {generator.device} but x is on {x.device}; create it with "
                f"torch.Generator(device=x.device) so draws stay on the batch's device"
            )
        s, g, dev, B = self.spec, generator, x.device, x.shape[0]
        img = self._to_rgb32(x)  # (B, 3, 32, 32)

        if s.crop_padding or s.flip:
            span = 2 * s.crop_padding + 1  # offsets 0..2p into the padded image
            top = torch.randint(0, span, (B,), generator=g, device=dev)
            left = torch.randint(0, span, (B,), generator=g, device=dev)
            flip = torch.rand(B, generator=g, device=dev) < 0.5 if s.flip else torch.zeros(B, dtype=torch.bool, device=dev)
            img = K.crop_flip(img, top, left, flip, padding=s.crop_padding, size=OUTPUT_SIZE)
        img = img.float() / 255.0

        if s.rotation:
            img = K.rotate(img, _uniform(B, -s.rotation, s.rotation, g, dev))
        # Colour jitter in a fixed order (torchvision draws a random order per image). A
        # per-image order in a batch would cost either four times the work (every op on
        # every image, selected by mask) or host syncs to group images by order; the
        # distribution of factors is the same either way.
        if s.brightness:
            img = K.adjust_brightness(img, _uniform(B, max(0.0, 1 - s.brightness), 1 + s.brightness, g, dev))
        if s.contrast:
            img = K.adjust_contrast(img, _uniform(B, max(0.0, 1 - s.contrast), 1 + s.contrast, g, dev))
        if s.saturation:
            img = K.adjust_saturation(img, _uniform(B, max(0.0, 1 - s.saturation), 1 + s.saturation, g, dev))
        if s.hue:
            img = K.adjust_hue(img, _uniform(B, -s.hue, s.hue, g, dev))

        mean, std = self._mean_std(dev)
        img = K.normalise(img, mean, std)
        if s.erasing_p:
            img = self._random_erasing(img, g)
        return img

    def _random_erasing(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """torchvision's RandomErasing (value 0), with all attempts drawn at once.

        Each image draws ``_ERASING_ATTEMPTS`` candidate boxes (area fraction uniform in
        ``scale``, log aspect ratio uniform in ``log(ratio)``) and erases the first that
        fits strictly inside the image, as torchvision's sequential loop does.
        """
        s, dev = self.spec, img.device
        B, _, H, W = img.shape
        n = (B, _ERASING_ATTEMPTS)
        apply = torch.rand(B, generator=g, device=dev) < s.erasing_p
        area = H * W * (s.erasing_scale[0] + (s.erasing_scale[1] - s.erasing_scale[0]) * torch.rand(n, generator=g, device=dev))
        lo, hi = math.log(s.erasing_ratio[0]), math.log(s.erasing_ratio[1])
        aspect = torch.exp(lo + (hi - lo) * torch.rand(n, generator=g, device=dev))
        h = torch.round(torch.sqrt(area * aspect)).long()  # (B, attempts)
        w = torch.round(torch.sqrt(area / aspect)).long()
        fits = (h < H) & (w < W)
        first = fits.int().argmax(1, keepdim=True)  # index of the first fitting attempt (0 if none)
        h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
        apply = apply & fits.any(1)
        # Position uniform over the valid top-left corners, like randint(0, H - h + 1).
        u = torch.rand(2, B, generator=g, device=dev)
        top = torch.floor(u[0] * (H - h + 1)).long().clamp_max(H - h)
        left = torch.floor(u[1] * (W - w + 1)).long().clamp_max(W - w)
        return K.erase(img, top, left, h, w, apply, value=0.0)


def build_augment(preset: str, *, dataset: str, normalization: str = DEFAULT_NORMALIZATION) -> Augment:
    """Build an augmentation preset with the normalisation statistics of ``dataset``.

    Args:
        preset: one of ``cifar``, ``svhn_easy``, ``svhn_medium``, ``svhn_hard``,
            ``fashion_mnist``, ``none``.
        dataset: a name of the dataset registry (``cffaudit.data.sources``); with
            ``normalization`` it picks the per-channel mean and std.
        normalization: ``original`` (the original CFF code's constants, the default) or
            ``dataset`` (the dataset's own training-set statistics).

    Raises:
        ValueError: unknown preset, dataset or normalization (the message lists the choices).
    """
    if preset not in PRESETS:
        raise ValueError(f"preset: unknown augmentation preset {preset!r}; choose one of {', '.join(PRESETS)}")
    stats = normalization_stats(dataset, normalization)
    return Augment(preset, PRESETS[preset], stats.mean, stats.std)
