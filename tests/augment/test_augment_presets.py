"""Presets: shapes, determinism per generator, independence per image and per view."""

from __future__ import annotations

import pytest
import torch

from cffaudit.augment import NORMALISATION, PRESETS, build_augment
from cffaudit.augment import kernels as K

RANDOM_PRESETS = [p for p in PRESETS if p != "none"]


def batch(n: int = 32, channels: int = 3, side: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, side, side), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


def same_image(n: int = 32, channels: int = 3, side: int = 32) -> torch.Tensor:
    return batch(1, channels, side).expand(n, -1, -1, -1).contiguous()


def gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("shape", [(3, 32), (1, 28), (1, 32), (3, 28)])
def test_every_preset_gives_normalised_float_32x32x3(preset, shape):
    channels, side = shape
    aug = build_augment(preset, dataset="fashion_mnist" if channels == 1 else "cifar10")
    x = batch(8, channels, side)
    for out in (aug(x, gen(0)), aug.eval(x)):
        assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("preset", list(PRESETS))
def test_deterministic_per_generator_seed(preset):
    aug = build_augment(preset, dataset="svhn")
    x = batch()
    torch.manual_seed(123)
    a = aug(x, gen(7))
    torch.manual_seed(456)  # global RNG state must not matter
    b = aug(x, gen(7))
    assert torch.equal(a, b)
    if preset != "none":
        assert not torch.equal(a, aug(x, gen(8)))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_global_rng_is_untouched(preset):
    aug = build_augment(preset, dataset="cifar10")
    state = torch.get_rng_state()
    aug(batch(), gen(0))
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("preset", RANDOM_PRESETS)
def test_each_image_gets_its_own_draw(preset):
    aug = build_augment(preset, dataset="cifar10")
    out = aug(same_image(32), gen(0))
    distinct = {o.numpy().tobytes() for o in out}
    # 32 copies of one image: independent draws give (almost) all distinct outputs.
    assert len(distinct) >= 24, len(distinct)


@pytest.mark.parametrize("preset", RANDOM_PRESETS)
def test_two_successive_views_differ(preset):
    aug = build_augment(preset, dataset="cifar10")
    g = gen(3)
    x = batch()
    v1, v2 = aug(x, g), aug(x, g)
    differs = (v1 != v2).flatten(1).any(1)
    assert differs.float().mean() > 0.9


def test_none_preset_is_eval():
    aug = build_augment("none", dataset="cifar100")
    x = batch()
    assert torch.equal(aug(x, gen(0)), aug.eval(x))


def test_eval_is_to_float_and_normalise():
    aug = build_augment("cifar", dataset="cifar10")
    x = batch(4)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALISATION["cifar10"])
    assert torch.allclose(aug.eval(x), (x.float() / 255 - mean) / std)
    grey = batch(4, 1, 28)
    fm = build_augment("fashion_mnist", dataset="fashion_mnist")
    expected = (K.resize_bilinear(grey.float(), 32) / 255 - 0.2860) / 0.3530
    assert torch.allclose(fm.eval(grey), expected.expand(-1, 3, -1, -1), atol=1e-6)


def test_cifar_preset_is_a_padded_crop_and_flip_of_the_input():
    # Every output must equal the reference crop/flip for one of the (25 x 25 x 2) choices,
    # and the choices must spread over the whole range.
    aug = build_augment("cifar", dataset="cifar10")
    x = batch(64, seed=5)
    out = aug(x, gen(11))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALISATION["cifar10"])
    pixels = torch.round((out * std + mean) * 255).to(torch.uint8)
    padded = torch.nn.functional.pad(x, (12, 12, 12, 12))
    tops, lefts, flips = [], [], []
    for i in range(64):
        windows = padded[i].unfold(1, 32, 1).unfold(2, 32, 1)  # (3, 25, 25, 32, 32)
        hits = [(t, l, f) for f in (False, True) for t in range(25) for l in range(25)
                if torch.equal(windows[:, t, l].flip(-1) if f else windows[:, t, l], pixels[i])]
        assert hits, i
        t, l, f = hits[0]
        tops.append(t), lefts.append(l), flips.append(f)
    assert min(tops) <= 3 and max(tops) >= 21 and min(lefts) <= 3 and max(lefts) >= 21
    assert 0.25 < sum(flips) / 64 < 0.75


def test_svhn_hard_erases_about_half_the_images_with_boxes_of_the_right_size():
    aug = build_augment("svhn_hard", dataset="svhn")
    # Erasing writes exact zeros after normalisation; nothing else does on a uniform image
    # (the zero padding and rotation fill normalise to -mean/std, not 0).
    x = torch.full((2000, 3, 32, 32), 10, dtype=torch.uint8)
    out = aug(x, gen(1))
    zero_frac = (out == 0).all(1).flatten(1).float().mean(1)  # per image
    erased = zero_frac > 0
    assert 0.45 < erased.float().mean() < 0.55
    assert zero_frac[erased].min() >= 0.08 and zero_frac[erased].max() <= 0.32


def test_medium_and_hard_change_colours_per_image():
    for preset in ("svhn_medium", "svhn_hard"):
        aug = build_augment(preset, dataset="svhn")
        out = aug(same_image(64), gen(0))
        centre_means = out[:, :, 12:20, 12:20].mean((2, 3))  # (64, 3), away from crop borders
        assert centre_means.std(0).min() > 0.05


def test_input_validation():
    aug = build_augment("cifar", dataset="cifar10")
    with pytest.raises(ValueError, match="uint8"):
        aug(torch.zeros(2, 3, 32, 32), gen(0))
    with pytest.raises(ValueError, match="uint8"):
        aug.eval(torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="torch.Generator"):
        aug(batch(2), 0)
    with pytest.raises(ValueError, match="choose one of cifar, svhn_easy"):
        build_augment("autoaugment", dataset="cifar10")
    with pytest.raises(ValueError, match="normalisation"):
        build_augment("cifar", dataset="imagenet")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_itself_and_stays_on_device():
    for preset in PRESETS:
        aug = build_augment(preset, dataset="cifar10")
        x = batch(64).cuda()
        a, b = aug(x, gen(0, "cuda")), aug(x, gen(0, "cuda"))
        assert a.device.type == "cuda" and torch.equal(a, b)
        with pytest.raises(ValueError, match="generator"):
            aug(x, gen(0))
