"""CodebookSeq2Seq: a DocidSeq2Seq whose output at docid step t is a dot-product look-up in a codebook
E_t of its own (GenRet Sec. 3.1). The same network is GenRet's tokenization model Q(z|d) (document in)
and its retrieval model P(z|q) (query in).

- GenRet Eq. 2: d_t = Decoder(Encoder(d), z_<t), the decoder's last hidden state at step t.
- GenRet Eq. 3: Q(z_t = j | z_<t, d) = softmax_j(d_t . E_t^T), E_t in R^{K x D}, one codebook per step.
- GenRet Eq. 4: z_t = argmax_j Q(z_t = j | z_<t, d).

The code z_{t-1} is fed back through an input embedding of its own step (codes of different steps are
different vocabularies). The decoder's output layer is the codebook of the current step plus an
end-of-docid column that is never allowed (-inf): GenRet docids have a fixed length M.
"""

from __future__ import annotations

import torch
from torch import nn

from genir.models.seq2seq import DocidSeq2Seq, ModelConfig, register_architecture

ARCHITECTURE = "codebook"


@register_architecture(ARCHITECTURE)
class CodebookSeq2Seq(DocidSeq2Seq):
    """``config.n_codes`` = K (codes per step); ``config.max_docid_length`` = M (docid length);
    ``config.extra["architecture"] == "codebook"`` so that :meth:`DocidSeq2Seq.load` rebuilds this class."""

    def __init__(self, config: ModelConfig, _hf_dir: str | None = None, _from_config: bool = False):
        config.extra = {**config.extra, "architecture": ARCHITECTURE}
        super().__init__(config, _hf_dir, _from_config)
        k, m, d = config.n_codes, config.max_docid_length, self.code_embed.weight.shape[1]
        del self.head  # replaced by one codebook per step
        self.codebooks = nn.ParameterList(nn.Parameter(torch.randn(k, d) * d ** -0.5) for _ in range(m))
        # input embedding of z_{t-1}, one table per step; row 0 of code_embed (inherited) is unused,
        # its start row (bos) feeds step 1
        self.step_embed = nn.ModuleList(nn.Embedding(k, d) for _ in range(max(m - 1, 1)))
        for e in self.step_embed:
            nn.init.normal_(e.weight, std=0.02)

    @property
    def n_steps(self) -> int:
        return len(self.codebooks)

    # -- teacher forcing -------------------------------------------------------------------------
    def _inputs(self, prefix: torch.Tensor) -> torch.Tensor:
        """Decoder inputs for steps 1..T from the prefix z_1..z_{T-1} (B, T-1): [start, e(z_1), ...]."""
        b = prefix.shape[0]
        start = self.code_embed.weight[self.bos].expand(b, 1, -1)
        if prefix.shape[1] == 0:
            return start
        prev = [self.step_embed[t](prefix[:, t].clamp(min=0)) for t in range(prefix.shape[1])]
        return torch.cat([start, torch.stack(prev, 1)], 1)

    @property
    def state_scale(self) -> float:
        """d_t = decoder state x D^-1/4, so that a dot product of two of them (Eq. 3, 6, 10) carries the
        1/sqrt(D) of attention logits. Unscaled, the layer-normed states (norm ~ sqrt(D)) give dot products
        in the hundreds: the reconstruction softmax saturates and exp(H / eps) of Sinkhorn is one-hot."""
        return self.decoder.d_model ** -0.25

    def hidden(self, memory: torch.Tensor, memory_mask: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """GenRet Eq. 2: d_1..d_T (B, T, D) given the fixed prefix z_1..z_{T-1} (B, T-1)."""
        return self.decoder(self._inputs(prefix), memory, memory_mask) * self.state_scale

    def step_logits(self, hidden: torch.Tensor, t: int) -> torch.Tensor:
        """GenRet Eq. 3 (before the softmax): d_t . E_t^T, (..., K); ``t`` counts from 0."""
        return hidden @ self.codebooks[t].T

    def code_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, D) hidden states of steps 1..T -> (B, T, K) logits, each step against its own codebook."""
        return torch.stack([self.step_logits(hidden[:, t], t) for t in range(hidden.shape[1])], 1)

    def _with_eos(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.cat([logits, torch.full_like(logits[..., :1], float("-inf"))], -1)

    def forward(self, memory: torch.Tensor, memory_mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Teacher forcing over full docids, as every DSI-style objective calls it: (B, T) -> (B, T, K + 1)."""
        hidden = self.hidden(memory, memory_mask, targets[:, :-1].clamp(min=0))
        return self._with_eos(self.code_logits(hidden))

    # -- incremental decoding (beam search, tokenization) ------------------------------------------
    def start(self, memory: torch.Tensor, memory_mask: torch.Tensor):
        return (0, self.decoder.start(memory, memory_mask), None)

    def step(self, state, prev_codes: torch.Tensor) -> tuple[torch.Tensor, object]:
        t, inner, _ = state
        if t >= self.n_steps:
            raise ValueError(f"docids have {self.n_steps} steps; step {t + 1} was asked for")
        inputs = (self.code_embed(prev_codes) if t == 0 else self.step_embed[t - 1](prev_codes.clamp(0, None)))
        hidden, inner = self.decoder.step(inner, inputs)
        hidden = hidden * self.state_scale
        return self._with_eos(self.step_logits(hidden, t)), (t + 1, inner, hidden)

    def reorder(self, state, rows: torch.Tensor):
        t, inner, hidden = state
        return (t, self.decoder.reorder(inner, rows), None if hidden is None else hidden.index_select(0, rows))

    @staticmethod
    def last_hidden(state) -> tuple[int, torch.Tensor | None]:
        """(steps decoded, d_t of every beam row at the last of them): after a beam search, each final beam's
        q_T given its own prefix z_<T, the state Eq. 10 ranks documents sharing that docid by."""
        return state[0], state[2]

    @torch.no_grad()
    def assign_codes(self, memory: torch.Tensor, memory_mask: torch.Tensor, steps: int | None = None,
                 prefix: torch.Tensor | None = None) -> torch.Tensor:
        """GenRet Eq. 4, step by step: z_t = argmax_j d_t . E_t^T, feeding back its own codes (B, steps).

        A given ``prefix`` (B, P) is kept and only the later steps are decoded (progressive training fixes
        z_<T and tokenizes step T)."""
        steps = self.n_steps if steps is None else steps
        b = memory.shape[0]
        codes = torch.empty(b, 0, dtype=torch.long, device=memory.device)
        if prefix is not None:
            codes = prefix.to(memory.device).long()
        for t in range(codes.shape[1], steps):
            hidden = self.hidden(memory, memory_mask, codes)[:, -1]
            codes = torch.cat([codes, self.step_logits(hidden, t).argmax(-1, keepdim=True)], 1)
        return codes
