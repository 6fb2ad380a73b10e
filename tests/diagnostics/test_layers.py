import math

import pytest
import torch

from cffaudit.diagnostics import EpochStats, block_grad_norms
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
    assert a == {"layer": 0, "loss": 2.0, "car": 5 / 40, "pos_pairs": 40, "grad_norm": 4.0, "grad_norm_last": 5.0,
                 "anchors_without_positives": 1, "val_loss": pytest.approx(0.7), "gate_mean": None}
    # A step without positive pairs (CAR NaN) adds nothing to the pooled rate.
    assert b["car"] == 2 / 8 and b["pos_pairs"] == 8 and b["anchors_without_positives"] == 4
    empty = EpochStats(layers=1, ensemble=1, device=torch.device("cpu")).records()
    assert math.isnan(empty[0][0]["car"]) and "val_loss" not in empty[0][0]


def test_epoch_stats_average_a_gated_links_gate_over_steps():
    stats = EpochStats(layers=2, ensemble=1, device=torch.device("cpu"))
    t = lambda *v: torch.tensor([[x] for x in v])  # noqa: E731  (L=2, S=1)
    for gate in (t(0.2, 0.6), t(0.4, 0.0)):
        stats.add(loss=t(1.0, 1.0), car=t(0.0, 0.0), pos_pairs=t(1, 1), anchors_without_pos=t(0, 0), gate=gate)
    (recs,) = stats.records()
    assert [r["gate_mean"] for r in recs] == [pytest.approx(0.3), pytest.approx(0.3)]
