"""The margin-variant registry and the margin schedules: one source, torch-free, truthful."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from cffaudit import config
from cffaudit.experiments import identity
from cffaudit.loss import MARGIN_SCHEDULES, MARGIN_VARIANTS, STABILITIES, layer_margins, supcon_loss
from cffaudit.loss.variants import MarginVariant, gradient_neutral_margins


def test_registry_modules_and_their_readers_import_no_torch():
    code = (
        "import sys\n"
        "import cffaudit.loss.variants, cffaudit.loss.margins, cffaudit.data.sources\n"
        "import cffaudit.config, cffaudit.experiments.identity\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_config_and_identity_read_their_names_from_the_registry():
    assert config.MARGINS == tuple(MARGIN_VARIANTS) == ("clamp", "subtract", "none")
    assert config.STABILITIES == STABILITIES
    assert config.MARGIN_SCHEDULES is MARGIN_SCHEDULES
    assert identity.GRADIENT_NEUTRAL_MARGINS == gradient_neutral_margins() == ("subtract", "none")
    for name, cls in MARGIN_VARIANTS.items():
        assert issubclass(cls, MarginVariant) and cls.name == name and isinstance(cls.gradient_neutral, bool)


def _gradient(variant: str, margin: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(24, 6, dtype=torch.float64, generator=g)
    x[1] = x[0] + 0.01 * x[1]  # a positive pair that saturates at the larger margin
    labels = torch.randint(0, 3, (24,), generator=g)
    labels[1] = labels[0]
    x.requires_grad_(True)
    supcon_loss(F.normalize(x, dim=-1), labels, margin=margin, variant=variant).loss.backward()
    return x.grad


@pytest.mark.parametrize("name", list(MARGIN_VARIANTS))
def test_gradient_neutral_flag_says_whether_the_gradient_depends_on_the_margin(name):
    # The run identity trusts this flag to merge runs whose schedules differ.
    same = torch.allclose(_gradient(name, 0.1), _gradient(name, 0.45), atol=1e-12)
    assert same == MARGIN_VARIANTS[name].gradient_neutral


def test_layer_margins_are_linear_from_m0_to_mL():
    assert layer_margins("standard", 4) == pytest.approx([0.4, 0.3, 0.2, 0.1])
    assert layer_margins("low", 3) == pytest.approx([0.2, 0.15, 0.1])
    assert layer_margins("standard", 3, m0=0.5, mL=0.0) == pytest.approx([0.5, 0.25, 0.0])
    assert layer_margins("standard", 1) == [0.4]
    assert config.RunConfig().margins() == layer_margins("standard", 8)


def test_unknown_schedule_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown schedule 'steep'; choose one of \['low', 'standard'\]"):
        layer_margins("steep", 8)
