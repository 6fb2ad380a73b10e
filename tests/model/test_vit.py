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
