"""The dataset registry: complete entries, normalisation constants with their sources."""

from __future__ import annotations

import pytest

from cffaudit import config
from cffaudit.augment import PRESETS, build_augment
from cffaudit.data import readers
from cffaudit.data.sources import DATASETS, NORMALIZATIONS, SOURCES, normalization_stats


@pytest.mark.parametrize("name", DATASETS)
def test_every_entry_is_complete(name):
    src = SOURCES[name]
    assert src.name == name
    assert src.augment in PRESETS
    for choice in NORMALIZATIONS:
        stats = getattr(src.normalization, choice)
        assert len(stats.mean) == len(stats.std) == 3 and min(stats.std) > 0 and stats.source
    if src.generated:
        assert not src.files and src.num_classes is None
    else:
        assert callable(getattr(readers, src.reader.function)) and src.files and src.num_classes >= 2


def test_config_choices_follow_the_registries():
    assert config.DATASETS == DATASETS == ("cifar10", "cifar100", "svhn", "fashion_mnist", "synthetic")
    assert config.NORMALIZATIONS == NORMALIZATIONS == ("original", "dataset")
    assert config.AUGMENT_PRESETS == ("auto", *PRESETS)
    assert config.RunConfig().data.normalization == "original"
    assert {n: config.resolve_augment(n, "auto") for n in DATASETS} == {
        "cifar10": "cifar", "cifar100": "cifar", "svhn": "svhn_easy", "fashion_mnist": "fashion_mnist",
        "synthetic": "cifar"}


# The original CFF code (github HosseinAghagol/ContrastiveFF, utils.py, set_loaders) normalises
# CIFAR-10 and CIFAR-100 alike with these; it has no SVHN or Fashion-MNIST branch.
ORIGINAL_CIFAR = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
EXPECTED = {
    ("cifar10", "original"): ORIGINAL_CIFAR,
    ("cifar100", "original"): ORIGINAL_CIFAR,
    ("synthetic", "original"): ORIGINAL_CIFAR,
    # Each dataset's own training-set statistics (cffaudit's normalisation before protocol 2).
    ("cifar10", "dataset"): ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ("cifar100", "dataset"): ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    ("synthetic", "dataset"): ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ("svhn", "original"): ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    ("svhn", "dataset"): ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    ("fashion_mnist", "original"): ((0.2860,) * 3, (0.3530,) * 3),
    ("fashion_mnist", "dataset"): ((0.2860,) * 3, (0.3530,) * 3),
}


@pytest.mark.parametrize(("dataset", "choice"), list(EXPECTED))
def test_normalisation_constants(dataset, choice):
    stats = normalization_stats(dataset, choice)
    assert (stats.mean, stats.std) == EXPECTED[dataset, choice]
    aug = build_augment("none", dataset=dataset, normalization=choice)
    assert (aug.mean, aug.std) == EXPECTED[dataset, choice]


def test_the_default_is_the_original_code():
    assert normalization_stats("cifar100") == normalization_stats("cifar10", "original")
    aug = build_augment("cifar", dataset="cifar100")
    assert (aug.mean, aug.std) == ORIGINAL_CIFAR


def test_unknown_normalisation_is_named():
    with pytest.raises(ValueError, match=r"normalization: 'imagenet' is not one of \['original', 'dataset'\]"):
        build_augment("cifar", dataset="cifar10", normalization="imagenet")
    with pytest.raises(ValueError, match=r"data.normalization: 'own' is not one of \['original', 'dataset'\]"):
        config.RunConfig().override({"data.normalization": "own"})


def test_a_run_normalises_as_its_config_says(tiny_config, tmp_path, monkeypatch):
    import cffaudit.augment
    from cffaudit.train.run import train_run

    seen = []

    def record(preset, **kwargs):
        seen.append(kwargs)
        raise RuntimeError("stop after building the augmentation")

    monkeypatch.setattr(cffaudit.augment, "build_augment", record)
    for choice in NORMALIZATIONS:
        result = train_run(tiny_config.override({"data.normalization": choice}), tmp_path / choice)
        assert "stop after building" in result["error"]
    assert seen == [{"dataset": "synthetic", "normalization": c} for c in NORMALIZATIONS]
