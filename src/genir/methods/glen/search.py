"""LexicalSearcher: constrained beam search over vocabulary-token identifiers (GLEN Sec. 3.4).

- The decoder's outputs are restricted to the tokens that occur in some identifier; scores stay exact
  log P(z | q) (the normaliser is over the whole vocabulary, see
  :meth:`genir.methods.glen.model.LexicalSeq2Seq.step`).
- With the hidden feed every beam of a query shares q_1..q_n, so the decoder runs once per query
  (``shared_steps``; :class:`genir.methods.glen.model.LexicalSeq2Seq`); ``shared_steps=False`` decodes per beam.
- Documents that share an identifier are ranked by cos(w^q, w^d) (GLEN Eq. 9), w = the identifier
  logits; ``tie_break="random"`` shuffles them instead (the paper's Table 5 comparison), in an order fixed
  by the seed and the query text, so that a query gets the same ranking alone or in any batch.
"""

from __future__ import annotations

import copy
import random

import numpy as np
import torch

from genir.docids.table import DocIdTable
from genir.docids.trie import PrefixTree
from genir.search.generative import GenerativeSearcher

TIE_BREAKS = ("cosine", "random")


def collision_order(w_q: np.ndarray, w_docs: np.ndarray) -> np.ndarray:
    """GLEN Eq. 9: documents sharing one identifier, best first by cos(w^q, w^d)."""
    qn = w_q / (np.linalg.norm(w_q) + 1e-12)
    dn = w_docs / (np.linalg.norm(w_docs, axis=1, keepdims=True) + 1e-12)
    return np.argsort(-(dn @ qn), kind="stable")


class LexicalSearcher(GenerativeSearcher):
    def __init__(self, model, table: DocIdTable, doc_logits: np.ndarray, beam: int = 100, batch_size: int = 16,
                 tie_break: str = "cosine", name: str = "glen", show_progress: bool = False, seed: int = 0,
                 restrict: bool = True, shared_steps: bool = True):
        # restrict=False decodes over the whole vocabulary (the slow reference the speed bench compares)
        tokens = np.unique(table.codes[table.codes >= 0]) if restrict else np.arange(model.config.n_codes)
        compact = np.where(table.codes >= 0, np.searchsorted(tokens, table.codes), -1)
        self.compact_table = DocIdTable(table.doc_ids, compact, len(tokens), "lexical-compact")
        model.restrict_outputs(torch.from_numpy(tokens))
        model.shared_steps = shared_steps  # hidden feed: one decoding per query, not per beam
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break must be one of {TIE_BREAKS}, not {tie_break!r}")
        self.doc_logits = np.asarray(doc_logits, dtype=np.float32)
        self.tie_mode, self.seed = tie_break, seed
        self._queries: dict[str, torch.Tensor] = {}  # q_1..q_n per query text, one search call
        super().__init__(model, table, beam=beam, batch_size=batch_size, tie_break=self._order, name=name,
                         show_progress=show_progress, normalize=False, trie=PrefixTree(self.compact_table))
        self.trie_codes = tokens.tolist()  # the inspector shows vocabulary tokens, not compact codes

    def with_tie_break(self, tie_break: str, seed: int = 0) -> LexicalSearcher:
        """The same searcher with another order within an identifier; this one is not changed."""
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break must be one of {TIE_BREAKS}, not {tie_break!r}")
        other = copy.copy(self)
        other.tie_mode, other.seed, other._queries = tie_break, seed, {}
        other.tie_break = other._order
        return other

    def with_beam(self, beam: int) -> LexicalSearcher:
        other = super().with_beam(beam)
        other._queries, other.tie_break = {}, other._order
        return other

    def batch_search(self, queries, k: int = 100):
        try:
            return super().batch_search(queries, k)
        finally:
            self._queries.clear()

    def encode_queries(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        memory, mask = super().encode_queries(texts)
        if self.tie_mode == "cosine" and self.model.feed == "hidden":  # q_1..q_n for the ties, same pass
            hidden, _ = self.model.hidden_states(memory, mask, with_tokens=False)
            self._queries.update(zip(texts, hidden, strict=True))
        return memory, mask

    def _query_states(self, text: str) -> torch.Tensor:
        """q_1..q_n of a query (hidden feed: independent of the identifier)."""
        if text not in self._queries:
            with torch.inference_mode():
                mem, mask = self.model.encode_texts([text])
                self._queries[text] = self.model.hidden_states(mem, mask)[0][0]
        return self._queries[text]

    def _order(self, text: str, docs: list[int]) -> list[int]:
        if self.tie_mode == "random":
            docs = list(docs)
            random.Random(f"{self.seed}:{text}").shuffle(docs)
            return docs
        tokens = torch.as_tensor(self.table.codes[docs[0]])
        if self.model.feed == "hidden":
            with torch.inference_mode():  # w^q_t = q_t . e_{z_t}: only the identifier's own tokens
                w_q = (self._query_states(text) * self.model.word_embeddings[tokens]).sum(-1)
        else:
            with torch.inference_mode():
                mem, mask = self.model.encode_texts([text])
                w_q = self.model.identifier_logits(mem, mask, tokens[None])[0]
        order = collision_order(w_q.float().cpu().numpy(), self.doc_logits[docs])
        return [docs[i] for i in order]
