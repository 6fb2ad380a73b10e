"""Augmentation kernels against naive per-image references, for given parameters."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cffaudit.augment import kernels as K


def naive_crop_flip(img: torch.Tensor, top: int, left: int, flip: bool, padding: int, size: int) -> torch.Tensor:
    """One image: zero pad, slice, mirror; written as plainly as possible."""
    c, h, w = img.shape
    padded = torch.zeros(c, h + 2 * padding, w + 2 * padding, dtype=img.dtype)
    padded[:, padding:padding + h, padding:padding + w] = img
    out = padded[:, top:top + size, left:left + size]
    return out.flip(-1) if flip else out


@pytest.mark.parametrize("padding", [0, 4, 12])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_crop_flip_equals_per_image_reference(padding, dtype):
    g = torch.Generator().manual_seed(padding)
    x = torch.randint(0, 256, (16, 3, 32, 32), generator=g).to(dtype)
    top = torch.randint(0, 2 * padding + 1, (16,), generator=g)
    left = torch.randint(0, 2 * padding + 1, (16,), generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    top[0], left[0], flip[0] = 0, 2 * padding, True  # extremes are covered
    top[1], left[1], flip[1] = 2 * padding, 0, False
    got = K.crop_flip(x, top, left, flip, padding=padding, size=32)
    assert got.dtype == dtype and got.shape == (16, 3, 32, 32)
    for i in range(16):
        ref = naive_crop_flip(x[i], int(top[i]), int(left[i]), bool(flip[i]), padding, 32)
        assert torch.equal(got[i], ref), i


def test_crop_at_centre_without_flip_is_identity():
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    p = torch.full((4,), 12)
    assert torch.equal(K.crop_flip(x, p, p, torch.zeros(4, dtype=torch.bool), padding=12, size=32), x)


def test_rotation_by_zero_is_identity_and_by_90_is_rot90():
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(K.rotate(x, torch.zeros(3)), x)
    # Counter-clockwise, like torchvision.transforms.functional.rotate and np.rot90.
    assert torch.allclose(K.rotate(x, torch.full((3,), 90.0)), torch.rot90(x, 1, (-2, -1)))
    assert torch.allclose(K.rotate(x, torch.full((3,), -90.0)), torch.rot90(x, -1, (-2, -1)))


def test_rotation_is_per_sample():
    x = torch.rand(1, 3, 32, 32).expand(2, -1, -1, -1).contiguous()
    out = K.rotate(x, torch.tensor([0.0, 90.0]))
    assert torch.equal(out[0], x[0]) and torch.allclose(out[1], torch.rot90(x[1], 1, (-2, -1)))


def test_rotation_fills_corners_with_zero():
    out = K.rotate(torch.ones(1, 3, 32, 32), torch.tensor([45.0]))
    assert out[0, :, 0, 0].eq(0).all() and out[0, :, 16, 16].eq(1).all()


def _luma(img: np.ndarray) -> np.ndarray:
    return 0.2989 * img[0] + 0.587 * img[1] + 0.114 * img[2]


def test_brightness_contrast_saturation_match_reference_formulas():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 8, 8, generator=g, dtype=torch.float64)
    f = torch.tensor([0.0, 0.6, 1.0, 1.4, 2.0], dtype=torch.float64)
    bright, contrast, sat = K.adjust_brightness(x.clone(), f), K.adjust_contrast(x.clone(), f), K.adjust_saturation(x.clone(), f)
    for i in range(5):
        img, fi = x[i].numpy(), f[i].item()
        np.testing.assert_allclose(bright[i].numpy(), np.clip(img * fi, 0, 1))
        np.testing.assert_allclose(contrast[i].numpy(), np.clip(fi * img + (1 - fi) * _luma(img).mean(), 0, 1))
        np.testing.assert_allclose(sat[i].numpy(), np.clip(fi * img + (1 - fi) * _luma(img)[None], 0, 1))


def test_hsv_round_trip_and_hue_shift_match_colorsys():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 6, 6, generator=g, dtype=torch.float64)
    x[0, :, 0, 0] = 0.5  # a grey pixel: hue undefined, must stay grey
    x[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])
    hsv = K.rgb_to_hsv(x)
    assert torch.allclose(K.hsv_to_rgb(hsv), x, atol=1e-12)
    shift = torch.tensor([0.1, -0.1, 0.5, -0.37], dtype=torch.float64)
    out = K.adjust_hue(x, shift)
    for i in range(4):
        for r in range(6):
            for c in range(6):
                h, s, v = colorsys.rgb_to_hsv(*x[i, :, r, c].tolist())
                assert hsv[i, :, r, c].tolist() == pytest.approx([h, s, v], abs=1e-12)
                expected = colorsys.hsv_to_rgb((h + shift[i].item()) % 1.0, s, v)
                assert out[i, :, r, c].tolist() == pytest.approx(list(expected), abs=1e-9)


def test_erase_equals_per_image_reference():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 3, 32, 32, generator=g)
    top, left = torch.tensor([0, 5, 20, 3, 0, 9]), torch.tensor([0, 7, 1, 30, 9, 9])
    h, w = torch.tensor([5, 10, 12, 2, 31, 0]), torch.tensor([4, 3, 31, 2, 3, 5])
    apply = torch.tensor([True, True, True, False, True, True])
    got = K.erase(x, top, left, h, w, apply, value=0.0)
    for i in range(6):
        ref = x[i].clone()
        if apply[i]:
            ref[:, top[i]:top[i] + h[i], left[i]:left[i] + w[i]] = 0.0
        assert torch.equal(got[i], ref), i


def test_to_rgb_and_resize():
    grey = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    rgb = K.to_rgb(grey)
    assert rgb.shape == (2, 3, 28, 28) and torch.equal(rgb[:, 0], rgb[:, 2])
    up = K.resize_bilinear(rgb.float(), 32)
    assert up.shape == (2, 3, 32, 32)
    assert torch.allclose(up, F.interpolate(grey.float(), size=(32, 32), mode="bilinear").expand(-1, 3, -1, -1))
