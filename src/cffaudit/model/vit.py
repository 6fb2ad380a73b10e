"""The CFF Vision Transformer, with an explicit seed-ensemble dimension.

Every parameter carries a leading dimension S, one slice per independent seed, and
every activation has shape (S, B, T, E). A solo run is S = 1. Seeds never mix:
matmuls are batched over S, attention folds S into its batch, LayerNorm is applied
per slice, and AdamW is element-wise, so seed k of an ensemble follows exactly the
computation of a solo run with seed k (up to floating-point reassociation).

Layer 0 is the linear patch embedding, ReLU, the learned positional embedding and the
first block; layer l > 0 is block l. `blocks[l]` is addressable on its own and
`embed` belongs to layer 0.

Initialisation (`init`, the config's `model.init`). The seed paper ran the original CFF
code (github HosseinAghagol/ContrastiveFF, `models/vit.py`, which `main_CFF.py` trains),
whose modules keep PyTorch's defaults (torch 2.x `reset_parameters`):

==========================  ================================  =================================
parameter                   "original" (the default)          "small" (cffaudit before issue 13)
==========================  ================================  =================================
patch embedding W, b        nn.Linear: U(+-1/sqrt(fan_in))    same
positional embedding        torch.randn: N(0, 1)              N(0, 0.02^2) clipped at +-0.04
LayerNorm weight, bias      nn.LayerNorm: ones, zeros         same
attention input W (q,k,v)   nn.MultiheadAttention:            nn.Linear: U(+-1/sqrt(E))
                            xavier_uniform_ on the (3E, E)
                            matrix, U(+-sqrt(6 / (E + 3E)))
attention input bias        nn.MultiheadAttention: zeros      U(+-1/sqrt(E))
attention output W          its out_proj is an nn.Linear:     same
                            U(+-1/sqrt(E))
attention output bias       nn.MultiheadAttention: zeros      U(+-1/sqrt(E))
MLP fc1, fc2 W and b        nn.Linear: U(+-1/sqrt(fan_in))    same
==========================  ================================  =================================

"small" keeps the draws of earlier cffaudit versions bit for bit, so their runs can be
repeated. Either way every draw comes from the seed's own generator (never the global
RNG), in a fixed module order.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


#: Initialisation schemes, see the module docstring.
INITS = ("original", "small")


def check_init(init: str) -> str:
    """`init` if it names a scheme of `INITS`, else a ValueError saying which exist."""
    if init not in INITS:
        raise ValueError(f"init: {init!r} is not one of {list(INITS)} (model.init in the config)")
    return init


def _uniform(shape: Sequence[int], bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(*shape, generator=generator) * 2 - 1) * bound


class EnsembleLinear(nn.Module):
    """S independent linear maps: (S, ..., in) -> (S, ..., out), each slice initialised
    from its own seed's generator.

    Args:
        weight_init: "linear" (nn.Linear's default, U(+-1/sqrt(fan_in))) or "xavier"
            (xavier_uniform_ with gain 1, U(+-sqrt(6 / (fan_in + fan_out)))).
        bias_init: "linear" (nn.Linear's default, U(+-1/sqrt(fan_in))) or "zeros".
    """

    def __init__(self, ensemble: int, in_features: int, out_features: int, *,
                 weight_init: str = "linear", bias_init: str = "linear") -> None:
        super().__init__()
        if weight_init not in ("linear", "xavier"):
            raise ValueError(f"weight_init: {weight_init!r} is not one of ['linear', 'xavier']")
        if bias_init not in ("linear", "zeros"):
            raise ValueError(f"bias_init: {bias_init!r} is not one of ['linear', 'zeros']")
        self.in_features, self.out_features = in_features, out_features
        self.weight_init, self.bias_init = weight_init, bias_init
        self.weight = nn.Parameter(torch.empty(ensemble, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble, 1, out_features))

    def init_slice(self, k: int, generator: torch.Generator) -> None:
        linear_bound = 1.0 / math.sqrt(self.in_features)
        # Stored as (in, out) for baddbmm; both bounds are symmetric in the fans, so the
        # layout does not change them.
        weight_bound = (math.sqrt(6.0 / (self.in_features + self.out_features))
                        if self.weight_init == "xavier" else linear_bound)
        with torch.no_grad():
            self.weight[k].copy_(_uniform((self.in_features, self.out_features), weight_bound, generator))
            if self.bias_init == "zeros":
                self.bias[k].zero_()
            else:
                self.bias[k].copy_(_uniform((1, self.out_features), linear_bound, generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.shape[0]
        flat = x.reshape(s, -1, self.in_features)  # (S, M, in)
        out = torch.baddbmm(self.bias, flat, self.weight)  # (S, M, out)
        return out.reshape(*x.shape[:-1], self.out_features)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dimension with per-seed affine parameters."""

    def __init__(self, ensemble: int, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(ensemble, dim))
        self.bias = nn.Parameter(torch.zeros(ensemble, dim))

    def init_slice(self, k: int, generator: torch.Generator) -> None:
        with torch.no_grad():
            self.weight[k].fill_(1.0)
            self.bias[k].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1:
            # Solo run: the fused kernel with its affine part (measured on a 2-core CPU:
            # the separate multiply-add below and its backward cost ~5% of a step).
            return F.layer_norm(x, x.shape[-1:], self.weight[0], self.bias[0], self.eps)
        y = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        return torch.addcmul(self.bias.view(shape), y, self.weight.view(shape))


#: CUDA's memory-efficient attention kernel puts the batch on a grid axis of at most
#: 65535 blocks (pytorch/pytorch#142228), and S seeds x 2B views can exceed it
#: (64 seeds at the paper's batch of 512 images); larger batches are split.
SDPA_MAX_BATCH = 65535


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    n = q.shape[0]
    if n <= SDPA_MAX_BATCH:
        return F.scaled_dot_product_attention(q, k, v)
    parts = -(-n // SDPA_MAX_BATCH)  # equal chunks, not a full one and a sliver
    return torch.cat([F.scaled_dot_product_attention(*qkv)
                      for qkv in zip(q.tensor_split(parts), k.tensor_split(parts), v.tensor_split(parts))])


class Attention(nn.Module):
    """Multi-head self-attention; q, k, v come from one (E, 3E) projection, in that order
    along its output, as the rows of nn.MultiheadAttention's in_proj_weight."""

    def __init__(self, ensemble: int, dim: int, heads: int, init: str = "original") -> None:
        super().__init__()
        self.heads = heads
        if check_init(init) == "original":
            # nn.MultiheadAttention._reset_parameters: xavier_uniform_ on the whole
            # in-projection, zero in- and out-projection biases.
            self.qkv = EnsembleLinear(ensemble, dim, 3 * dim, weight_init="xavier", bias_init="zeros")
            self.proj = EnsembleLinear(ensemble, dim, dim, bias_init="zeros")
        else:
            self.qkv = EnsembleLinear(ensemble, dim, 3 * dim)
            self.proj = EnsembleLinear(ensemble, dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        S, B, T, E = x.shape
        hs = E // self.heads
        qkv = self.qkv(x).view(S * B, T, 3, self.heads, hs)
        # Strided views, no copy; SDPA takes them as they are, and the backward of
        # unbind(2) writes the gradients straight into (S*B, T, 3, nh, hs) order
        # (a permute first would cost one more copy of qkv's gradient).
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # each (S*B, nh, T, hs)
        y = _attention(q, k, v)  # (S*B, nh, T, hs)
        y = y.transpose(1, 2).reshape(S, B, T, E)
        return self.proj(y)


class Mlp(nn.Module):
    def __init__(self, ensemble: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = EnsembleLinear(ensemble, dim, hidden)
        self.fc2 = EnsembleLinear(ensemble, hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then + mlp(norm2(x))."""

    def __init__(self, ensemble: int, dim: int, heads: int, mlp_ratio: float, init: str = "original") -> None:
        super().__init__()
        self.norm1 = EnsembleLayerNorm(ensemble, dim)
        self.attn = Attention(ensemble, dim, heads, init)
        self.norm2 = EnsembleLayerNorm(ensemble, dim)
        self.mlp = Mlp(ensemble, dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> linear -> ReLU -> + learned positions."""

    def __init__(self, ensemble: int, image_size: int, patch_size: int, in_chans: int, dim: int,
                 init: str = "original") -> None:
        super().__init__()
        self.init = check_init(init)
        self.patch_size = patch_size
        self.num_tokens = (image_size // patch_size) ** 2
        self.proj = EnsembleLinear(ensemble, in_chans * patch_size * patch_size, dim)
        self.pos = nn.Parameter(torch.zeros(ensemble, 1, self.num_tokens, dim))

    def init_slice(self, k: int, generator: torch.Generator) -> None:
        z = torch.randn(self.pos.shape[1:], generator=generator)
        with torch.no_grad():
            if self.init == "original":
                # The original's PositionalEncoder: nn.Parameter(torch.randn(...)), N(0, 1).
                self.pos[k].copy_(z)
            else:
                # Std 0.02 (the ViT convention) clipped, not truncated: the ~4.6% of draws
                # beyond two std sit exactly at +-0.04.
                self.pos[k].copy_((z * 0.02).clamp(-0.04, 0.04))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        S, B, C, H, W = x.shape
        p = self.patch_size
        patches = x.reshape(S, B, C, H // p, p, W // p, p)
        patches = patches.permute(0, 1, 3, 5, 2, 4, 6).reshape(S, B, self.num_tokens, C * p * p)
        return F.relu(self.proj(patches)) + self.pos  # (S, B, T, E)


class CFFViT(nn.Module):
    """ViT whose layers are trained one by one (see module docstring).

    Args:
        ensemble: number of independent seeds S held side by side.
        embed_dim, depth, heads, patch_size, mlp_ratio, image_size, in_chans: architecture.
        init: "original" (the original CFF code's initialisation) or "small" (earlier
            cffaudit versions'); see the module docstring.
    """

    def __init__(
        self,
        *,
        ensemble: int = 1,
        embed_dim: int = 128,
        depth: int = 8,
        heads: int = 4,
        patch_size: int = 4,
        mlp_ratio: float = 2.0,
        image_size: int = 32,
        in_chans: int = 3,
        init: str = "original",
    ) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.embed_dim = embed_dim
        self.init = check_init(init)
        self.embed = PatchEmbed(ensemble, image_size, patch_size, in_chans, embed_dim, init)
        self.blocks = nn.ModuleList(Block(ensemble, embed_dim, heads, mlp_ratio, init) for _ in range(depth))

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def init_weights(self, generators: Sequence[torch.Generator]) -> None:
        """Initialise slice k from generators[k], in a fixed module order.

        Draws happen on the CPU generator whatever the device, so a seed's initial
        weights are the same on every device and in every ensemble it joins.
        """
        if len(generators) != self.ensemble:
            raise ValueError(f"generators: need {self.ensemble}, got {len(generators)}")
        for k, g in enumerate(generators):
            for module in self.modules():
                if hasattr(module, "init_slice"):
                    module.init_slice(k, g)

    def layer_parameters(self, layer: int) -> list[nn.Parameter]:
        """Parameters trained by layer `layer`'s loss (layer 0 includes the embedding)."""
        params = list(self.blocks[layer].parameters())
        if layer == 0:
            params = list(self.embed.parameters()) + params
        return params

    def forward_layers(self, x: torch.Tensor, *, detach_between: bool = True) -> list[torch.Tensor]:
        """Token outputs of every layer, (S, B, T, E) each.

        With `detach_between`, each block sees a detached input, so a layer's loss
        reaches only its own parameters (Forward-Forward locality).
        """
        h = self.embed(x)
        outs = []
        for block in self.blocks:
            h = block(h)
            outs.append(h)
            if detach_between:
                h = h.detach()
        return outs

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """Final-layer token mean, (S, B, E): the probe's frozen feature."""
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return h.mean(dim=2)


def layer_representation(tokens: torch.Tensor) -> torch.Tensor:
    """L2-normalised token mean, (S, B, T, E) -> (S, B, E): what a layer's loss sees."""
    return F.normalize(tokens.mean(dim=-2), dim=-1)
