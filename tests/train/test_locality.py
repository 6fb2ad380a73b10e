"""stage1.locality: local (CFF), global (summed losses, no detach) and last (end to end on
the last layer's loss), checked against plain autograd without any detach."""

import pytest
import torch

from cffaudit.config import RunConfig
from cffaudit.diagnostics import EpochStats
from cffaudit.experiments.identity import identity_dict, run_id
from cffaudit.loss import get_margin_variant, supcon_loss
from cffaudit.model import layer_representation
from cffaudit.train.runtime import Runtime
from cffaudit.train.stage1 import LossSpec, Stage1Step, layer_losses

from tests.train.test_stage1 import MARGINS, batch, tiny_model


def spec(locality: str, margin: str = "clamp") -> LossSpec:
    return LossSpec(MARGINS, get_margin_variant(margin), "detach", 0.15, locality=locality)


def step_gradients(locality: str, x, y, stats=None):
    """Gradients of every parameter after one fused step with a zero learning rate."""
    model = tiny_model()
    Stage1Step(model, torch.optim.SGD(model.parameters(), lr=0.0), spec(locality), order="fused")(x, y, stats)
    return model, [p.grad.clone() for p in model.parameters()]


def plain_autograd(layers: list[int], x, y):
    """Gradients of the sum of the given layers' losses, one graph, nothing detached."""
    model = tiny_model()
    h = model.embed(x)
    total = 0.0
    for l, block in enumerate(model.blocks):
        h = block(h)
        if l in layers:
            total = total + supcon_loss(layer_representation(h), y, margin=MARGINS[l], variant="clamp",
                                        stability="detach").loss.sum()
    return model, torch.autograd.grad(total, list(model.parameters()), allow_unused=True)


def test_global_gradients_cross_blocks():
    x, y = batch(0)
    model, grads = step_gradients("global", x, y)
    ref_model, ref = plain_autograd([0, 1, 2], x, y)
    for (name, _), g, r in zip(model.named_parameters(), grads, ref):
        assert torch.allclose(g, r, atol=1e-6, rtol=1e-5), name
    # Block 0 now also gets the later losses' gradients: not what the local step gives it.
    n0 = len(model.layer_parameters(0))
    _, local = step_gradients("local", x, y)
    assert not all(torch.allclose(a, b) for a, b in zip(grads[:n0], local[:n0]))
    # The last block has no later loss: its gradient is the local one.
    n_last = len(model.layer_parameters(2))
    for a, b in zip(grads[-n_last:], local[-n_last:]):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def test_last_trains_end_to_end_on_the_last_loss_alone():
    x, y = batch(1)
    stats = EpochStats(3, 1, torch.device("cpu"))
    model, grads = step_gradients("last", x, y, stats)
    _, ref = plain_autograd([2], x, y)
    for (name, _), g, r in zip(model.named_parameters(), grads, ref):
        assert torch.allclose(g, r, atol=1e-6, rtol=1e-5), name
    # Every layer's loss, CAR and gradient norm is still recorded.
    (records,) = stats.records(None)
    assert [r["layer"] for r in records] == [0, 1, 2]
    for r in records:
        assert torch.isfinite(torch.tensor([r["loss"], r["car"], r["grad_norm"]])).all()
    with torch.no_grad():
        _, local_losses, *_ = layer_losses(tiny_model(), x, y, spec("local"))
        _, last_losses, *_ = layer_losses(tiny_model(), x, y, spec("last"))
    assert torch.equal(local_losses, last_losses)  # the same losses, only another objective


def test_last_total_is_the_last_loss():
    x, y = batch(2)
    total, losses, *_ = layer_losses(tiny_model(), x, y, spec("last"))
    assert torch.allclose(total, losses[-1].sum())
    total, losses, *_ = layer_losses(tiny_model(), x, y, spec("global"))
    assert torch.allclose(total, losses.sum())


@pytest.mark.parametrize("locality", ["global", "last"])
def test_per_block_order_needs_local(locality):
    model = tiny_model()
    with pytest.raises(ValueError, match="needs locality 'local'"):
        Stage1Step(model, torch.optim.SGD(model.parameters(), lr=0.0), spec(locality), order="per_block")
    x, y = batch(0)
    with pytest.raises(ValueError, match="per_block order"):
        layer_losses(model, x, y, spec(locality), backward_each=True)
    with pytest.raises(ValueError, match="stage1.locality=local"):
        RunConfig().override({"stage1.locality": locality, "stage1.step_order": "per_block"})


def test_unknown_locality_is_refused():
    with pytest.raises(ValueError, match="stage1.locality"):
        RunConfig().override({"stage1.locality": "nearby"})
    with pytest.raises(ValueError, match="locality"):
        spec("nearby")


def test_auto_step_order_is_fused_for_non_local():
    cfg = RunConfig(device="cpu")
    assert Runtime.from_config(cfg).step_order == "per_block"
    for locality in ("global", "last"):
        assert Runtime.from_config(cfg.override({"stage1.locality": locality})).step_order == "fused"


def test_default_locality_keeps_run_ids():
    cfg = RunConfig()
    assert "stage1.locality" not in identity_dict(cfg)
    assert run_id(cfg.override({"stage1.locality": "local"})) == run_id(cfg)
    ids = {run_id(cfg.override({"stage1.locality": loc})) for loc in ("local", "global", "last")}
    assert len(ids) == 3
