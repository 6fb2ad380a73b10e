"""Margin-schedule shapes (the original CFF code's, with its shape parameter k)."""

from __future__ import annotations

import numpy as np
import pytest

from cffaudit.config import RunConfig
from cffaudit.loss import MARGIN_SHAPES, layer_margins

M0, ML, L = 0.4, 0.05, 8


def expected(shape: str, k: float, m0: float = M0, mL: float = ML, L: int = L) -> np.ndarray:
    """The issue's formulas, written out independently of cffaudit.loss.margins."""
    l = np.arange(L, dtype=np.float64)
    if shape == "linear":
        return m0 + (mL - m0) * l / (L - 1)
    if shape == "parabolic":
        t = (m0 - mL) ** (1 / (2 * k))
        return np.abs(l / ((L - 1) / t) - t) ** (2 * k) + mL
    if shape == "cosine":
        return (m0 - mL) / 2 * (np.cos(np.pi * l**k / (L - 1) ** k) + 1) + mL
    if shape == "exponential":
        return m0 * (mL / m0) ** ((l / (L - 1)) ** k)
    raise AssertionError(shape)


@pytest.mark.parametrize("k", [1.0, 0.5, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("shape", list(MARGIN_SHAPES))
def test_each_shape_follows_its_formula(shape, k):
    got = layer_margins("standard", L, m0=M0, mL=ML, shape=shape, k=k)
    assert len(got) == L
    np.testing.assert_allclose(got, expected(shape, k), rtol=0, atol=1e-12)
    # Every shape starts at m0 and ends at mL.
    assert got[0] == pytest.approx(M0, abs=1e-12) and got[-1] == pytest.approx(ML, abs=1e-12)


def test_shapes_at_k_1_by_hand():
    # k = 1: parabolic is (m0 - mL)(1 - x)^2 + mL, cosine a half cosine, exponential geometric.
    x = np.arange(L) / (L - 1)
    np.testing.assert_allclose(layer_margins("standard", L, m0=M0, mL=ML, shape="parabolic"),
                               0.35 * (1 - x) ** 2 + 0.05, atol=1e-12)
    cos = layer_margins("standard", L, m0=M0, mL=ML, shape="cosine")
    assert cos[1] == pytest.approx(0.175 * (np.cos(np.pi / 7) + 1) + 0.05, abs=1e-12)
    exp = layer_margins("standard", L, m0=M0, mL=ML, shape="exponential")
    np.testing.assert_allclose(np.array(exp[1:]) / np.array(exp[:-1]), (ML / M0) ** (1 / 7), atol=1e-12)


def test_linear_is_unchanged_and_ignores_k():
    assert layer_margins("standard", L) == layer_margins("standard", L, shape="linear", k=3.0)
    # The arithmetic of the release before shapes: same floats, bit for bit.
    assert layer_margins("standard", L) == [0.4 + (0.1 - 0.4) * l / (L - 1) for l in range(L)]
    assert RunConfig().margins() == layer_margins("standard", 8)


def test_parabolic_with_k_one_half_is_linear():
    np.testing.assert_allclose(layer_margins("standard", L, m0=M0, mL=ML, shape="parabolic", k=0.5),
                               expected("linear", 1.0), atol=1e-12)


def test_parabolic_also_runs_upwards():
    # mL > m0: the original's t = (m0 - mL)^(1/(2k)) would be undefined; (m0 - mL)|1 - x|^(2k) + mL is not.
    got = layer_margins("standard", 5, m0=0.1, mL=0.3, shape="parabolic", k=1.5)
    x = np.arange(5) / 4
    np.testing.assert_allclose(got, -0.2 * (1 - x) ** 3 + 0.3, atol=1e-12)
    assert got[0] == pytest.approx(0.1) and got[-1] == pytest.approx(0.3)


@pytest.mark.parametrize("shape", list(MARGIN_SHAPES))
def test_one_block_gets_m0(shape):
    assert layer_margins("standard", 1, m0=M0, mL=ML, shape=shape, k=2.0) == [M0]


@pytest.mark.parametrize("k", [0, 0.0, -1.0, float("nan"), float("inf")])
def test_k_must_be_positive(k):
    with pytest.raises(ValueError, match=r"loss.margin_k: the shape parameter k must be a finite number > 0"):
        layer_margins("standard", L, shape="cosine", k=k)


def test_bad_shapes_and_end_points_are_named():
    with pytest.raises(ValueError, match=r"loss.margin_shape: unknown shape 'cubic'; choose one of \['linear', "
                                         r"'parabolic', 'cosine', 'exponential'\]"):
        layer_margins("standard", L, shape="cubic")
    with pytest.raises(ValueError, match="exponential needs m0 > 0"):
        layer_margins("standard", L, m0=0.0, shape="exponential")
    # An exponential down to mL = 0 is defined: m0 at block 0, then 0.
    assert layer_margins("standard", 3, m0=0.4, mL=0.0, shape="exponential") == [0.4, 0.0, 0.0]


def test_config_resolves_the_shaped_margins():
    cfg = RunConfig().override({"loss.margin_shape": "cosine", "loss.margin_k": 2.0, "loss.mL": ML})
    want = expected("cosine", 2.0, m0=0.4, mL=ML)
    np.testing.assert_allclose(cfg.margins(), want, atol=1e-12)
    stored = cfg.resolved()["loss"]  # what result.json holds under config.loss
    np.testing.assert_allclose(stored["margins"], want, atol=1e-12)
    assert stored["margin_shape"] == "cosine" and stored["margin_k"] == 2.0
    assert RunConfig.from_dict(cfg.resolved()).margins() == cfg.margins()  # a stored config round-trips
    for updates, message in [({"loss.margin_k": 0.0}, "loss.margin_k: must be > 0"),
                             ({"loss.margin_shape": "steep"}, "loss.margin_shape: 'steep' is not one of"),
                             ({"loss.margin_shape": "exponential", "loss.m0": 0.0}, "exponential needs m0 > 0")]:
        with pytest.raises(ValueError, match=message):
            RunConfig().override(updates)
