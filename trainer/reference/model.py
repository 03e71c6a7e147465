"""A small decoder-only transformer (GPT-2 layout: pre-LayerNorm, causal self-attention, GELU MLP, tied
embeddings) for the reference trainer and the benchmarks.

This module is torch by nature; nothing in `gpulens.trainer` imports it unless it is going to train.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch  # noqa: TID253 - only the reference trainer and the benchmarks import this module
import torch.nn.functional as F  # noqa: TID253
from torch import nn  # noqa: TID253

from gpulens.trainer.mfu import decoder_params, transformer_flops_per_token


@dataclass(frozen=True)
class ModelShape:
    vocab_size: int
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4
    seq_len: int = 64

    def params(self) -> int:
        """Weights in matrices and embeddings (biases and norms left out, as the FLOPs estimate does)."""
        return decoder_params(self.n_layers, self.d_model, self.vocab_size, seq_len=self.seq_len)

    def flops_per_token(self) -> float:
        return transformer_flops_per_token(self.params(), self.n_layers, self.d_model, self.seq_len)


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.shape = shape
        self.tok = nn.Embedding(shape.vocab_size, shape.d_model)
        self.pos = nn.Embedding(shape.seq_len, shape.d_model)
        self.blocks = nn.ModuleList(Block(shape.d_model, shape.n_heads) for _ in range(shape.n_layers))
        self.ln = nn.LayerNorm(shape.d_model)
        self.head = nn.Linear(shape.d_model, shape.vocab_size, bias=False)
        self.head.weight = self.tok.weight  # tied, as in GPT-2
        self.apply(_init)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy (nats) of a (batch, seq) tensor of token ids."""
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(positions)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def _init(module: nn.Module) -> None:
    """GPT-2's initialization (N(0, 0.02)); torch's default N(0, 1) embeddings start the loss near 80 nats."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
