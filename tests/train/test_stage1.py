
import pytest
import torch

from cffaudit.loss import get_margin_variant, supcon_loss
from cffaudit.model import CFFViT, layer_representation
from cffaudit.train.seeds import generator
from cffaudit.train.stage1 import LossSpec, Stage1Step, make_optimizer

MARGINS = (0.4, 0.3, 0.2)


def tiny_model(ensemble=1, seeds=(0,)):
    torch.manual_seed(0)
    m = CFFViT(ensemble=ensemble, embed_dim=16, depth=3, heads=2, patch_size=8, image_size=16)
    m.init_weights([generator(s) for s in seeds])
    return m


def batch(step, ensemble=1, n=12, classes=3):
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(ensemble, n, 3, 16, 16, generator=g)
    y = torch.randint(0, classes, (ensemble, n), generator=g)
    return x, y


def original_structure_steps(model, steps, margin="clamp", stability="detach"):
    """The original code's structure, literally: per block, forward on the detached
    input, loss, zero_grad, backward, step of that block's own AdamW, loss.item()."""
    opts = [torch.optim.AdamW(model.layer_parameters(l), lr=0.004, weight_decay=0.01, foreach=False)
            for l in range(model.depth)]
    for step in range(steps):
        x, y = batch(step)
        h = model.embed(x)
        for l, block in enumerate(model.blocks):
            inp = h if l == 0 else h.detach()
            h = block(inp)
            loss = supcon_loss(layer_representation(h), y, margin=MARGINS[l], variant=margin,
                               stability=stability).loss.sum()
            opts[l].zero_grad()
            loss.backward()
            opts[l].step()
            loss.item()
    return model


@pytest.mark.parametrize("order", ["per_block", "fused"])
@pytest.mark.parametrize("margin", ["clamp", "subtract"])
def test_step_equals_original_per_block_loop(order, margin):
    ref = original_structure_steps(tiny_model(), steps=4, margin=margin)
    model = tiny_model()
    opt = make_optimizer(model.parameters(), lr=0.004, betas=(0.9, 0.999), weight_decay=0.01,
                         device=torch.device("cpu"))
    step = Stage1Step(model, opt, LossSpec(MARGINS, get_margin_variant(margin), "detach", 0.15), order=order)
    for s in range(4):
        x, y = batch(s)
        step(x, y)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6, rtol=1e-5), name


def test_block_gradient_is_local():
    """A block's gradient does not change when other blocks' losses change."""
    x, y = batch(0)
    grads = []
    for later_margin in (0.4, 0.0):
        model = tiny_model()
        spec = LossSpec((0.4, later_margin, later_margin), get_margin_variant("clamp"), "detach", 0.15)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        Stage1Step(model, opt, spec, order="fused")(x, y)
        grads.append([p.grad.clone() for p in model.layer_parameters(0)])
        later = [p.grad.clone() for p in model.layer_parameters(2)]
    for a, b in zip(*grads):
        assert torch.equal(a, b)
    # ...while the later blocks' gradients do change with their own margins.
    model = tiny_model()
    Stage1Step(model, torch.optim.SGD(model.parameters(), lr=0.0),
               LossSpec((0.4, 0.4, 0.4), get_margin_variant("clamp"), "detach", 0.15), order="fused")(x, y)
    assert not all(torch.equal(a, p.grad) for a, p in zip(later, model.layer_parameters(2)))


def test_ensemble_seed_matches_solo_run():
    """Seed k of an ensemble starts from solo seed k's weights and tracks it step by step."""
    # float64: the key part of the qkv bias has an exactly-zero true gradient (softmax is
    # shift invariant), so in float32 Adam turns reassociation noise of ~1e-9 into
    # +-lr steps there; in float64 that noise sits far below Adam's eps.
    seeds = (3, 5)
    ens = tiny_model(ensemble=2, seeds=seeds).double()
    solos = [tiny_model(seeds=(s,)).double() for s in seeds]
    for k, solo in enumerate(solos):
        for p, q in zip(ens.parameters(), solo.parameters()):
            assert torch.equal(p[k], q[0])
    spec = LossSpec(MARGINS, get_margin_variant("clamp"), "detach", 0.15)
    mk = lambda m: Stage1Step(m, make_optimizer(m.parameters(), lr=0.004, betas=(0.9, 0.999),  # noqa: E731
                                                weight_decay=0.01, device=torch.device("cpu")), spec)
    ens_step, solo_steps = mk(ens), [mk(m) for m in solos]
    for s in range(3):
        x, y = batch(s, ensemble=2)
        x = x.double()
        ens_step(x, y)
        for k in range(2):
            solo_steps[k](x[k:k + 1], y[k:k + 1])
    for k, solo in enumerate(solos):
        for p, q in zip(ens.parameters(), solo.parameters()):
            assert torch.allclose(p[k], q[0], atol=1e-9)


@pytest.mark.slow
def test_gpu_style_step_compiled_bf16_runs_and_tracks_fp32():
    """The GPU path (fused order, bf16 autocast, torch.compile) exercised on the CPU:
    it must run, keep the loss in float32 and stay close to the eager float32 step."""
    spec = LossSpec(MARGINS, get_margin_variant("clamp"), "detach", 0.15)
    x, y = batch(0)
    losses = {}
    for name, kwargs in {"fp32": {}, "bf16_compiled": {
            "autocast": lambda: torch.autocast("cpu", dtype=torch.bfloat16), "compile": True}}.items():
        model = tiny_model()
        opt = make_optimizer(model.parameters(), lr=0.004, betas=(0.9, 0.999), weight_decay=0.01,
                             device=torch.device("cpu"))
        step = Stage1Step(model, opt, spec, order="fused", **kwargs)
        losses[name] = [step(x, y) for _ in range(2)]
    for a, b in zip(losses["fp32"], losses["bf16_compiled"]):
        assert b.dtype == torch.float32 and torch.isfinite(b)
        assert torch.allclose(a, b, rtol=0.05)


def test_compiled_step_keeps_compiling_run_after_run(monkeypatch):
    """A sweep worker trains many configurations in one process: every new step object
    must get compiled graphs, not fall back to eager once Dynamo's per-function
    recompile limit is reached. (Dynamo's eager backend: the guards are what matter.)"""
    import functools

    import torch._dynamo

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    x, y = batch(0)
    with torch._dynamo.config.patch(recompile_limit=2, fail_on_recompile_limit_hit=True):
        for m0 in (0.4, 0.3, 0.2, 0.1):  # each margin is a new guard on the graph
            model = tiny_model()
            spec = LossSpec((m0, 0.2, 0.1), get_margin_variant("clamp"), "detach", 0.15)
            step = Stage1Step(model, torch.optim.SGD(model.parameters(), lr=0.01), spec, order="fused", compile=True)
            assert torch.isfinite(step(x, y))


def test_weince_link_reports_its_gate_per_layer():
    from cffaudit.diagnostics import EpochStats
    from cffaudit.loss import WeinceLink

    x, y = batch(0)
    for link, has_gate in ((WeinceLink(), True), (None, False)):
        model = tiny_model()
        spec = LossSpec(MARGINS, get_margin_variant("clamp"), "detach", 0.15,
                        *([link] if link is not None else []))
        stats = EpochStats(model.depth, 1, torch.device("cpu"))
        Stage1Step(model, torch.optim.SGD(model.parameters(), lr=0.0), spec, order="per_block")(x, y, stats)
        gates = [rec["gate_mean"] for rec in stats.records()[0]]
        if has_gate:
            assert len(gates) == 3 and all(0.0 <= g <= 1.0 for g in gates)
        else:
            assert gates == [None, None, None]
