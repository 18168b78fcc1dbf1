"""The token transformer: a small causal decoder over codec frames, built on
transformer-lens's :class:`HookedRootModule` and :class:`HookPoint`.

One position is one codec frame. A frame carries ``n_q`` residual-quantizer
codes; their embeddings (one table per codebook) are summed into the residual
stream and ``n_q`` parallel heads predict the next frame's codes. Keeping one
position per frame means position ``t`` *is* frame ``t`` of the codec (hop 320,
75 Hz), so a layer's frame rate and a time span in seconds mean the same thing
here as on the codec's own layers.

Hook points follow transformer-lens's names (``blocks.{i}.hook_resid_pre``,
``hook_attn_out``, ``hook_resid_mid``, ``hook_mlp_out``, ``hook_resid_post``)
but see their activation channels-first, ``[batch, d_model, positions]``: that
is steerlab's layer contract (``[batch, channels, frames]``), so the core needs
no layout switch; ``HookPoint.pos_dim = 2`` tells transformer-lens tools where
the position axis is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedRootModule import HookedRootModule

from steerlab.errors import ConfigError


@dataclass(frozen=True)
class TokenLMConfig:
    """Architecture of the token transformer."""

    n_q: int = 4  # codebooks modelled (the codec's first n_q residual codebooks)
    bins: int = 256  # codebook size of the codec
    d_model: int = 96
    n_layers: int = 3
    n_heads: int = 4
    d_mlp: int = 384
    max_frames: int = 225  # context: 3 s of codec frames at 75 Hz

    def __post_init__(self) -> None:
        for key in ("n_q", "bins", "d_model", "n_layers", "n_heads", "d_mlp", "max_frames"):
            if int(getattr(self, key)) <= 0:
                raise ConfigError(f"{key} must be a positive integer, got {getattr(self, key)}", parameter=key)
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> TokenLMConfig:
        return cls(**d)


def _hook_cf(hook: HookPoint, x: torch.Tensor) -> torch.Tensor:
    """Pass ``x [batch, pos, d]`` through ``hook`` as ``[batch, d, pos]`` (a view, no copy)."""
    return hook(x.transpose(1, 2)).transpose(1, 2)


def _hook_point() -> HookPoint:
    hook = HookPoint()
    hook.pos_dim = 2
    return hook


class Attention(nn.Module):
    """Causal multi-head self-attention."""

    def __init__(self, cfg: TokenLMConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, d] -> [batch, pos, d]
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer block with transformer-lens hook points."""

    def __init__(self, cfg: TokenLMConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_mlp), nn.GELU(), nn.Linear(cfg.d_mlp, cfg.d_model))
        self.hook_resid_pre = _hook_point()
        self.hook_attn_out = _hook_point()
        self.hook_resid_mid = _hook_point()
        self.hook_mlp_out = _hook_point()
        self.hook_resid_post = _hook_point()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, d]
        resid_pre = _hook_cf(self.hook_resid_pre, x)
        attn_out = _hook_cf(self.hook_attn_out, self.attn(self.ln1(resid_pre)))
        resid_mid = _hook_cf(self.hook_resid_mid, resid_pre + attn_out)
        mlp_out = _hook_cf(self.hook_mlp_out, self.mlp(self.ln2(resid_mid)))
        return _hook_cf(self.hook_resid_post, resid_mid + mlp_out)


class TokenTransformer(HookedRootModule):
    """``tokens [batch, n_q, frames]`` -> next-frame logits ``[batch, frames, n_q, bins]``.

    The logits at position ``t`` predict the codes of frame ``t + 1``.
    """

    def __init__(self, cfg: TokenLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.ModuleList(nn.Embedding(cfg.bins, cfg.d_model) for _ in range(cfg.n_q))
        self.pos_embed = nn.Embedding(cfg.max_frames, cfg.d_model)
        self.hook_embed = _hook_point()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = nn.LayerNorm(cfg.d_model)
        self.unembed = nn.Linear(cfg.d_model, cfg.n_q * cfg.bins)
        self._init_weights()
        self.setup()  # transformer-lens: names every HookPoint (hook_dict) for run_with_hooks / run_with_cache

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        # residual branches scaled down with depth (GPT-2's scheme) so the stream starts near the embedding
        # casts: torch's stubs type the items of a ModuleList and a Sequential as plain Modules
        for block in cast("Iterable[Block]", self.blocks):
            for lin in (block.attn.out, cast(nn.Linear, block.mlp[2])):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * self.cfg.n_layers))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n_q, t = tokens.shape
        if n_q != self.cfg.n_q:
            raise ConfigError(f"expected {self.cfg.n_q} codebooks, got {n_q}")
        if t > self.cfg.max_frames:
            raise ConfigError(f"{t} frames exceed the context of {self.cfg.max_frames}")
        x = self.pos_embed.weight[:t][None]
        for k, table in enumerate(self.embed):
            x = x + table(tokens[:, k])
        x = _hook_cf(self.hook_embed, x)
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_final(x)).view(b, t, self.cfg.n_q, self.cfg.bins)
