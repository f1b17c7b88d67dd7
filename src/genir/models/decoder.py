"""A small transformer decoder over docid codes, with the two caches beam search wants.

- Self-attention keys/values are cached per beam, so each step feeds one new code per beam.
- Cross-attention keys/values are computed once per query and shared by its beams: the W beams of a
  query attend to the encoder states as W "positions" of one attention call, never copied W times.
- Teacher forcing over a short docid (training, GenRet's corpus bank) does not project the encoder states
  at all: the key and value maps are moved to the decoder's side of the product (see
  :meth:`DecoderLayer.cross_unprojected`), the same attention with a fraction of the work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DecoderState:
    """Cached keys/values during beam search; rows are (query, beam) pairs, beams of a query contiguous."""

    self_k: list[torch.Tensor]  # per layer (B*W, H, t, dh)
    self_v: list[torch.Tensor]
    cross_k: list[torch.Tensor | None]  # per layer (B, H, S, dh), shared by the beams of a query; None if unprojected
    cross_v: list[torch.Tensor | None]
    memory_mask: torch.Tensor  # (B, 1, 1, S) bool, True = attend
    n_queries: int
    step: int = 0
    memory: torch.Tensor | None = None  # (B, S, d_memory), attended unprojected (one row per query, no beams)


class DecoderLayer(nn.Module):
    """Pre-LN: self-attention (causal), cross-attention to the encoder, feed-forward."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, d_memory: int, dropout: float):
        super().__init__()
        self.h, self.dh = n_heads, d_model // n_heads
        self.ln_self, self.ln_cross, self.ln_ff = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.self_out = nn.Linear(d_model, d_model)
        self.cross_q = nn.Linear(d_model, d_model)
        self.cross_kv = nn.Linear(d_memory, 2 * d_model)
        self.cross_out = nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, d) -> (N, H, T, dh)
        return x.view(x.shape[0], x.shape[1], self.h, self.dh).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], self.h * self.dh)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.cross_kv(memory).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def cross(self, x: torch.Tensor, mk: torch.Tensor, mv: torch.Tensor, mask: torch.Tensor,
              n_queries: int) -> torch.Tensor:
        # rows of x belong to queries in contiguous groups; fold the group into the attention's length axis
        n, t, d = x.shape
        per_query = n // n_queries
        q = self._split(self.cross_q(x).reshape(n_queries, per_query * t, d))
        out = F.scaled_dot_product_attention(q, mk, mv, attn_mask=mask)
        return self.cross_out(self._merge(out).reshape(n, t, d))

    def cross_unprojected(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The same cross-attention as :meth:`cross`, without projecting the S encoder states.

        Head h scores q_h . (W_k^h m + b_k^h) = (W_k^h^T q_h) . m + q_h . b_k^h; the last term is the same for
        every memory position, so the softmax drops it. Its output sum_i a_i (W_v^h m_i + b_v^h) is
        W_v^h (sum_i a_i m_i) + b_v^h, as the weights a_i sum to 1. So T decoder positions need
        2 x T x H x S x d_memory multiply-adds instead of S x d_memory x 2d for the projected states:
        for a docid of T <= 4 codes and S = 64 states, a few percent of the work (and of its gradient)."""
        d = x.shape[-1]
        w_k = self.cross_kv.weight[:d].view(self.h, self.dh, -1)  # (H, dh, d_memory)
        w_v = self.cross_kv.weight[d:].view(self.h, self.dh, -1)
        q = self._split(self.cross_q(x))  # (N, H, T, dh)
        q_mem = torch.einsum("nhtd,hdm->nhtm", q, w_k)  # queries moved into the memory's space
        memory = memory.to(q_mem.dtype)
        scores = torch.einsum("nhtm,nsm->nhts", q_mem, memory) / self.dh ** 0.5
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        context = torch.einsum("nhts,nsm->nhtm", weights, memory)
        out = torch.einsum("nhtm,hdm->nhtd", context, w_v) + self.cross_kv.bias[d:].view(self.h, 1, self.dh)
        return self.cross_out(self._merge(out))

    def unprojected_is_cheaper(self, positions: int) -> bool:
        """Multiply-adds per memory state and feature: 2 T H (unprojected) against 2 d (projected)."""
        return positions * self.h < self.h * self.dh

    def forward(self, x: torch.Tensor, mk: torch.Tensor | None, mv: torch.Tensor | None, mask: torch.Tensor,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None, n_queries: int | None = None,
                memory: torch.Tensor | None = None):
        """``mk``/``mv``: projected memory (beam search's cache); or ``memory`` itself, attended unprojected."""
        q, k, v = (self._split(z) for z in self.qkv(self.ln_self(x)).chunk(3, dim=-1))
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            a = F.scaled_dot_product_attention(q, k, v)  # one new position attends to all cached ones
        else:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.drop(self.self_out(self._merge(a)))
        cross = (self.cross_unprojected(self.ln_cross(x), memory, mask) if memory is not None
                 else self.cross(self.ln_cross(x), mk, mv, mask, n_queries or x.shape[0]))
        x = x + self.drop(cross)
        x = x + self.drop(self.ff(self.ln_ff(x)))
        return x, (k, v)


class CodeDecoder(nn.Module):
    """Decoder stack; inputs are embeddings (the model owns the code embeddings), outputs hidden states."""

    def __init__(self, d_model: int = 384, n_layers: int = 2, n_heads: int = 6, d_ff: int = 1536,
                 d_memory: int = 384, max_length: int = 32, dropout: float = 0.1):
        super().__init__()
        self.d_model = d_model
        self.pos = nn.Embedding(max_length, d_model)
        self.layers = nn.ModuleList(DecoderLayer(d_model, n_heads, d_ff, d_memory, dropout) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)

    @staticmethod
    def _mask(memory_mask: torch.Tensor) -> torch.Tensor:
        return memory_mask.bool()[:, None, None, :]

    def forward(self, inputs: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: inputs (B, T, d) -> hidden (B, T, d), causal."""
        x = inputs + self.pos(torch.arange(inputs.shape[1], device=inputs.device))
        mask = self._mask(memory_mask)
        for layer in self.layers:
            if layer.unprojected_is_cheaper(inputs.shape[1]):
                x, _ = layer(x, None, None, mask, memory=memory)
            else:
                mk, mv = layer.memory_kv(memory)
                x, _ = layer(x, mk, mv, mask)
        return self.ln(x)

    def start(self, memory: torch.Tensor, memory_mask: torch.Tensor, steps: int | None = None) -> DecoderState:
        """Project the memory once for the steps to come; or, when the caller decodes ``steps`` positions with
        one row per memory (no beams) and that is cheaper, keep it unprojected (see ``cross_unprojected``)."""
        if steps is not None and all(layer.unprojected_is_cheaper(steps) for layer in self.layers):
            n = len(self.layers)
            return DecoderState([], [], [None] * n, [None] * n, self._mask(memory_mask), memory.shape[0],
                                memory=memory)
        kv = [layer.memory_kv(memory) for layer in self.layers]
        return DecoderState([], [], [k for k, _ in kv], [v for _, v in kv], self._mask(memory_mask), memory.shape[0])

    def step(self, state: DecoderState, inputs: torch.Tensor) -> tuple[torch.Tensor, DecoderState]:
        """inputs (B*W, d) for the current position -> hidden (B*W, d); caches grow by one position."""
        x = (inputs + self.pos.weight[state.step])[:, None, :]
        first = state.step == 0
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            cache = None if first else (state.self_k[i], state.self_v[i])
            x, (k, v) = layer(x, state.cross_k[i], state.cross_v[i], state.memory_mask, cache, state.n_queries,
                              memory=state.memory)
            new_k.append(k)
            new_v.append(v)
        state.self_k, state.self_v, state.step = new_k, new_v, state.step + 1
        return self.ln(x[:, 0]), state

    @staticmethod
    def reorder(state: DecoderState, rows: torch.Tensor) -> DecoderState:
        """Keep the cache rows of the surviving beams (``rows`` index the flat (B*W) axis)."""
        state.self_k = [k.index_select(0, rows) for k in state.self_k]
        state.self_v = [v.index_select(0, rows) for v in state.self_v]
        if state.memory is not None:  # unprojected: one memory row per decoder row, reordered with it
            state.memory = state.memory.index_select(0, rows)
            state.memory_mask = state.memory_mask.index_select(0, rows)
        return state
