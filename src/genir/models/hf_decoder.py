"""Adapter: the decoder stack of any HF encoder-decoder (T5, BART, ...) driven by docid-code embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class HFDecoderState:
    memory: torch.Tensor  # (B, S, d) per query
    memory_mask: torch.Tensor  # (B, S)
    row_query: torch.Tensor  # (rows,) which query each beam row belongs to
    cache: object = None
    step: int = 0


class HFDecoder(nn.Module):
    """Wraps ``model.get_decoder()``; the HF vocabulary and LM head are not used (codes have their own)."""

    def __init__(self, hf_decoder: nn.Module, d_model: int):
        super().__init__()
        self.stack, self.d_model = hf_decoder, d_model

    def forward(self, inputs: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        out = self.stack(inputs_embeds=inputs, encoder_hidden_states=memory,
                         encoder_attention_mask=memory_mask, use_cache=False)
        return out.last_hidden_state

    def start(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> HFDecoderState:
        return HFDecoderState(memory, memory_mask, torch.arange(memory.shape[0]))

    def step(self, state: HFDecoderState, inputs: torch.Tensor) -> tuple[torch.Tensor, HFDecoderState]:
        out = self.stack(inputs_embeds=inputs[:, None, :], encoder_hidden_states=state.memory[state.row_query],
                         encoder_attention_mask=state.memory_mask[state.row_query],
                         past_key_values=state.cache, use_cache=True)
        state.cache, state.step = out.past_key_values, state.step + 1
        return out.last_hidden_state[:, 0], state

    @staticmethod
    def reorder(state: HFDecoderState, rows: torch.Tensor) -> HFDecoderState:
        state.row_query = state.row_query[rows]
        if state.cache is not None:
            state.cache.reorder_cache(rows)
        return state
