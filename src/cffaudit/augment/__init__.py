"""Batched, per-sample augmentation driven by explicit generators.

``build_augment(preset, dataset=...)`` returns an :class:`Augment`; calling it with a
``torch.Generator`` gives one random view per image, ``.eval`` the deterministic view.
"""

from cffaudit.augment.presets import NORMALISATION, OUTPUT_SIZE, PRESETS, Augment, PresetSpec, build_augment

__all__ = ["NORMALISATION", "OUTPUT_SIZE", "PRESETS", "Augment", "PresetSpec", "build_augment"]
