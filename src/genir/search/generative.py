"""GenerativeSearcher: a trained DocidSeq2Seq + a DocIdTable, searched by constrained beam search."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import torch
from tqdm.auto import tqdm

from genir.docids.table import DocIdTable
from genir.docids.trie import PrefixTree
from genir.search.base import Hit, Results, Searcher
from genir.search.beam import beam_search
from genir.search.shared_encoding import QueryEncoder

# (query text, document indices sharing one docid) -> the same indices, best first
TieBreak = Callable[[str, list[int]], list[int]]


class GenerativeSearcher(Searcher):
    """Each generated docid expands to every document that carries it, in ``tie_break`` order
    (corpus order by default), all with the docid's score."""

    def __init__(self, model, table: DocIdTable, beam: int = 100, batch_size: int = 16,
                 tie_break: TieBreak | None = None, name: str = "generative", show_progress: bool = False,
                 normalize: bool = True, trie: PrefixTree | None = None):
        self.model, self.table, self.beam, self.batch_size = model.eval(), table, beam, batch_size
        self.trie, self.normalize = trie or PrefixTree(table), normalize
        self.tie_break, self.name, self.show_progress = tie_break, name, show_progress
        self.trie_codes: list[int] | None = None  # the table's code of each trie code, when they differ
        self.shared_encoding = None  # a SharedEncoding its queries go through (genir.search.shared_encoding)
        self.decoder_dtype: torch.dtype | None = None  # bf16: the decoder's steps under autocast (``with_decoder``)
        self.prefix_beam: int | None = None  # unfinished prefixes kept per step (``with_prefix_beam``)

    def with_decoder(self, precision: str) -> GenerativeSearcher:
        """This searcher with its decoder's steps (beam search and tie ordering) in ``precision`` ("fp32",
        "bf16": ``torch.autocast``, which keeps softmax and layer norms in fp32); the encoder is untouched."""
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"decoder precision {precision!r}: choose fp32 or bf16")
        self.decoder_dtype = torch.bfloat16 if precision == "bf16" else None
        return self

    def with_prefix_beam(self, prefix_beam: int | None) -> GenerativeSearcher:
        """This searcher keeping at most ``prefix_beam`` unfinished docid prefixes per step (None: the beam);
        the beam's last step still yields ``beam`` docids. A search-time speed/ranking trade-off."""
        if prefix_beam is not None and prefix_beam < 1:
            raise ValueError(f"prefix beam {prefix_beam}: at least 1")
        self.prefix_beam = prefix_beam
        return self

    def _search(self, memory: torch.Tensor, mask: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        with self._decoder_precision(memory.device):
            return beam_search(self.model, self.trie, memory, mask, self.beam, self.normalize,
                               prefix_beam=self.prefix_beam, **kwargs)

    def _decoder_precision(self, device: torch.device):
        return torch.autocast(device.type, dtype=self.decoder_dtype or torch.bfloat16,
                              enabled=self.decoder_dtype is not None)

    def batch_search(self, queries: Mapping[str, str], k: int = 100) -> Results:
        qids = sorted(queries, key=lambda q: len(queries[q]))  # similar lengths per batch: little padding
        out: Results = {}
        starts = range(0, len(qids), self.batch_size)
        for s in tqdm(starts, desc=f"search {self.name}", disable=not self.show_progress):
            batch = qids[s: s + self.batch_size]
            texts = [queries[q] for q in batch]
            with torch.inference_mode():
                memory, mask = self.encode_queries(texts)
                final: dict = {}
                nodes, scores = self._search(memory, mask, final=final)
                # per query: (score, documents) of its docids, best first, until k documents
                columns: list[list[int]] = []
                found = self.trie.leaf_docs.ranked(nodes.cpu().numpy(), scores.cpu().numpy(), k, columns)
                ties = [(i, j) for i, hits in enumerate(found) for j, (_, docs) in enumerate(hits) if len(docs) > 1]
                if ties:  # the whole batch's shared docids ordered at once
                    beams = [(i, columns[i][j]) for i, j in ties]  # the final beam of each shared docid
                    with self._decoder_precision(memory.device):
                        ordered = self.order_ties(texts, memory, mask, [(i, found[i][j][1]) for i, j in ties],
                                                  final_rows=(final["state"], nodes.shape[1], beams))
                    for (i, j), docs in zip(ties, ordered, strict=True):
                        found[i][j] = (found[i][j][0], docs)
            for qid, hits in zip(batch, found, strict=True):
                out[qid] = [Hit(self.table.doc_ids[d], score) for score, docs in hits for d in docs][:k]
        return {q: out[q] for q in queries}

    def order_ties(self, texts: list[str], memory: torch.Tensor, mask: torch.Tensor,
                   groups: list[tuple[int, list[int]]], final_rows: tuple | None = None) -> list[list[int]]:
        """Documents sharing a docid, best first: (query row in the batch, table rows) -> table rows.
        ``tie_break`` per group, or corpus order; a subclass may order every group of a batch at once, and
        may read ``final_rows``: (the beam search's final state, its width W, each group's (query, beam))."""
        if self.tie_break is None:
            return [docs for _, docs in groups]
        return [self.tie_break(texts[i], docs) for i, docs in groups]

    def inspect(self, query: str, k: int = 10, top: int = 10) -> dict:
        """The beam's expansion for one query, step by step: the ``top`` beams after each step (docid prefix
        in the table's codes, score, the beam it grew from), and the hits with the beam that found them."""
        trace: list[dict] = []
        with torch.inference_mode():
            memory, mask = self.encode_queries([query])
            nodes, scores = self._search(memory, mask, trace=trace)
        hits = self.batch_search({"q": query}, k)["q"]
        eos = self.trie.eos if self.trie.needs_eos else None

        def codes(node: int) -> list[int]:
            seq = [c for c in self.trie.prefix(node) if c != eos]
            return [int(self.trie_codes[c]) for c in seq] if self.trie_codes is not None else seq

        steps = []
        for t, step in enumerate(trace):
            beams = [{"prefix": codes(n), "score": s, "from": p}
                     for n, s, p in zip(step["nodes"], step["scores"], step["parents"], strict=True)
                     if s > float("-inf")]
            steps.append({"step": t + 1, "beams": len(beams), "top": beams[:top]})
        final = {}
        for rank, (node, score) in enumerate(zip(nodes[0].tolist(), scores[0].tolist(), strict=True)):
            if score > float("-inf") and node in self.trie.leaf_docs:
                for d in self.trie.leaf_docs[node]:
                    final[self.table.doc_ids[d]] = {"beam": rank, "docid": codes(node)}
        return {"query": query, "beam": self.beam, "prefix_beam": self.prefix_beam, "steps": steps,
                "hits": [{"doc_id": h.doc_id, "score": h.score, **final.get(h.doc_id, {})} for h in hits]}

    def with_beam(self, beam: int) -> GenerativeSearcher:
        """The same searcher (model, trie, tie-break) at another beam size; this one is not changed."""
        other = copy.copy(self)
        other.beam = beam
        return other

    def encode_queries(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states of a batch of queries (a subclass may keep what its tie-break needs)."""
        texts = self.model.query_texts(texts)
        if self.shared_encoding is not None:
            return self.shared_encoding.encode(texts, self.model.config.query_max_length)
        return self.model.encode_texts(texts)

    def shared_query_encoder(self) -> QueryEncoder:
        """What this searcher reads queries with (searchers whose encoders agree share one pass)."""
        m = self.model
        precision = getattr(m.encoder, "precision", "fp32")
        weights = m.encoder.inner if precision == "bf16" else m.encoder  # a bf16 pass shares fp32 weights
        return QueryEncoder(m.tokenizer, m.encode, weights, m.config.query_max_length, m.code_embed.weight.device,
                            precision)

    def index_bytes(self) -> int:
        """The trie plus every decoder-side parameter (the model is the index; the encoder is not)."""
        dec = sum(p.numel() * p.element_size() for n, p in self.model.named_parameters()
                  if not n.startswith("encoder."))
        return int(self.trie.nbytes() + dec)


class StateOrderedSearcher(GenerativeSearcher):
    """Documents sharing a docid z ranked by q_T . d_T: the query's last decoder state given z_<T against
    each document's stored state d_T (``doc_states``, table order), the score a model such as GenRet's is
    trained to rank documents by (GenRet Eq. 10). The model provides ``hidden(memory, mask, prefix)``."""

    def __init__(self, model, table: DocIdTable, doc_states, **kwargs):
        import numpy as np

        self.doc_states = torch.as_tensor(np.asarray(doc_states, dtype=np.float32))
        super().__init__(model, table, **kwargs)

    def order_ties(self, texts: list[str], memory: torch.Tensor, mask: torch.Tensor,
                   groups: list[tuple[int, list[int]]], final_rows: tuple | None = None) -> list[list[int]]:
        """q_T for every group of the batch, then each group's documents by q_T . d_T. q_T is the state the
        beam search's last step computed for the group's beam (its prefix z_<T) when the model keeps it
        (``last_hidden``) and the docid is as long as the steps decoded; else one decoder pass per prefix
        length (one pass per group was most of GenRet's search time once)."""
        out: list[list[int] | None] = [None] * len(groups)
        by_length: dict[int, list[int]] = {}
        for g, (_, docs) in enumerate(groups):
            by_length.setdefault(len(self.table.sequence(docs[0])), []).append(g)
        steps, kept = (-1, None)
        if final_rows is not None and hasattr(self.model, "last_hidden") and not self.trie.needs_eos:
            steps, kept = self.model.last_hidden(final_rows[0])
        for length, members in by_length.items():
            if kept is not None and length == steps:  # each group's own final beam row: no decoder pass
                width, beams = final_rows[1], final_rows[2]
                q_last = kept[torch.tensor([beams[g][0] * width + beams[g][1] for g in members], device=kept.device)]
                q_last = q_last.float().cpu()
            else:
                rows = torch.tensor([groups[g][0] for g in members], device=memory.device)
                prefix = torch.tensor([self.table.sequence(groups[g][1][0])[:-1] for g in members],
                                      dtype=torch.long, device=memory.device)
                with torch.inference_mode():
                    q_last = self.model.hidden(memory[rows], mask[rows], prefix)[:, -1].float().cpu()
            for g, q in zip(members, q_last, strict=True):
                docs = groups[g][1]
                scores = self.doc_states[docs] @ q
                out[g] = [docs[i] for i in torch.argsort(-scores, stable=True).tolist()]
        return out
