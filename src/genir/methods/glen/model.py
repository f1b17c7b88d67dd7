"""LexicalSeq2Seq: docids are words of the backbone's own vocabulary (GLEN, Lee et al., Sec. 3.2).

- GLEN Eq. 2: d_t = Dec(Enc(d), d_<t): the decoder is fed its own previous final hidden states, not the
  embeddings of the previous tokens (``feed="hidden"``; ``feed="token"`` is the ablation that feeds e_{z_<t}).
- GLEN Eq. 2-3: z_t = argmax_j d_t . e_j and P(z_t = j) = softmax_j(d_t . E^T) over the backbone's word
  embedding matrix E (|V| x m): the bundled MiniLM's WordPiece embeddings, or T5's.

The decoder works at the embedding width m. Dot products with E are unscaled, as Eq. 3 writes them (the
authors' T5 code multiplies by m^-0.5, as T5's tied head does; with MiniLM's unit-norm word embeddings that
left every logit within about +-1 and phase 1 stuck at the uniform loss, log |V| = 10.3).
For search, :meth:`restrict_outputs` limits the decoder's outputs to the tokens that occur in some
identifier while keeping P(z | q) exact: the normaliser of every step is still the log-sum-exp over the
whole vocabulary, and the scores returned are log-probabilities (search with ``normalize=False``).

With the hidden feed, d_t does not depend on the tokens chosen before it (Eq. 2 feeds d_<t, not z_<t), so
every beam of a query has the same q_1..q_n and log P(z | q) = sum_t log softmax(q_t . E^T)[z_t] exactly.
Search then decodes n steps once per query, not once per beam (``shared_steps``, the default): the
full-vocabulary normaliser is paid for B x n rows instead of B x beam x n. ``shared_steps=False`` keeps
the per-beam decoding (what the token feed needs) as the reference.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from genir.models.seq2seq import DocidSeq2Seq, ModelConfig, register_architecture

ARCHITECTURE = "lexical"


class _PerQuery(NamedTuple):
    """Search state of the shared decoding: per-query step scores and the query of each beam row."""
    logp: torch.Tensor  # (queries, n, outputs)
    rows: torch.Tensor  # (rows,) query index
    t: int


@register_architecture(ARCHITECTURE)
class LexicalSeq2Seq(DocidSeq2Seq):
    """``config.n_codes`` = |V|; ``config.max_docid_length`` = n; ``config.extra["feed"]`` = hidden | token."""

    def __init__(self, config: ModelConfig, _hf_dir: str | None = None, _from_config: bool = False):
        config.extra = {**config.extra, "architecture": ARCHITECTURE}
        super().__init__(config, _hf_dir, _from_config)
        self.feed = config.extra.get("feed", "hidden")
        if self.feed not in ("hidden", "token"):
            raise ValueError(f"feed must be 'hidden' or 'token', not {self.feed!r}")
        if self.decoder.d_model != self.word_embeddings.shape[1]:
            raise ValueError(f"GLEN's decoder works at the word-embedding width {self.word_embeddings.shape[1]}; "
                             f"got decoder width {self.decoder.d_model} (set decoder_dim to it)")
        config.n_codes = self.word_embeddings.shape[0]  # |V|: identifiers are vocabulary tokens
        del self.head  # the output layer is the word-embedding matrix E
        # only the start input needs an embedding of its own (later inputs are d_<t or e_{z_<t})
        self.code_embed = nn.Embedding(2, self.decoder.d_model)
        nn.init.normal_(self.code_embed.weight, std=0.02)
        self.eos, self.bos = 0, 1
        self.register_buffer("output_tokens", torch.empty(0, dtype=torch.long), persistent=False)
        self.shared_steps = True  # search: decode once per query when the hidden feed allows it (see above)

    @property
    def word_embeddings(self) -> torch.Tensor:
        """E (|V| x m): the encoder's input word embeddings, shared (GLEN ties them to the output)."""
        return self.encoder.get_input_embeddings().weight

    @property
    def n_steps(self) -> int:
        return self.config.max_docid_length

    def vocab_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """GLEN Eq. 3 before the softmax: d_t . E^T, over the whole vocabulary."""
        return hidden @ self.word_embeddings.T

    def _next_input(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return hidden if self.feed == "hidden" else self.word_embeddings[tokens]

    # -- training: n steps, each fed the previous step's output --------------------------------------
    def hidden_states(self, memory: torch.Tensor, memory_mask: torch.Tensor, targets: torch.Tensor | None = None,
                      steps: int | None = None, with_tokens: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """d_1..d_n (B, n, m) and the tokens z_1..z_n (B, n). With ``targets`` (token feed only) the decoder
        is teacher-forced on them; the hidden feed needs none (its inputs are d_<t themselves), and
        ``with_tokens=False`` then skips the argmax over the vocabulary (tokens None)."""
        steps = steps or self.n_steps
        need_tokens = with_tokens or (self.feed == "token" and targets is None)
        state = self.decoder.start(memory, memory_mask, steps=steps)  # one row per text: no beams to share keys
        x = self.code_embed.weight[self.bos].expand(memory.shape[0], -1)
        hidden, tokens = [], []
        for t in range(steps):
            h, state = self.decoder.step(state, x)
            z = self.vocab_logits(h).argmax(-1) if need_tokens else None
            hidden.append(h)
            tokens.append(z)
            fed = targets[:, t].clamp(min=0) if targets is not None else z
            x = self._next_input(h, fed)
        return torch.stack(hidden, 1), (torch.stack(tokens, 1) if need_tokens else None)

    def forward(self, memory: torch.Tensor, memory_mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, n) target tokens -> (B, n, |V| + 1) logits (end-of-docid never allowed), Eq. 4's CE input."""
        hidden, _ = self.hidden_states(memory, memory_mask, targets, targets.shape[1], with_tokens=False)
        logits = self.vocab_logits(hidden)
        return torch.cat([logits, torch.full_like(logits[..., :1], float("-inf"))], -1)

    @torch.no_grad()
    def assign_ids(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GLEN Eq. 2 for documents: greedy identifiers (B, n) and their identifier logits
        w_t = d_t . e_{z_t} (B, n), the w^d of Eq. 9."""
        hidden, tokens = self.hidden_states(memory, memory_mask)
        logits = self.vocab_logits(hidden)
        return tokens, logits.gather(-1, tokens[..., None])[..., 0]

    # -- search -----------------------------------------------------------------------------------
    def restrict_outputs(self, tokens: torch.Tensor) -> None:
        """Decode over these vocabulary tokens only (the ones identifiers use); codes become their positions."""
        self.output_tokens = tokens.to(self.word_embeddings.device).long()

    def _allowed_logp(self, hidden: torch.Tensor) -> torch.Tensor:
        """log softmax over the whole vocabulary, kept for the allowed tokens, plus a never-allowed eos."""
        full = self.vocab_logits(hidden).float()
        logp = full[..., self.output_tokens] - torch.logsumexp(full, -1, keepdim=True)
        return torch.cat([logp, torch.full_like(logp[..., :1], float("-inf"))], -1)

    def start(self, memory: torch.Tensor, memory_mask: torch.Tensor):
        if self.feed == "hidden" and self.shared_steps:
            # every step's scores of every query at once: (B, n, outputs); rows index queries
            hidden, _ = self.hidden_states(memory, memory_mask, with_tokens=False)
            return _PerQuery(self._allowed_logp(hidden), torch.arange(memory.shape[0], device=memory.device), 0)
        return (self.decoder.start(memory, memory_mask), None)

    def step(self, state, prev_codes: torch.Tensor) -> tuple[torch.Tensor, object]:
        """Exact log P(z_t | q, d_<t) of the allowed tokens (rows, len(output_tokens) + 1)."""
        if isinstance(state, _PerQuery):
            return state.logp[state.rows, state.t], _PerQuery(state.logp, state.rows, state.t + 1)
        inner, last_hidden = state
        if last_hidden is None:
            x = self.code_embed(prev_codes)
        else:
            x = self._next_input(last_hidden, self.output_tokens[prev_codes.clamp(0, len(self.output_tokens) - 1)])
        hidden, inner = self.decoder.step(inner, x)
        return self._allowed_logp(hidden), (inner, hidden)

    def reorder(self, state, rows: torch.Tensor):
        if isinstance(state, _PerQuery):
            return _PerQuery(state.logp, state.rows[rows], state.t)
        inner, last_hidden = state
        return (self.decoder.reorder(inner, rows), None if last_hidden is None else last_hidden.index_select(0, rows))

    def identifier_logits(self, memory: torch.Tensor, memory_mask: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """w^q_t = q_t . e_{z_t} for given identifiers (B, n), q_t decoded with the hidden (or token) feed."""
        hidden, _ = self.hidden_states(memory, memory_mask, tokens if self.feed == "token" else None,
                                       with_tokens=False)
        return self.vocab_logits(hidden).gather(-1, tokens[..., None])[..., 0]
