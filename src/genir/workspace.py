"""The workspace: the shared state every method draws on, computed once per run.

The collection and its splits (test queries, seen/unseen/new-docs subsets, held-out training queries), the
texts that index documents (pseudo-queries, training queries) and their frozen-encoder states, BM25, the
dense encoder and document embeddings, and the run folder. Recipes receive a Workspace; it knows no
method by name. The indexing texts may differ between the methods of a run (each method's own preset,
``data.indexing_texts``): :meth:`Workspace.for_texts` gives the view a method trains in, which shares
everything else with the run's workspace.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import random
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from genir.data import DocAsQuery, load_dataset, load_pseudo_queries, seen_unseen
from genir.data.collection import Collection, Document
from genir.data.pseudo_queries import add_signals, lead_spans
from genir.data.splits import hold_out
from genir.distributed import init_from_env, is_main, map_rows
from genir.io import save_npy, write_json
from genir.settings import Settings
from genir.training.data import EncodedTexts, IndexingExamples, TextInputs, build_dsi_examples


class Workspace:
    def __init__(self, settings: Settings, out: str | Path | None = None):
        self._requested = settings.resolved()  # every training budget filled in; indexing texts as given
        # the run's own view: unset indexing-text counts at the light preset (or data.indexing_texts's)
        settings = self.settings = self._requested.for_texts("light")
        data, training = settings.data, settings.training
        torch.manual_seed(training.seed)
        self.collection: Collection = load_dataset(data.dataset, data.data_dir, data.qrels_dir)
        self.out = Path(out or settings.out or f"runs/{self.collection.name}")
        self.docs: list[Document] = list(self.collection.corpus.values())
        self.doc_ids = [d.id for d in self.docs]
        self.test_split = data.test_split
        if data.train_split and data.train_split == data.test_split and not data.holdout:
            raise ValueError(f"data.train_split {data.train_split!r} is the evaluated split: training on the queries "
                             "it evaluates measures nothing; train on another split, or hold training queries out "
                             "(--holdout) to tune")
        if data.holdout:
            if not data.train_split:
                raise ValueError("--holdout needs a training split")
            kept, held = hold_out(self.collection.qrels_for(data.train_split), data.holdout, training.seed)
            self.collection.qrels[data.train_split] = kept
            self.collection.qrels["holdout"] = held
            self.test_split = "holdout"
        test = self.collection.qrels_for(self.test_split)
        self.test_queries = self.collection.split_queries(self.test_split)
        if data.max_test_queries:
            self.test_queries = dict(list(self.test_queries.items())[: data.max_test_queries])
        self.qrels = {q: test[q] for q in self.test_queries}
        if not self.test_queries:
            raise ValueError(f"no query to evaluate: the {self.test_split!r} split has none with a relevant judgement"
                             + (f" (--holdout {data.holdout} of this collection's training queries holds out none: "
                                "hold out a larger share)" if self.test_split == "holdout" else ""))
        # test queries whose own id is dropped from their ranking (BEIR's ignore_identical_ids)
        corpus, rule = self.collection.corpus, data.ignore_identical_ids
        self.identical_ids = {q for q, text in self.test_queries.items() if q in corpus and rule != "never" and (
            rule == "always" or text.strip() in (corpus[q].text.strip(), corpus[q].full_text.strip()))}
        # new documents: a slice of the corpus no training example touches; methods index it afterwards
        # (their own way: tied vectors are encoded, semantic docids are clustered, atomic ones never trained)
        self.new_doc_ids: set[str] = set()
        if data.new_docs:
            n_new = int(round(len(self.doc_ids) * data.new_docs))
            self.new_doc_ids = set(random.Random(training.seed).sample(self.doc_ids, n_new))
        self.subsets: dict[str, set[str]] = {}
        if self.has_train_split:
            # seen: judged relevant to a training query whose judgement training uses (not a new document's)
            train = {q: {d: g for d, g in r.items() if d not in self.new_doc_ids}
                     for q, r in self.collection.qrels[data.train_split].items()}
            seen, unseen = seen_unseen(train, self.qrels)
            self.subsets = {"seen": seen, "unseen": unseen}
        if data.new_docs:
            self.subsets["new-docs"] = {q for q, r in self.qrels.items()
                                        if any(g > 0 and d in self.new_doc_ids for d, g in r.items())}
        # under torchrun: the process group starts here, and each process takes its own GPU
        self.device = init_from_env(resolve_device(training.device))
        # what views share (BM25, the dense encoder and embeddings, a pseudo-query file) and what each set
        # of indexing texts has of its own (examples, frozen-encoder states), keyed by those texts' settings
        self._cache: dict = {}
        self._pseudo_queries: dict[str, list[str]] | None = None

    def for_texts(self, preset: str) -> Workspace:
        """The view a method trains in: its indexing texts those of ``preset`` (the method's own) where the run
        leaves them unset (``data.indexing_texts`` at "method" and no count set); all else shared."""
        settings = self._requested.for_texts(preset)
        if settings.data == self.settings.data:
            return self
        view = copy.copy(self)
        view.settings = settings
        return view

    def _texts_key(self) -> tuple:
        """The key of this view's examples and encoded states: its whole data group (views differ only in their
        indexing texts, and no data setting that shapes the texts can be left out of the key by mistake)."""
        return dataclasses.astuple(self.settings.data)

    def texts_summary(self) -> dict:
        """The indexing texts of this view, for a method's report row: the settings that make them, their count."""
        d = self.settings.data
        return {"preset": d.indexing_texts, "random_spans": d.random_spans, "sentence_queries": d.sentence_queries,
                "title_query": d.title_query, "keyword_queries": d.keyword_queries,
                "pseudo_queries": d.pseudo_queries, "texts": len(self.examples().texts)}

    @property
    def encode_seconds(self) -> float:
        """Seconds the frozen encoder took over this view's texts (as recorded, when read from the run folder)."""
        return self._cache.get(("encode_seconds", self._texts_key()), 0.0)

    def data_notes(self, trained: Mapping[str, Workspace] | None = None) -> list[str]:
        """What the report must say about how this collection was read and evaluated; ``trained`` (method name
        -> the view it trained in): the indexing texts of each, with the count of documents without one of
        their own."""
        notes = []
        for split, pairs in sorted(self.collection.missing_judged.items()):
            notes.append(f"qrels/{split}.tsv: {len(pairs)} judgement(s) name documents not in the corpus (e.g. "
                         f"{pairs[0][1]!r} for query {pairs[0][0]!r}): kept, as BEIR evaluates them (they count "
                         "against recall and nDCG), never trained on.")
        by_texts: dict[tuple, list[str]] = {}
        for name, view in (trained or {}).items():
            by_texts.setdefault(view._texts_key(), []).append(name)
        for names in by_texts.values():  # built only where methods trained on them (no pseudo-queries else)
            view = trained[names[0]]
            examples, data = view.examples(), view.settings.data
            own = {d for t, d, kind in examples.examples if kind == "indexing" and t != examples.doc_text.get(d)}
            alone = len(examples.doc_text) - len(own)
            texts = (f"the leading span, {data.random_spans} random span(s), {data.sentence_queries} sentence(s), "
                     f"{'the title, ' if data.title_query else ''}{data.keyword_queries} keyword quer(ies)"
                     if data.pseudo_queries == "docasquery" else f"the leading span and {data.pseudo_queries}")
            notes.append(f"Indexing texts of {', '.join(names)} ({texts}; {len(examples.texts):,} texts): every one "
                         f"of the {len(examples.doc_text):,} trained documents has at least one (its own leading "
                         f"text: 0 without); {alone:,} have no other (no span, sentence, title or keyword query of "
                         "their own" + ("" if data.short_spans else "; data.short_spans gives short documents spans")
                         + ").")
        if self.identical_ids:
            notes.append(f"{len(self.identical_ids)} test queries are documents of the corpus (same id, same text): "
                         "each query's own id is dropped from its ranking, as BEIR's ignore_identical_ids does "
                         "(data.ignore_identical_ids).")
        return notes

    def drop_identical_ids(self, results: dict) -> dict:
        """Results with each identical-id query's own id taken out of its ranking (``identical_ids``)."""
        return {q: [h for h in hits if h.doc_id != q] if q in self.identical_ids else hits
                for q, hits in results.items()}

    @property
    def has_train_split(self) -> bool:
        split = self.settings.data.train_split
        return bool(split) and split in self.collection.qrels

    @property
    def new_doc_indices(self) -> list[int]:
        return [i for i, d in enumerate(self.doc_ids) if d in self.new_doc_ids]

    # -- retrievers shared by baselines and methods -------------------------------------------------
    def bm25(self):
        """One BM25 index for the baseline and for methods that mine negatives with it."""
        if "bm25" not in self._cache:
            from genir.search.bm25 import BM25Searcher

            self._cache["bm25"] = BM25Searcher(self.docs)
        return self._cache["bm25"]

    def dense_encoder(self):
        if "dense_encoder" not in self._cache:
            from genir.search.dense import load_sentence_encoder

            self._cache["dense_encoder"] = load_sentence_encoder(self.settings.dense.model)
        return self._cache["dense_encoder"]

    def doc_embeddings(self) -> np.ndarray:
        """Dense document embeddings, shared by the dense baseline and semantic docids; cached on disk."""
        path, meta = self.out / "doc_embeddings.npy", self.out / "doc_embeddings.json"
        model = self.settings.dense.model or "bundled all-MiniLM-L6-v2"
        key = {"model": model, "dataset": self.collection.content_hash, "documents": len(self.docs)}
        if "doc_embeddings" not in self._cache and path.exists() and meta.exists():
            recorded = json.loads(meta.read_text(encoding="utf-8"))
            if {k: recorded.get(k) for k in key} == key:
                self._cache["doc_embeddings"] = np.load(path)
        if "doc_embeddings" not in self._cache:
            start = time.perf_counter()
            texts = [d.full_text for d in self.docs]

            def encode(rows: list[int]) -> torch.Tensor:  # several processes: a shard each, gathered
                return torch.from_numpy(self.dense_encoder().encode(
                    [texts[i] for i in rows], batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=is_main()))

            emb = map_rows(encode, list(range(len(texts)))).numpy()
            save_npy(path, emb)
            write_json(meta, {"seconds": time.perf_counter() - start, **key})
            self._cache["doc_embeddings"] = emb
        return self._cache["doc_embeddings"]

    # -- texts that index documents -----------------------------------------------------------------
    def check_inputs(self) -> None:
        """Read the indexing files a method will use (a pseudo-query file) now, so that a bad one stops the
        run before any stage has written anything."""
        pq = self.settings.data.pseudo_queries
        if pq != "docasquery" and not pq.startswith("doc2query:"):
            self._pseudo_queries = load_pseudo_queries(pq, self.collection.corpus)

    def pseudo_queries(self) -> dict[str, list[str]]:
        """Every document's indexing texts: its pseudo-queries (spans, a file or doc2query), then the
        query-free signals the data settings ask for."""
        data, seed = self.settings.data, self.settings.training.seed
        return add_signals(self._base_pseudo_queries(), self.docs, sentences=data.sentence_queries,
                           title=data.title_query, keywords=data.keyword_queries,
                           keyword_terms=data.keyword_terms, seed=seed)

    def _base_pseudo_queries(self) -> dict[str, list[str]]:
        data, seed = self.settings.data, self.settings.training.seed
        if data.pseudo_queries == "docasquery":
            return DocAsQuery(data.span_words, data.random_spans, seed, data.lead_words,
                              data.short_spans).generate(self.docs)
        if data.pseudo_queries.startswith("doc2query:"):
            from genir.data.pseudo_queries import Doc2Query

            model_name = data.pseudo_queries.split(":", 1)[1]
            pq = Doc2Query(model_name, n_queries=data.doc2query_n, seed=seed).generate(self.docs)
        else:
            pq = self._pseudo_queries or load_pseudo_queries(data.pseudo_queries, self.collection.corpus)
        # the document's own text comes first
        lead = DocAsQuery(data.span_words, 0, lead_words=data.lead_words).generate(self.docs)
        return {d: lead[d] + pq.get(d, []) for d in lead}

    def lead_texts(self, docs: list[Document]) -> list[str]:
        """The text a document is represented by as model input: its leading span (as in training)."""
        return lead_spans(docs, self.settings.data.span_words, self.settings.data.lead_words)

    def examples(self) -> IndexingExamples:
        """DSI's multi-task examples (indexing texts and training queries -> document), new documents left out."""
        key = ("examples", self._texts_key())
        if key not in self._cache:
            train = self.settings.data.train_split if self.has_train_split else None
            trained = {d: i for i, d in enumerate(self.doc_ids) if d not in self.new_doc_ids}
            self._cache[key] = build_dsi_examples(self.collection, self.pseudo_queries(), train, trained)
        return self._cache[key]

    def train_qrels(self) -> dict[str, dict[int, int]]:
        """Graded training judgements by document index (documents held out as new are left out)."""
        if not self.has_train_split:
            return {}
        index = {d: i for i, d in enumerate(self.doc_ids) if d not in self.new_doc_ids}
        return {q: {index[d]: g for d, g in rels.items() if d in index}
                for q, rels in self.collection.qrels_for(self.settings.data.train_split).items()}

    @property
    def frozen_encoder(self) -> bool:
        return self.settings.model.encoder == "frozen"

    def text_inputs(self, model) -> TextInputs:
        """The training texts as the model reads them: cached states (frozen encoder) or token ids that the
        objective streams through the encoder (``--encoder full``). One data path for both."""
        return TextInputs(self.examples().texts, self.settings.model.doc_max_length, model,
                          self.encoded(model) if self.frozen_encoder else None)

    def encoded(self, model) -> EncodedTexts:
        """Frozen-encoder states of every training text, shared by the run's methods with these texts; kept in
        ``encoded_texts-KEY.safetensors`` so that a resumed run does not encode again (KEY: backbone and texts)."""
        cache_key = ("encoded", self._texts_key())
        if cache_key not in self._cache:
            texts = self.examples().texts
            max_length = self.settings.model.doc_max_length
            key = hashlib.sha1("\n".join([self.settings.model.backbone, str(max_length), *texts]).encode()).hexdigest()
            # one file per set of texts: methods of a run with other indexing texts do not overwrite each other
            path, meta = self.out / f"encoded_texts-{key[:12]}.safetensors", self.out / f"encoded_texts-{key[:12]}.json"
            if path.exists() and meta.exists() and json.loads(meta.read_text()).get("key") == key:
                encoded, seconds = EncodedTexts.load(path), float(json.loads(meta.read_text()).get("seconds", 0.0))
            else:
                start = time.perf_counter()
                encoded = EncodedTexts(model, texts, max_length)
                seconds = time.perf_counter() - start
                encoded.save(path)
                write_json(meta, {"key": key, "seconds": seconds, "texts": len(texts)})
            self._cache[cache_key] = encoded
            self._cache[("encode_seconds", self._texts_key())] = seconds
        return self._cache[cache_key]


def resolve_device(name: str) -> str:
    """``auto``: cuda when a GPU is visible, else cpu; ``cuda`` without one is an error, not a slow CPU run."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible to PyTorch (use --device auto or cpu)")
    return name
