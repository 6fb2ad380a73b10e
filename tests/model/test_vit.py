import math

import pytest
import torch

from cffaudit.model import CFFViT, vit
from cffaudit.train.seeds import generator


def _model():
    m = CFFViT(ensemble=2, embed_dim=16, depth=2, heads=2, patch_size=8, image_size=16)
    m.init_weights([generator(1), generator(2)])
    return m


def test_attention_over_a_batch_beyond_the_kernel_limit_is_split_and_equal(monkeypatch):
    x = torch.randn(2, 5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    sdpa, calls = torch.nn.functional.scaled_dot_product_attention, []
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda q, k, v: calls.append(q.shape[0]) or sdpa(q, k, v))
    outs, grads = [], []
    for limit in (vit.SDPA_MAX_BATCH, 3):  # 2 seeds x 5 images = 10 > 3: split in 4 equal chunks
        monkeypatch.setattr(vit, "SDPA_MAX_BATCH", limit)
        calls.clear()
        m = _model()
        out = m.forward_layers(x, detach_between=False)[-1]
        assert calls == ([10] * 2 if limit > 10 else [3, 3, 2, 2] * 2)  # per block
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append(m.blocks[0].attn.qkv.weight.grad.clone())
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_layer_outputs_have_the_ensemble_shape():
    outs = _model().forward_layers(torch.zeros(2, 3, 3, 16, 16))
    assert [tuple(o.shape) for o in outs] == [(2, 3, 4, 16)] * 2


# -- initialisation ------------------------------------------------------------------------
# "original" is the original CFF code's (HosseinAghagol/ContrastiveFF models/vit.py, PyTorch
# module defaults); "small" is earlier cffaudit versions'. E = 128 and 8 seeds give enough
# draws per family for tight moment checks.

E, T = 128, 64


def _init_model(init, seeds=range(8)):
    m = CFFViT(ensemble=len(seeds), embed_dim=E, depth=2, heads=4, patch_size=4, image_size=32, init=init)
    m.init_weights([generator(s) for s in seeds])
    return m


def _assert_uniform(w, bound):
    """w looks like n draws of U(-bound, bound): within the bound, reaching it, and mean and
    std within five standard errors (std of U: bound/sqrt(3); rel. s.e. of a sample std of a
    uniform: sqrt((kurtosis - 1) / 4n) = sqrt(0.2 / n))."""
    w = w.detach().double().flatten()
    n, sd = w.numel(), bound / math.sqrt(3)
    assert w.abs().max() <= bound
    assert w.abs().max() > (1 - 10 / n) * bound  # no smaller hidden bound (fails w.p. e^-10)
    assert abs(w.mean()) < 5 * sd / math.sqrt(n)
    assert w.std() == pytest.approx(sd, rel=5 * math.sqrt(0.2 / n))


@pytest.fixture(scope="module")
def original():
    return _init_model("original")


@pytest.fixture(scope="module")
def small():
    return _init_model("small")


def test_original_positional_embedding_is_standard_normal(original):
    pos = original.embed.pos.detach().double()  # (8, 1, 64, 128): 65536 draws
    assert pos.shape == (8, 1, T, E)
    assert abs(pos.mean()) < 0.02 and pos.std() == pytest.approx(1.0, rel=0.02)
    assert (pos.abs() > 3).double().mean() == pytest.approx(0.0027, abs=0.001)  # tails present
    top = pos.abs().max()
    assert (pos.abs() == top).sum() == 1  # nothing piled up at a clip


def test_small_positional_embedding_is_a_clipped_normal(small):
    pos = small.embed.pos.detach().double()
    assert pos.abs().max() == pytest.approx(0.04)
    # P(|z| > 2) = 4.55% of N(0, 0.02^2) draws sit exactly at +-0.04 (clipped, not truncated).
    assert (pos.abs() >= 0.04 - 1e-7).double().mean() == pytest.approx(0.0455, abs=0.005)
    inner = pos[pos.abs() < 0.01]
    assert inner.numel() > 0.3 * pos.numel()


def test_original_attention_is_multihead_attention_default(original):
    for block in original.blocks:
        # xavier_uniform_ on the (3E, E) in-projection: fan_in E, fan_out 3E.
        _assert_uniform(block.attn.qkv.weight, math.sqrt(6 / (E + 3 * E)))
        assert torch.count_nonzero(block.attn.qkv.bias) == 0
        _assert_uniform(block.attn.proj.weight, 1 / math.sqrt(E))  # out_proj keeps nn.Linear's
        assert torch.count_nonzero(block.attn.proj.bias) == 0


def test_original_scheme_matches_the_pytorch_modules_the_original_code_builds(original):
    """Same families drawn by PyTorch itself (nn.MultiheadAttention, nn.Linear, randn), as in
    the original's ViTEncoder and PositionalEncoder: same bounds, zeros and moments."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        mha = torch.nn.MultiheadAttention(E, 4, batch_first=True)
        fc1, pos = torch.nn.Linear(E, 2 * E), torch.randn(8, T, E)
    ours = original.blocks[0]
    pairs = [(mha.in_proj_weight, ours.attn.qkv.weight), (mha.out_proj.weight, ours.attn.proj.weight),
             (fc1.weight, ours.mlp.fc1.weight), (fc1.bias, ours.mlp.fc1.bias)]
    for theirs, mine in pairs:
        assert theirs.numel() * 8 == mine.numel()
        theirs, mine = theirs.detach(), mine.detach()
        _assert_uniform(mine, float(mine.abs().max()))
        assert float(mine.abs().max()) == pytest.approx(float(theirs.abs().max()), rel=0.02)
    assert torch.count_nonzero(mha.in_proj_bias) == 0 and torch.count_nonzero(mha.out_proj.bias) == 0
    assert original.embed.pos.detach().std().item() == pytest.approx(pos.std().item(), rel=0.03)


def test_small_attention_is_linear_default(small):
    for block in small.blocks:
        _assert_uniform(block.attn.qkv.weight, 1 / math.sqrt(E))
        _assert_uniform(block.attn.qkv.bias, 1 / math.sqrt(E))
        _assert_uniform(block.attn.proj.weight, 1 / math.sqrt(E))
        _assert_uniform(block.attn.proj.bias, 1 / math.sqrt(E))


@pytest.mark.parametrize("init", ["original", "small"])
def test_patch_embedding_mlp_and_norms_keep_module_defaults(init, original, small):
    m = {"original": original, "small": small}[init]
    fan_in = 3 * 4 * 4
    _assert_uniform(m.embed.proj.weight, 1 / math.sqrt(fan_in))
    _assert_uniform(m.embed.proj.bias, 1 / math.sqrt(fan_in))
    for block in m.blocks:
        for lin in (block.mlp.fc1, block.mlp.fc2):  # nn.Linear: U(+-1/sqrt(fan_in)), weight and bias
            _assert_uniform(lin.weight, 1 / math.sqrt(lin.in_features))
            _assert_uniform(lin.bias, 1 / math.sqrt(lin.in_features))
        for norm in (block.norm1, block.norm2):
            assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


@pytest.mark.parametrize("init", ["original", "small"])
def test_init_draws_only_from_the_seed_generator(init):
    torch.manual_seed(0)
    a = _init_model(init, seeds=[3, 4])
    torch.manual_seed(1)  # the global RNG must not matter
    b = _init_model(init, seeds=[4])
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p[1], q[0])
    assert not torch.equal(a.embed.pos[0], a.embed.pos[1])


def test_schemes_differ_and_default_is_original():
    assert CFFViT(embed_dim=16, depth=1, heads=2, patch_size=8, image_size=16).init == "original"
    a, b = (_init_model(init, seeds=[0]) for init in ("original", "small"))
    assert not torch.equal(a.embed.pos, b.embed.pos)


def test_unknown_init_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"init: 'xavier' is not one of \['original', 'small'\]"):
        CFFViT(embed_dim=16, depth=1, heads=2, patch_size=8, image_size=16, init="xavier")
    with pytest.raises(ValueError, match="weight_init: 'normal'"):
        vit.EnsembleLinear(1, 4, 4, weight_init="normal")
    with pytest.raises(ValueError, match="bias_init: 'ones'"):
        vit.EnsembleLinear(1, 4, 4, bias_init="ones")


def test_config_model_init_is_validated_and_reaches_the_built_model():
    from cffaudit.config import RunConfig
    from cffaudit.train.run import build_model

    cfg = RunConfig().override({"model.embed_dim": 16, "model.depth": 1, "model.heads": 2})
    assert cfg.model.init == "original"
    for init in ("original", "small"):
        model = build_model(cfg.override({"model.init": init}), [0], torch.device("cpu"))
        assert model.init == init
    with pytest.raises(ValueError, match=r"model.init: 'xavier' is not one of \['original', 'small'\]"):
        cfg.override({"model.init": "xavier"})
