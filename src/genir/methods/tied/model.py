"""Tied-Atomic's model (Sec. 4): the seq2seq retriever whose first decoding step's hidden state is the text's
vector (h_query, h_doc of Eq. 2); in the residual form (genir's own extension, not in the paper) that vector
is the encoder's sentence embedding plus a learned residual of the decoder state that starts at 0."""

from __future__ import annotations

import torch
from torch import nn

from genir.models.pooling import mean_pooled
from genir.models.seq2seq import DocidSeq2Seq, ModelConfig, register_architecture

ARCHITECTURE = "tied"


@register_architecture(ARCHITECTURE)
class TiedSeq2Seq(DocidSeq2Seq):
    """``config.extra``: ``tied_residual`` (the residual form), ``tied_query_residual`` (queries carry a
    residual too), ``tied_temperature`` and ``tied_residual_weight`` (read by the objectives)."""

    def __init__(self, config: ModelConfig, _hf_dir: str | None = None, _from_config: bool = False):
        config.extra = {**config.extra, "architecture": ARCHITECTURE}
        super().__init__(config, _hf_dir, _from_config)
        d = self.code_embed.weight.shape[1]
        self.tied_residual = bool(config.extra.get("tied_residual"))
        # residual form, tied.query_residual=false: queries keep the sentence embedding, documents learn a residual
        self.tied_query_residual = bool(config.extra.get("tied_query_residual", True))
        if self.tied_residual:
            self.tied_proj = nn.Linear(d, self.d_model)
            nn.init.zeros_(self.tied_proj.weight)
            nn.init.zeros_(self.tied_proj.bias)

    def first_hidden(self, memory: torch.Tensor, memory_mask: torch.Tensor,
                     residual_scale: float = 1.0) -> torch.Tensor:
        """The decoder's last hidden state at the first decoding step (input: the start code), (B, d).

        Tied-Atomic's text vector: h_query and h_doc of Eq. 2 (differentiable; equals ``step`` from ``start``).
        With ``tied_residual`` it is ``tied_output`` of that state: the sentence embedding plus a residual.
        """
        if self.tied_residual and residual_scale == 0:  # the sentence embedding alone: no decoder pass
            return self.sentence_vector(memory, memory_mask)
        start = self.code_embed.weight[self.bos].expand(memory.shape[0], 1, -1)
        hidden = self.decoder(start, memory, memory_mask)[:, 0]
        return self.tied_output(hidden, self.sentence_vector(memory, memory_mask) if self.tied_residual else None,
                                residual_scale)

    def query_vector(self, memory: torch.Tensor, memory_mask: torch.Tensor,
                     residual_scale: float = 1.0) -> torch.Tensor:
        """Tied-Atomic's query vector: ``first_hidden``, or (residual form without a query residual) the
        encoder's sentence embedding alone, with no decoder pass."""
        return self.first_hidden(memory, memory_mask, residual_scale * self.query_residual_scale)

    @property
    def query_residual_scale(self) -> float:
        """1, or 0 where queries carry no residual (the residual form with ``tied_query_residual`` off)."""
        return 0.0 if self.tied_residual and not self.tied_query_residual else 1.0

    def sentence_vector(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Mean of the encoder states over the text's tokens, unit length: MiniLM's own sentence embedding
        (sentence-transformers' mean pooling + normalisation)."""
        return mean_pooled(memory, memory_mask)

    def tied_output(self, hidden: torch.Tensor, sentence: torch.Tensor | None,
                    residual_scale: float = 1.0) -> torch.Tensor:
        """Tied-Atomic's vector from a first-step decoder state: the state itself, or (``tied_residual``)
        the sentence embedding plus the projected state (0 before training), scaled by ``residual_scale``.

        The scale is the projection's weights interpolated between their start (0) and their trained values:
        WiSE-FT (Wortsman et al., 2022) on the one layer that carries the residual; 1 is the trained model."""
        if sentence is None:
            return hidden
        return sentence + residual_scale * self.tied_proj(hidden)  # x 1.0 is exact: the trained model as is

    @property
    def tied_dim(self) -> int:
        return self.d_model if self.tied_residual else self.decoder.d_model
