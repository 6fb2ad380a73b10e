import math

import pytest
import torch
import torch.nn.functional as F

from cffaudit.loss import MARGIN_VARIANTS, get_margin_variant, supcon_loss


def reference_loss(z, labels, margin, variant, temperature):
    """Plain double loop over anchors and (anchor, positive) pairs, in Python floats
    via torch scalars, written from the paper's Eqs. (4)-(9) without vectorisation."""
    n = z.shape[0]
    total, anchors = 0.0, 0
    for i in range(n):
        sims = []
        for k in range(n):
            s = torch.dot(z[i], z[k])
            if variant == "clamp" and k != i and labels[k] == labels[i]:
                s = torch.ones_like(s) if s + margin >= 1 else s + margin
            sims.append(s / temperature)
        row_max = max(sims[k] for k in range(n))
        denom = sum(torch.exp(sims[k] - row_max) for k in range(n) if k != i)
        positives = [j for j in range(n) if j != i and labels[j] == labels[i]]
        if not positives:
            continue
        acc = 0.0
        for j in positives:
            lp = sims[j] - row_max - torch.log(denom)
            if variant == "subtract":
                lp = lp - margin / temperature
            acc = acc + lp
        total = total - acc / len(positives)
        anchors += 1
    return total / max(anchors, 1)


def make_batch(n=12, d=8, classes=3, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=-1)
    labels = torch.randint(0, classes, (n,), generator=g)
    return z, labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("variant", ["clamp", "subtract", "none"])
@pytest.mark.parametrize("stability", ["detach", "direct"])
@pytest.mark.parametrize("margin", [0.1, 0.4, 0.9])
def test_vectorised_loss_equals_loop_reference(dtype, variant, stability, margin):
    z, labels = make_batch(dtype=dtype, seed=int(margin * 10))
    # Pull some positives close so that clamping saturates for part of the pairs.
    z[1] = F.normalize(z[0] + 0.05 * z[1], dim=0)
    labels[1] = labels[0]
    out = supcon_loss(z, labels, margin=margin, variant=variant, stability=stability, temperature=0.15)
    ref = reference_loss(z, labels, margin, variant, 0.15)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert out.loss.dtype == dtype
    assert torch.allclose(out.loss, torch.as_tensor(ref, dtype=dtype), rtol=tol, atol=tol)


@pytest.mark.parametrize("variant", ["clamp", "subtract", "none"])
def test_gradients_match_loop_reference(variant):
    z0, labels = make_batch(n=10, dtype=torch.float64, seed=3)
    z0[2] = F.normalize(z0[3] + 0.02 * z0[2], dim=0)
    labels[2] = labels[3]
    z1 = z0.clone().requires_grad_(True)
    z2 = z0.clone().requires_grad_(True)
    supcon_loss(z1, labels, margin=0.4, variant=variant).loss.backward()
    reference_loss(z2, labels, 0.4, variant, 0.15).backward()
    assert torch.allclose(z1.grad, z2.grad, atol=1e-10)


def test_subtract_gradient_equals_no_margin_gradient():
    """Proposition 4.1: post-log-probability subtraction is gradient-neutral."""
    x, labels = make_batch(n=16, d=6, classes=3, dtype=torch.float64, seed=5)
    grads = {}
    for variant in ("subtract", "none"):
        xv = x.clone().requires_grad_(True)
        out = supcon_loss(F.normalize(xv, dim=-1), labels, margin=0.4, variant=variant)
        out.loss.backward()
        grads[variant] = xv.grad
    assert torch.allclose(grads["subtract"], grads["none"], atol=1e-12)
    # The value itself differs by the constant m / tau.
    l_sub = supcon_loss(x, labels, margin=0.4, variant="subtract").loss
    l_none = supcon_loss(x, labels, margin=0.4, variant="none").loss
    assert math.isclose(float(l_sub - l_none), 0.4 / 0.15, rel_tol=1e-12)


def test_clamp_saturated_pair_has_zero_own_logit_gradient():
    # Two views of class 0 nearly identical (s ~ 1 so s + m >= 1), one of class 1.
    sim = torch.tensor([[1.0, 0.95, 0.1], [0.95, 1.0, 0.2], [0.1, 0.2, 1.0]], dtype=torch.float64, requires_grad=True)
    pos = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    out = get_margin_variant("clamp").similarities(sim, pos, 0.4)
    out[0, 1].backward()
    assert sim.grad[0, 1] == 0.0
    sim.grad = None
    # An unsaturated positive passes its gradient.
    out = get_margin_variant("clamp").similarities(sim, pos, 0.01)
    out[0, 1].backward()
    assert sim.grad[0, 1] == 1.0


def test_detach_and_direct_agree():
    x, labels = make_batch(n=20, d=8, classes=4, dtype=torch.float32, seed=7)
    res = {}
    for stability in ("detach", "direct"):
        xv = x.clone().requires_grad_(True)
        out = supcon_loss(F.normalize(xv, dim=-1), labels, margin=0.4, variant="clamp", stability=stability)
        out.loss.backward()
        res[stability] = (out.loss.detach(), xv.grad)
    assert torch.equal(res["detach"][0], res["direct"][0])  # forward values identical
    assert torch.allclose(res["detach"][1], res["direct"][1], atol=1e-6)


def test_car_counts_saturated_positive_pairs():
    z = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.2, 1.0]]), dim=-1)
    labels = torch.tensor([0, 0, 1, 1])
    # s(0,1) ~ 0.995, s(2,3) ~ 0.98: with m = 0.01 only pair (0,1) saturates (both orders).
    for variant in MARGIN_VARIANTS:
        out = supcon_loss(z, labels, margin=0.01, variant=variant)
        assert out.pos_pairs.item() == 4
        assert out.car.item() == pytest.approx(0.5)


def test_anchors_without_positives_are_masked_and_counted():
    z, _ = make_batch(n=6, seed=2)
    labels = torch.tensor([0, 0, 1, 2, 3, 4])
    out = supcon_loss(z, labels, margin=0.4)
    assert out.anchors_without_positives.item() == 4
    assert torch.isfinite(out.loss)
    ref = reference_loss(z, labels, 0.4, "clamp", 0.15)
    assert torch.allclose(out.loss, torch.as_tensor(ref, dtype=torch.float32), atol=1e-5)
    # No positives at all: zero loss, NaN CAR, nothing silently wrong.
    out = supcon_loss(z, torch.arange(6), margin=0.4)
    assert out.loss.item() == 0.0 and out.pos_pairs.item() == 0 and math.isnan(out.car.item())


def test_batched_seeds_equal_separate_calls():
    zs, ls = zip(*(make_batch(n=10, seed=s) for s in range(3)))
    z, labels = torch.stack(zs), torch.stack(ls)
    out = supcon_loss(z, labels, margin=0.3, variant="clamp")
    for k in range(3):
        solo = supcon_loss(zs[k], ls[k], margin=0.3, variant="clamp")
        assert torch.allclose(out.loss[k], solo.loss)
        assert out.car[k] == solo.car


def test_bad_arguments_are_named():
    z, labels = make_batch()
    with pytest.raises(ValueError, match="margin: unknown variant"):
        supcon_loss(z, labels, margin=0.4, variant="hinge")
    with pytest.raises(ValueError, match="stability"):
        supcon_loss(z, labels, margin=0.4, stability="maybe")
