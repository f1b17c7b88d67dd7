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


class EncodedTexts:
    """Frozen-encoder states of many texts, kept once in float16 (padded to ``max_length``)."""

    def __init__(self, model, texts: list[str], max_length: int, batch_size: int = 64,
                 show_progress: bool = True, desc: str = "encode (frozen encoder)"):
        from genir.distributed import is_main, map_rows

        self.max_length = max_length
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-sorted: little padding

        def encode(rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
            states = torch.zeros(len(rows), max_length, model.d_model, dtype=torch.float16)
            masks = torch.zeros(len(rows), max_length, dtype=torch.bool)
            for s in tqdm(range(0, len(rows), batch_size), desc=desc, disable=not (show_progress and is_main())):
                part, mask = model.encode_texts([texts[i] for i in rows[s: s + batch_size]], max_length)
                states[s: s + len(part), : part.shape[1]] = part.to(torch.float16).cpu()
                masks[s: s + len(part), : part.shape[1]] = mask.bool().cpu()
            return states, masks

        was_training = model.encoder.training
        model.encoder.eval()
        with torch.inference_mode():  # several processes: each encodes a shard, all get every text
            states, masks = map_rows(encode, order)
        model.encoder.train(was_training)
        self.states = torch.zeros_like(states)
        self.mask = torch.zeros_like(masks)
        self.states[order], self.mask[order] = states, masks

    @classmethod
    def joined(cls, first: EncodedTexts, second: EncodedTexts) -> EncodedTexts:
        """The texts of ``first`` then those of ``second`` (same max_length), as one store."""
        if first.max_length != second.max_length:
            raise ValueError("joined EncodedTexts need the same max_length")
        out = cls.__new__(cls)
        out.max_length = first.max_length
        out.states, out.mask = torch.cat([first.states, second.states]), torch.cat([first.mask, second.mask])
        return out

    def save(self, path) -> None:
        """States and masks as safetensors (no pickle: a run folder someone sends cannot run code)."""
        from safetensors.torch import save_file

        from genir.io import atomic_path

        with atomic_path(path) as tmp:
            save_file({"states": self.states.contiguous(), "mask": self.mask.contiguous()}, str(tmp),
                      metadata={"max_length": str(self.max_length)})

    @classmethod
    def load(cls, path) -> EncodedTexts:
        from safetensors import safe_open

        out = cls.__new__(cls)
        with safe_open(str(path), framework="pt") as f:
            out.max_length = int(f.metadata()["max_length"])
            out.states, out.mask = f.get_tensor("states"), f.get_tensor("mask")
        return out

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.mask[idx]
        n = int(mask.sum(1).max())
        return self.states[idx, :n].float(), mask[:, :n]


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
