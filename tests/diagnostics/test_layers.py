import math

import pytest
import torch

from cffaudit.diagnostics import EpochStats, block_grad_norms
from cffaudit.loss import supcon_loss
from cffaudit.model import CFFViT
from cffaudit.train.seeds import generator


def test_block_grad_norms_are_each_seeds_own_layer_norm():
    model = CFFViT(ensemble=3, embed_dim=16, depth=2, heads=2, patch_size=8, image_size=16)
    model.init_weights([generator(s) for s in (1, 2, 3)])
    x = torch.randn(3, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    outs = model.forward_layers(x)  # detached between layers
    sum((k + 1) * (l + 1) * h.square().sum() for l, out in enumerate(outs) for k, h in enumerate(out.unbind(0))).backward()
    layer_params = [model.layer_parameters(l) for l in range(model.depth)]
    norms = block_grad_norms(layer_params, ensemble=3)
    assert norms.shape == (2, 3) and norms.dtype == torch.float32
    for l, params in enumerate(layer_params):
        for k in range(3):
            own = [p.grad[k] for p in params if p.grad is not None]
            assert norms[l, k] == pytest.approx(float(torch.nn.utils.get_total_norm(own)), rel=1e-5)
    assert len(set(norms.flatten().tolist())) == 6  # every layer and seed has its own


def test_block_grad_norms_refuses_a_layer_without_gradients():
    p = torch.nn.Parameter(torch.ones(1, 3))
    with pytest.raises(RuntimeError, match="after backward"):
        block_grad_norms([[p]], ensemble=1)


def test_epoch_stats_pool_car_over_positive_pairs_and_average_the_rest():
    stats = EpochStats(layers=1, ensemble=2, device=torch.device("cpu"))
    t = lambda *v: torch.tensor([list(v)])  # noqa: E731  (L=1, S=2)
    stats.add(loss=t(1.0, 2.0), car=t(0.5, float("nan")), pos_pairs=t(10, 0), anchors_without_pos=t(0, 4),
              grad_norms=t(3.0, 4.0))
    stats.add(loss=t(3.0, 4.0), car=t(0.0, 0.25), pos_pairs=t(30, 8), anchors_without_pos=t(1, 0),
              grad_norms=t(5.0, 6.0))
    (a,), (b,) = stats.records(val_loss=t(0.7, 0.8))
    assert a == {"layer": 0, "loss": 2.0, "car": 5 / 40, "car_batch_mean": 0.25, "pos_pairs": 40, "grad_norm": 4.0,
                 "grad_norm_last": 5.0, "anchors_without_positives": 1, "val_loss": pytest.approx(0.7),
                 "gate_mean": None}
    # A step without positive pairs (CAR NaN) adds nothing to the pooled rate.
    assert b["car"] == 2 / 8 and b["pos_pairs"] == 8 and b["anchors_without_positives"] == 4
    assert b["car_batch_mean"] == 0.25  # ... nor to the per-batch mean
    empty = EpochStats(layers=1, ensemble=1, device=torch.device("cpu")).records()
    assert math.isnan(empty[0][0]["car"]) and math.isnan(empty[0][0]["car_batch_mean"])
    assert "val_loss" not in empty[0][0]


def test_epoch_car_pooled_and_batch_mean_equal_a_direct_count_over_two_batches_of_different_sizes():
    """Two batches (6 and 16 views, two seeds, two layers) through supcon_loss in float64; the records
    equal counts of s + m >= 1 over positive pairs made by a plain loop."""
    g = torch.Generator().manual_seed(0)
    margins = (0.4, 0.1)
    batches = []
    for n, classes in ((6, 2), (16, 5)):
        # Directions near one of a few centres, so some positives saturate and some do not.
        centre = torch.randn(2, 1, 8, generator=g)
        z = torch.nn.functional.normalize(centre + 0.5 * torch.randn(2, n, 8, generator=g), dim=-1).double()
        labels = torch.randint(0, classes, (2, n), generator=g)
        batches.append((z, labels))
    stats = EpochStats(layers=2, ensemble=2, device=torch.device("cpu"))
    for z, labels in batches:
        outs = [supcon_loss(z, labels, margin=m) for m in margins]  # (S,) each; layer l uses margin l
        stack = lambda f: torch.stack([getattr(o, f) for o in outs])  # noqa: E731  (L, S)
        stats.add(stack("loss"), stack("car"), stack("pos_pairs"), stack("anchors_without_positives"))
    records = stats.records()

    for k in range(2):
        for l, m in enumerate(margins):
            sat, pos = [], []
            for z, labels in batches:
                zk, yk = z[k].tolist(), labels[k].tolist()
                n = len(yk)
                pairs = [(i, j) for i in range(n) for j in range(n) if i != j and yk[i] == yk[j]]
                pos.append(len(pairs))
                sat.append(sum(sum(a * b for a, b in zip(zk[i], zk[j])) + m >= 1 for i, j in pairs))
            rec = records[k][l]
            assert rec["pos_pairs"] == sum(pos)
            assert rec["car"] == pytest.approx(sum(sat) / sum(pos), abs=1e-12)
            assert rec["car_batch_mean"] == pytest.approx((sat[0] / pos[0] + sat[1] / pos[1]) / 2, abs=1e-12)
    # The two differ wherever the batches' rates differ (the small batch weighs more in the mean).
    assert any(abs(r["car"] - r["car_batch_mean"]) > 0.01 for recs in records for r in recs)


def test_epoch_stats_average_a_gated_links_gate_over_steps():
    stats = EpochStats(layers=2, ensemble=1, device=torch.device("cpu"))
    t = lambda *v: torch.tensor([[x] for x in v])  # noqa: E731  (L=2, S=1)
    for gate in (t(0.2, 0.6), t(0.4, 0.0)):
        stats.add(loss=t(1.0, 1.0), car=t(0.0, 0.0), pos_pairs=t(1, 1), anchors_without_pos=t(0, 0), gate=gate)
    (recs,) = stats.records()
    assert [r["gate_mean"] for r in recs] == [pytest.approx(0.3), pytest.approx(0.3)]
