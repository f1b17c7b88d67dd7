"""Training examples (text -> document) and cached encoder states for frozen-encoder training.

DSI's multi-task recipe: indexing examples (document text and pseudo-queries -> its docid) and retrieval
examples (training query -> each relevant document's docid), mixed in one stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from genir.data.collection import Collection
from genir.data.pseudo_queries import PseudoQueries


@dataclass
class IndexingExamples:
    """``texts`` (unique strings), examples ``(text index, document index, kind)``, and ``doc_text``: the
    text index of each document's own text (its first indexing text, the leading span)."""

    texts: list[str]
    examples: list[tuple[int, int, str]]
    doc_text: dict[int, int] = field(default_factory=dict)


def build_dsi_examples(collection: Collection, pseudo_queries: PseudoQueries, train_split: str | None,
                       doc_index: dict[str, int] | None = None) -> IndexingExamples:
    """Indexing: every pseudo-query of every document; retrieval: training queries -> relevant documents."""
    if doc_index is None:
        doc_index = {d: i for i, d in enumerate(collection.corpus)}
    texts: list[str] = []
    text_id: dict[str, int] = {}
    examples: list[tuple[int, int, str]] = []
    doc_text: dict[int, int] = {}

    def add(text: str, doc: int, kind: str) -> None:
        if not text.strip():
            text = "(empty document)"
        if text not in text_id:
            text_id[text] = len(texts)
            texts.append(text)
        examples.append((text_id[text], doc, kind))
        if kind == "indexing":
            doc_text.setdefault(doc, text_id[text])

    for d, queries in pseudo_queries.items():
        if d in doc_index:
            for q in queries or [collection.corpus[d].full_text]:
                add(q, doc_index[d], "indexing")
    for d in collection.corpus:  # documents without any pseudo-query are still indexed by their text
        if d in doc_index and d not in pseudo_queries:
            add(collection.corpus[d].full_text, doc_index[d], "indexing")
    if train_split:
        for qid, rels in collection.qrels_for(train_split).items():
            for d, grade in rels.items():
                if grade > 0 and d in doc_index:
                    add(collection.queries[qid], doc_index[d], "retrieval")
    return IndexingExamples(texts, examples, doc_text)


def _firsts(lengths: torch.Tensor) -> torch.Tensor:
    """Each run's first row where runs of ``lengths`` rows lie one after another."""
    return torch.cumsum(lengths, 0) - lengths


class EncodedTexts:
    """Frozen-encoder states of many texts, kept once in float16: each text's real tokens only, one text after
    another (``flat``; text i is ``lengths[i]`` rows from ``starts[i]``), so that a title beside a long
    leading text costs its own tokens, not ``max_length`` of them (52k texts padded to 256 tokens were 10 GB,
    twice that while built)."""

    def __init__(self, model, texts: list[str], max_length: int, batch_size: int = 64,
                 show_progress: bool = True, desc: str = "encode (frozen encoder)"):
        from genir.distributed import is_main, map_ragged

        self.max_length = max_length
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-sorted: little padding

        def encode(rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
            parts, lengths = [], []
            for s in tqdm(range(0, len(rows), batch_size), desc=desc, disable=not (show_progress and is_main())):
                part, mask = model.encode_texts([texts[i] for i in rows[s: s + batch_size]], max_length)
                mask = mask.bool().cpu()
                parts.append(part.to(torch.float16).cpu()[mask])  # row-major: each text's tokens in order
                lengths.append(mask.sum(1))
            return torch.cat(parts), torch.cat(lengths)

        was_training = model.encoder.training
        model.encoder.eval()
        with torch.inference_mode():  # several processes: each encodes a shard, all get every text
            self.flat, in_order = map_ragged(encode, order)
        model.encoder.train(was_training)
        starts_in_order = _firsts(in_order)
        self.lengths = torch.zeros(len(texts), dtype=torch.long)
        self.starts = torch.zeros(len(texts), dtype=torch.long)
        index = torch.tensor(order, dtype=torch.long)
        self.lengths[index], self.starts[index] = in_order, starts_in_order

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def joined(cls, first: EncodedTexts, second: EncodedTexts) -> EncodedTexts:
        """The texts of ``first`` then those of ``second`` (same max_length), as one store."""
        if first.max_length != second.max_length:
            raise ValueError("joined EncodedTexts need the same max_length")
        out = cls.__new__(cls)
        out.max_length = first.max_length
        out.flat = torch.cat([first.flat, second.flat])
        out.lengths = torch.cat([first.lengths, second.lengths])
        out.starts = torch.cat([first.starts, second.starts + len(first.flat)])
        return out

    def save(self, path) -> None:
        """States and their layout as safetensors (no pickle: a run folder someone sends cannot run code)."""
        from safetensors.torch import save_file

        from genir.io import atomic_path

        with atomic_path(path) as tmp:
            save_file({"flat": self.flat.contiguous(), "starts": self.starts, "lengths": self.lengths}, str(tmp),
                      metadata={"max_length": str(self.max_length)})

    @classmethod
    def load(cls, path) -> EncodedTexts:
        from safetensors import safe_open

        out = cls.__new__(cls)
        with safe_open(str(path), framework="pt") as f:
            out.max_length = int(f.metadata()["max_length"])
            if "flat" in f.keys():
                out.flat, out.starts, out.lengths = (f.get_tensor(k) for k in ("flat", "starts", "lengths"))
            else:  # a run folder from before the ragged layout: padded states and their masks
                states, mask = f.get_tensor("states"), f.get_tensor("mask")
                out.flat, out.lengths = states[mask], mask.sum(1).long()
                out.starts = _firsts(out.lengths)
        return out

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The states of texts ``idx`` padded to the longest of them (zeros past each text's end) and the mask."""
        device = self.flat.device  # the store stays where it was built (the CPU); callers move a batch
        index = torch.as_tensor(idx, dtype=torch.long, device=device)
        lengths, starts = self.lengths[index], self.starts[index]
        rows, n, total = len(index), int(lengths.max()) if len(index) else 0, int(lengths.sum())
        # token j of text b: flat[starts[b] + j] -> out[b * n + j]; one gather and one scatter over the batch
        within = torch.arange(total, device=device) - torch.repeat_interleave(_firsts(lengths), lengths,
                                                                              output_size=total)
        source = torch.repeat_interleave(starts, lengths, output_size=total) + within
        target = torch.repeat_interleave(torch.arange(rows, device=device) * n, lengths, output_size=total) + within
        states = torch.zeros(rows * n, self.flat.shape[-1], device=device)
        states.index_copy_(0, target, self.flat.index_select(0, source).float())
        return states.view(rows, n, -1), torch.arange(n, device=device)[None, :] < lengths[:, None]


class TextInputs:
    """How training texts reach the model, the one data path of both encoder modes.

    - frozen (``encoded`` given): every text's encoder states, computed once (:class:`EncodedTexts`);
      batches carry ``{name}memory`` and ``{name}mask``;
    - full fine-tuning (``encoded`` None): batches carry token ids, ``{name}input_ids`` and ``{name}mask``,
      and the objective streams them through the trainable encoder (:func:`~genir.training.objectives.memory_of`).

    ``name`` prefixes the keys of one side of a batch (``"q_"`` queries, ``"d_"`` documents).
    """

    def __init__(self, texts: list[str], max_length: int, model, encoded: EncodedTexts | None = None):
        self.texts, self.max_length, self.model, self.encoded = texts, max_length, model, encoded

    def features(self, idx: list[int], name: str = "") -> dict[str, torch.Tensor]:
        """A batch's inputs for texts ``idx``, on the CPU (the training loop moves them)."""
        if self.encoded is not None:
            memory, mask = self.encoded.batch(list(idx))
            return {f"{name}memory": memory, f"{name}mask": mask}
        tokens = self.model.tokenize([self.texts[i] for i in idx], self.max_length)
        return {f"{name}input_ids": tokens["input_ids"], f"{name}mask": tokens["attention_mask"]}

    @torch.no_grad()
    def states(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states of texts ``idx`` on the model's device, without gradient: the cache, or the
        current encoder (dropout off) when it is being fine-tuned. For whole-corpus passes during training
        (GenRet's bank and k-means, GLEN's identifiers)."""
        device = next(self.model.parameters()).device
        if self.encoded is not None:
            memory, mask = self.encoded.batch(list(idx))
            return memory.to(device), mask.to(device)
        was_training = self.model.encoder.training
        self.model.encoder.eval()
        try:
            return self.model.encode_texts([self.texts[i] for i in idx], self.max_length)
        finally:
            self.model.encoder.train(was_training)


class DocidDataset(Dataset):
    """Examples whose targets are each document's code sequence (from the prefix tree)."""

    def __init__(self, examples: IndexingExamples, targets: list[tuple[int, ...]]):
        self.examples, self.targets = examples, targets

    def __len__(self) -> int:
        return len(self.examples.examples)

    def __getitem__(self, i: int) -> tuple[int, int]:
        text, doc, _ = self.examples.examples[i]
        return text, doc


class DocidCollator:
    """Batches as dicts: ``targets`` (each document's code sequence, -100 padded), ``doc_index`` and the
    texts' inputs (:class:`TextInputs`: cached states or token ids)."""

    def __init__(self, targets: list[tuple[int, ...]], inputs: TextInputs):
        self.targets, self.inputs = targets, inputs

    def __call__(self, items: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        texts, docs = zip(*items, strict=True)
        width = max(len(self.targets[d]) for d in docs)
        targets = torch.full((len(docs), width), -100, dtype=torch.long)
        for i, d in enumerate(docs):
            targets[i, : len(self.targets[d])] = torch.tensor(self.targets[d])
        return {"targets": targets, "doc_index": torch.tensor(docs), **self.inputs.features(list(texts))}


class ContrastiveDataset(Dataset):
    """(query text, positive document) pairs; negatives are drawn per batch from ``negatives[text]``."""

    def __init__(self, pairs: list[tuple[int, int]]):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[int, int]:
        return self.pairs[i]


class ContrastiveCollator:
    """Inputs of each query, its positive and ``n_negatives`` hard negatives (positive first).

    ``negatives[text index]`` is a ranked candidate list (e.g. BM25's top-k) without the positives;
    negatives are sampled from it (with replacement when it is short, from ``fallback_docs`` when empty).
    """

    def __init__(self, inputs: TextInputs, doc_text: dict[int, int], negatives: dict[int, list[int]],
                 fallback_docs: list[int], n_negatives: int = 3, seed: int = 0):
        import random

        self.inputs, self.doc_text, self.negatives = inputs, doc_text, negatives
        self.fallback, self.n_negatives, self.rng = fallback_docs, n_negatives, random.Random(seed)

    def __call__(self, items: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        texts, docs = [], []
        for text, pos in items:
            texts.append(text)
            pool = [d for d in self.negatives.get(text, []) if d != pos]
            negs = [self.rng.choice(pool) if pool else self.rng.choice(self.fallback)
                    for _ in range(self.n_negatives)]
            docs.extend([pos, *negs])
        return {**self.inputs.features(texts, "q_"), **self.inputs.features([self.doc_text[d] for d in docs], "d_")}


def read_teacher_scores(path, queries: dict[str, str] | None = None, corpus: dict | None = None
                        ) -> dict[str, dict[str, float]]:
    """Teacher scores for distillation: TSV ``query_id<TAB>doc_id<TAB>score`` (e.g. cross-encoder scores),
    or a TREC run file (``qid Q0 docid rank score tag``). Unknown ids are errors with file and line."""
    from pathlib import Path

    from genir.data.collection import DataError, numbered_lines

    path = Path(path)
    out: dict[str, dict[str, float]] = {}
    for line_no, line in numbered_lines(path):
        cols = line.rstrip("\n").split("\t") if "\t" in line else line.split()
        if len(cols) == 6:
            cols = [cols[0], cols[2], cols[4]]
        if len(cols) != 3:
            raise DataError(path, line_no, "expected query_id, doc_id, score (TSV) or a TREC run line")
        try:
            score = float(cols[2])
        except ValueError:
            raise DataError(path, line_no, f"score {cols[2]!r} is not a number") from None
        if not math.isfinite(score):
            raise DataError(path, line_no, f"score {cols[2]!r} is not finite")
        if queries is not None and cols[0] not in queries:
            raise DataError(path, line_no, f"query id {cols[0]!r} is not in queries.jsonl")
        if corpus is not None and cols[1] not in corpus:
            raise DataError(path, line_no, f"document id {cols[1]!r} is not in the corpus")
        out.setdefault(cols[0], {})[cols[1]] = score
    if not out:
        raise DataError(path, None, "no teacher scores in this file")
    return out


class MarginCollator:
    """(query, positive, negative, teacher margin) batches for :func:`tied_margin_mse_loss`.

    ``teacher[text index]`` maps document index -> teacher score; each item draws one scored negative.
    """

    def __init__(self, inputs: TextInputs, doc_text: dict[int, int], teacher: dict[int, dict[int, float]],
                 seed: int = 0):
        import random

        self.inputs, self.doc_text, self.teacher, self.rng = inputs, doc_text, teacher, random.Random(seed)

    def __call__(self, items: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        texts, docs, margins = [], [], []
        for text, pos in items:
            scores = self.teacher[text]
            neg = self.rng.choice([d for d in scores if d != pos])
            texts.append(text)
            docs.extend([pos, neg])
            margins.append(scores[pos] - scores[neg])
        return {**self.inputs.features(texts, "q_"), **self.inputs.features([self.doc_text[d] for d in docs], "d_"),
                "margin": torch.tensor(margins, dtype=torch.float32)}


class BiEncoderCollator:
    """Tokenised (query, positive, BM25 negative) batches for fine-tuning a sentence-transformers model."""

    def __init__(self, st_model, queries: list[str], docs: list[str], negatives: dict[int, list[int]],
                 seed: int = 0):
        import random

        self.st, self.queries, self.docs, self.negatives = st_model, queries, docs, negatives
        self.rng = random.Random(seed)

    def __call__(self, items: list[tuple[int, int]]) -> dict:
        qs, ds = [], []
        for qi, pos in items:
            pool = [d for d in self.negatives.get(qi, []) if d != pos] or list(range(len(self.docs)))
            qs.append(self.queries[qi])
            ds.extend([self.docs[pos], self.docs[self.rng.choice(pool)]])
        return {"queries": self.st.tokenize(qs), "docs": self.st.tokenize(ds)}
