"""The links from similarities to logits: the registry, WEINCE against its worked example
(WEINCE.md section 6) and against a plain loop over anchors, and how links combine with
the margin variants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cffaudit import config
from cffaudit.loss import LINKS, WeinceLink, WeinceParams, get_link, supcon_loss
from cffaudit.loss.links import Link, batch_pivot, gates, tail_fit, top_m_cross_entropy

# -- the worked example: one anchor, tau = 0.15, s+ = 0.8, six negatives -----------------------

TAU = 0.15
ROW = torch.tensor([[0.8, 0.1, 0.3, 0.5, 0.6, 0.7, 0.75]], dtype=torch.float64)
POS = torch.tensor([[True] + [False] * 6])
NEG = ~POS


def main_term(logits: torch.Tensor) -> float:
    return float(-logits[0, 0] + logits[0].logsumexp(dim=-1))


def test_worked_example_tail_statistics():
    fit = tail_fit(ROW, NEG, WeinceParams())
    assert int(fit.n) == 5 and bool(fit.valid)  # k = 6, the hardest negative burned
    assert float(fit.rho) == pytest.approx(0.25, abs=1e-12)
    assert float(fit.beta) == pytest.approx(0.977545, abs=1e-6)
    assert float(fit.sse_w) == pytest.approx(2.424309e-02, rel=1e-6)
    assert float(fit.gamma) == pytest.approx(-1.851557, abs=1e-6)
    assert float(fit.sse_g) == pytest.approx(6.291922e-02, rel=1e-6)
    assert float(fit.delta) == pytest.approx(4.768600, abs=1e-6)  # AIC_G - AIC_W


def test_worked_example_single_anchor_batch():
    logits, lam = WeinceLink().logits(ROW, NEG, TAU)
    assert float(lam) == pytest.approx(0.470478, abs=1e-6)
    expected = [3.581324, 0.402585, 1.226852, 2.091185, 2.549184, 3.037547, 3.299832]
    assert logits[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert main_term(logits) == pytest.approx(1.116248, abs=1e-6)
    standard, gate = get_link("standard").logits(ROW, NEG, TAU)
    assert gate is None and main_term(standard) == pytest.approx(0.983560, abs=1e-6)  # InfoNCE


def test_worked_example_hypothetical_pivot_and_fixed_lambdas():
    p = WeinceParams()
    fit = tail_fit(ROW, NEG, p)
    lam = gates(fit, torch.tensor([0.30], dtype=torch.float64), p)
    assert float(lam) == pytest.approx(0.810117, abs=1e-6)
    from cffaudit.loss.links import blend

    assert main_term(blend(ROW, lam, TAU, p.eps)) == pytest.approx(1.252929, abs=1e-6)
    for fixed, loss in [(0.0, 0.983560), (0.5, 1.126403), (1.0, 1.354443)]:
        assert main_term(blend(ROW, torch.tensor([fixed], dtype=torch.float64), TAU, p.eps)) == pytest.approx(
            loss, abs=1e-6)


def test_worked_example_auxiliary_terms():
    weibit = -4.0 * (-ROW).log1p()  # beta_t = 4.0, the EMA's start
    assert float(top_m_cross_entropy(weibit, ROW, POS, NEG, 50)) == pytest.approx(0.533174, abs=1e-6)
    assert float(top_m_cross_entropy(ROW / TAU, ROW, POS, NEG, 50)) == pytest.approx(0.983560, abs=1e-6)
    link = WeinceLink(WeinceParams(weib_weight=0.5, pl_weight=0.5))
    logits, _ = link.logits(ROW, NEG, TAU)
    total = main_term(logits) + float(link.extra_loss(ROW, POS, NEG, TAU))
    assert total == pytest.approx(1.874615, abs=1e-6)  # the released script's total
    assert WeinceLink().extra_loss(ROW, POS, NEG, TAU) is None  # off by default


# -- a plain float64 loop over anchors ---------------------------------------------------------


def _ols(x: list[float], y: list[float]) -> tuple[float, float]:
    n = len(x)
    xm, ym = sum(x) / n, sum(y) / n
    sxx = sum((a - xm) ** 2 for a in x)
    slope = sum((a - xm) * (b - ym) for a, b in zip(x, y)) / max(sxx, 1e-12)
    icpt = ym - slope * xm
    return slope, max(sum((b - icpt - slope * a) ** 2 for a, b in zip(x, y)), 1e-12)


def _gate_inputs(negs: list[float], p: WeinceParams) -> tuple[float, float] | None:
    """(rho, Delta) of one anchor from its negative similarities, or None without a fit."""
    K = len(negs)
    k = min(max(round(p.tail_frac * K), p.min_tail_points, 10), K)
    b = max(1, k // 20)
    if k - b < 2:
        return None
    shortfalls = [max(1.0 - s, p.eps) for s in sorted(negs, reverse=True)[:k]]
    x = [math.log(d) for d in shortfalls[b:]]
    plotting = [r / (k + 1) for r in range(b + 1, k + 1)]
    beta, sse_w = _ols(x, [math.log(f) for f in plotting])
    gamma, sse_g = _ols(x, [math.log(-math.log(f)) for f in plotting])
    sse_w += 1e6 if beta <= 0 else 0.0
    sse_g += 1e6 if gamma >= 0 else 0.0
    return shortfalls[0], (k - b) * math.log(sse_g / sse_w)


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def weince_loop(z, labels, margin, variant, tau, p: WeinceParams):
    """WEINCE.md section 4 written as loops: statistics in Python floats, logits as torch
    scalars so that gradients can be compared."""
    n = z.shape[0]
    sims = [[torch.dot(z[i], z[j]) for j in range(n)] for i in range(n)]
    same = [[j != i and labels[j] == labels[i] for j in range(n)] for i in range(n)]
    diff = [[labels[j] != labels[i] for j in range(n)] for i in range(n)]
    if variant == "clamp":
        sims = [[(torch.ones_like(s) if s + margin >= 1 else s + margin) if same[i][j] else s
                 for j, s in enumerate(row)] for i, row in enumerate(sims)]
    fits = [_gate_inputs([float(sims[i][j].detach()) for j in range(n) if diff[i][j]], p) for i in range(n)]
    rhos = sorted(f[0] for f in fits if f is not None)
    rho0 = rhos[round(p.q * (len(rhos) - 1))] if rhos else 1.0
    total, anchors = 0.0, 0
    for i in range(n):
        lam = 0.0
        if fits[i] is not None:
            rho, delta = fits[i]
            lam = _sigmoid(p.kappa_rho * (math.log(max(rho0, p.eps)) - math.log(max(rho, p.eps))))
            lam *= _sigmoid(p.kappa_aic * (delta - p.aic_margin))
        g = [(1 - lam) * sims[i][a] / tau - lam * torch.log(1 - torch.clamp(sims[i][a], max=1 - p.eps))
             for a in range(n)]
        log_denom = torch.log(sum(torch.exp(g[a]) for a in range(n) if a != i))
        positives = [j for j in range(n) if same[i][j]]
        if not positives:
            continue
        acc = 0.0
        hardest = sorted((a for a in range(n) if diff[i][a]), key=lambda a: -float(sims[i][a].detach()))
        for j in positives:
            lp = g[j] - log_denom
            if variant == "subtract":
                lp = lp - margin / tau
            # Auxiliary terms: -log softmax of the positive over [j | the M hardest negatives].
            for weight, top_m, logit in ((p.weib_weight, p.weib_top_m,
                                          lambda s: -p.weib_beta * torch.log(1 - torch.clamp(s, max=1 - p.eps))),
                                         (p.pl_weight, p.pl_top_m, lambda s: s / tau)):
                if weight > 0:
                    cands = [logit(sims[i][j])] + [logit(sims[i][a]) for a in hardest[:top_m]]
                    lp = lp - weight * (torch.log(sum(torch.exp(c) for c in cands)) - cands[0])
            acc = acc + lp
        total = total - acc / len(positives)
        anchors += 1
    return total / max(anchors, 1)


def make_batch(n=24, d=8, classes=3, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    labels = torch.randint(0, classes, (n,), generator=g)
    # A near-duplicate positive pair, so that clamping saturates.
    x[1] = x[0] + 0.05 * x[1]
    labels[1] = labels[0]
    return x, labels


@pytest.mark.parametrize("variant", ["clamp", "subtract", "none"])
@pytest.mark.parametrize(("seed", "params"), [(0, WeinceParams()), (1, WeinceParams()), (2, WeinceParams()),
                                              (3, WeinceParams(weib_weight=0.5, pl_weight=0.3, weib_top_m=5,
                                                               pl_top_m=7, kappa_rho=5.0, q=0.5))])
def test_weince_loss_and_gradient_equal_the_loop(variant, seed, params):
    x, labels = make_batch(seed=seed)
    p = params
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    out = supcon_loss(F.normalize(x1, dim=-1), labels, margin=0.4, variant=variant, link=WeinceLink(p))
    ref = weince_loop(F.normalize(x2, dim=-1), labels, 0.4, variant, 0.15, p)
    assert float(out.loss.detach()) == pytest.approx(float(ref.detach()), abs=1e-12)
    out.loss.backward()
    ref.backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-12)
    assert 0.0 < float(out.gate) < 1.0


def test_weince_in_float32_is_close_to_float64():
    x, labels = make_batch(seed=3)
    z = F.normalize(x, dim=-1)
    # Without clamping: a saturated positive sits at the cap 1 - eps, which float32 rounds
    # (-log(1 - s~) is 13.80 there instead of 13.82), as in the public code.
    a = supcon_loss(z.float(), labels, margin=0.4, variant="none", link="weince")
    b = supcon_loss(z, labels, margin=0.4, variant="none", link="weince")
    assert a.loss.dtype == torch.float32
    assert float(a.loss) == pytest.approx(float(b.loss), abs=1e-4)
    assert float(a.gate) == pytest.approx(float(b.gate), abs=1e-4)


def test_anchors_with_too_few_negatives_get_the_standard_logits():
    # Class 0 anchors have two negatives (no tail fit: lambda 0); class 1 anchors have six.
    x, _ = make_batch(n=8, seed=4)
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    z = F.normalize(x, dim=-1)
    sim = z @ z.T
    pos = (labels[:, None] == labels[None]) & ~torch.eye(8, dtype=torch.bool)
    neg = labels[:, None] != labels[None]
    _, lam = WeinceLink().logits(sim, neg, 0.15)
    assert torch.all(lam[:6] == 0.0) and torch.all(lam[6:] > 0.0)
    out = supcon_loss(z, labels, margin=0.4, link="weince")
    ref = weince_loop(z, labels, 0.4, "clamp", 0.15, WeinceParams())
    assert float(out.loss) == pytest.approx(float(ref), abs=1e-12)
    # A batch of one class has no negatives at all: every gate is 0, the loss is the standard one.
    same = torch.zeros(8, dtype=torch.long)
    w, s = supcon_loss(z, same, margin=0.4, link="weince"), supcon_loss(z, same, margin=0.4)
    assert float(w.gate) == 0.0 and float(w.loss) == pytest.approx(float(s.loss), abs=1e-12)


def test_subtract_stays_gradient_neutral_under_weince():
    """Proposition 4.1 under the WEINCE link: subtract's gradient is none's, bit for bit or to 1e-12."""
    x, labels = make_batch(n=20, seed=5)
    for params in (WeinceParams(), WeinceParams(weib_weight=0.5, pl_weight=0.5)):
        grads, losses = {}, {}
        for variant in ("subtract", "none"):
            xv = x.clone().requires_grad_(True)
            out = supcon_loss(F.normalize(xv, dim=-1), labels, margin=0.4, variant=variant,
                              link=WeinceLink(params))
            out.loss.backward()
            grads[variant], losses[variant] = xv.grad, float(out.loss.detach())
        assert torch.allclose(grads["subtract"], grads["none"], rtol=0, atol=1e-12)
        assert losses["subtract"] - losses["none"] == pytest.approx(0.4 / 0.15, rel=1e-12)


def test_saturated_positive_has_no_gradient_through_its_own_logit_under_weince():
    # Views 0 and 1 (one class) at s = 0.95, so s + m >= 1 with m = 0.4.
    sim = torch.tensor([[1.0, 0.95, 0.1, 0.2], [0.95, 1.0, 0.2, 0.3], [0.1, 0.2, 1.0, 0.5],
                        [0.2, 0.3, 0.5, 1.0]], dtype=torch.float64, requires_grad=True)
    pos = torch.tensor([[False, True, False, False], [True, False, False, False],
                        [False, False, False, True], [False, False, True, False]])
    neg = ~pos & ~torch.eye(4, dtype=torch.bool)
    from cffaudit.loss import get_margin_variant

    clamp = get_margin_variant("clamp")
    link = WeinceLink(WeinceParams(min_tail_points=1, tail_frac=1.0, aic_margin=-100.0))
    logits, lam = link.logits(clamp.similarities(sim, pos, 0.4), neg, 0.15)
    logits[0, 1].backward()
    assert sim.grad[0, 1] == 0.0
    sim.grad = None
    # Unsaturated (m = 0.01), the positive passes gradient through both parts of its logit.
    logits, lam = link.logits(clamp.similarities(sim, pos, 0.01), neg, 0.15)
    logits[0, 1].backward()
    assert float(sim.grad[0, 1]) == pytest.approx((1 - float(lam[0])) / 0.15 + float(lam[0]) / (1 - 0.96))


def test_gate_statistics_carry_no_gradient():
    x, labels = make_batch(seed=6)
    z = F.normalize(x.clone().requires_grad_(True), dim=-1)
    assert not supcon_loss(z, labels, margin=0.4, link="weince").gate.requires_grad


def test_batched_seeds_equal_separate_calls():
    batches = [make_batch(seed=s) for s in range(3)]
    z = torch.stack([F.normalize(x, dim=-1) for x, _ in batches])
    labels = torch.stack([y for _, y in batches])
    out = supcon_loss(z, labels, margin=0.3, link="weince")
    for k in range(3):
        solo = supcon_loss(z[k], labels[k], margin=0.3, link="weince")
        assert float(out.loss[k]) == pytest.approx(float(solo.loss), abs=1e-12)
        assert float(out.gate[k]) == pytest.approx(float(solo.gate), abs=1e-12)


def test_standard_link_is_the_default_and_has_no_gate():
    x, labels = make_batch(seed=7)
    z = F.normalize(x, dim=-1)
    a = supcon_loss(z, labels, margin=0.4)
    b = supcon_loss(z, labels, margin=0.4, link="standard")
    assert torch.equal(a.loss, b.loss) and a.gate is None and b.gate is None


def test_batch_pivot_is_the_rounded_quantile_of_the_valid_anchors():
    rho = torch.tensor([[0.5, 0.1, 0.4, 0.3, 9.0, 0.2]])
    valid = torch.tensor([[True, True, True, True, False, True]])
    # Valid sorted: 0.1 0.2 0.3 0.4 0.5; index round(0.2 * 4) = 1; round(0.5 * 4) = 2; q = 1 -> 4.
    assert float(batch_pivot(rho, valid, 0.2)) == pytest.approx(0.2)
    assert float(batch_pivot(rho, valid, 0.5)) == pytest.approx(0.3)
    assert float(batch_pivot(rho, valid, 1.0)) == pytest.approx(0.5)


def test_registry_config_and_errors():
    assert tuple(LINKS) == config.LINK_NAMES == ("standard", "weince")
    for name, cls in LINKS.items():
        assert issubclass(cls, Link) and cls.name == name
    assert isinstance(get_link("weince", WeinceParams(q=0.3)), WeinceLink)
    assert get_link("weince", WeinceParams(q=0.3)).params.q == 0.3
    with pytest.raises(ValueError, match=r"loss.link: unknown link 'probit'; choose one of \['standard', 'weince'\]"):
        get_link("probit")
    cfg = config.RunConfig().override({"loss.link": "weince", "loss.weince.kappa_rho": 5})
    assert cfg.loss.weince.kappa_rho == 5.0 and cfg.loss.weince == WeinceParams(kappa_rho=5.0)
    for key, value, message in [("q", 1.5, "a quantile in"), ("tail_frac", 0.0, "in \\(0, 1\\]"),
                                ("eps", 0.0, "in \\(0, 0.5\\)"), ("min_tail_points", 0, ">= 1"),
                                ("kappa_rho", 0.0, "> 0"), ("weib_weight", -1.0, ">= 0"),
                                ("aic_margin", float("inf"), "a finite number")]:
        with pytest.raises(ValueError, match=f"loss.weince.{key}: must be {message}"):
            config.RunConfig().override({f"loss.weince.{key}": value})


def test_links_module_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, cffaudit.loss.links\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_auxiliary_terms_stay_finite_without_negatives():
    # One class: no negatives for any anchor; the top-M terms see only the positive (loss 0).
    x, _ = make_batch(n=8, seed=8)
    xv = x.clone().requires_grad_(True)
    link = WeinceLink(WeinceParams(weib_weight=0.5, pl_weight=0.5, weib_top_m=3, pl_top_m=3))
    out = supcon_loss(F.normalize(xv, dim=-1), torch.zeros(8, dtype=torch.long), margin=0.4, link=link)
    plain = supcon_loss(F.normalize(x, dim=-1), torch.zeros(8, dtype=torch.long), margin=0.4)
    out.loss.backward()
    assert float(out.loss.detach()) == pytest.approx(float(plain.loss), abs=1e-12)
    assert torch.isfinite(xv.grad).all()
