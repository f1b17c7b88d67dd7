"""A run folder as a live index: documents added and removed after training, with no retraining.

``genir index add RUN docs.jsonl``, ``genir index remove RUN ID...`` and the service's ``POST /documents``
and ``DELETE /documents/{id}`` all go through :class:`LiveIndex`. Every method that can take a document
without retraining gives it a docid its own way (``Method.add_docids``: Tied-Atomic encodes it, GenRet and
GLEN let the model assign it, DSI-semantic places it in the frozen k-means tree, MERGE/RQ-VAE quantize its
embedding); the others refuse with the reason (``Method.live_refusal``). BM25 and dense index it too.

The trained method folders are never changed (a run's ``result.json`` stays the measurement of what was
trained). The changes live in ``RUN/live/``: the added documents, the removed ids, each method's docids of
the added documents (and per-document arrays such as GLEN's w^d), the added documents' dense embeddings.
The folder is rewritten whole and swapped in by one rename per change, so a reader sees the state before
or after a change, never half of one. A removed id is left out of every table, corpus and searcher, and
hits are filtered against the live corpus as a last guard: a removed document never comes back unless it
is added again.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from genir.data import load_dataset
from genir.data.collection import Document
from genir.data.pseudo_queries import lead_spans
from genir.docids import DocIdTable
from genir.live_state import LIVE, LiveIndexError, LiveState, read_removed_ids
from genir.methods import BASELINES, get_method, read_settings
from genir.methods.base import Method, NewDocuments
from genir.methods.baselines import with_precision
from genir.retriever import Retriever
from genir.search.base import Results, Searcher
from genir.search.shared_encoding import SharedEncoders

LIVE_BASELINES = tuple(b.name for b in BASELINES.values() if b.live)  # built over the live corpus
__all__ = ["LIVE", "LIVE_BASELINES", "LiveIndex", "LiveIndexError", "LiveState", "read_removed_ids"]


def trained_methods(run_dir: Path) -> list[str]:
    """The method folders of a run that hold a trained model and docids (the run's methods first, in its order,
    then any other method trained into the same folder)."""
    from genir.methods import METHODS

    run_dir = Path(run_dir)
    order = list(dict.fromkeys([*read_settings(run_dir).methods, *METHODS]))
    return [m for m in order if (run_dir / m / "model").is_dir() and (run_dir / m / "docids").is_dir()]


class LiveIndex:
    """A run folder opened for search and for changes. ``methods``: which trained methods (default all);
    ``baselines``: bm25 and/or dense, built over the live corpus. Searchers are opened on first use and kept
    in step with every change. One change at a time (a lock); searches may run beside a change and see the
    state before or after it."""

    def __init__(self, run_dir: str | Path, methods: list[str] | None = None,
                 baselines: tuple[str, ...] | list[str] = LIVE_BASELINES, beam: int | None = None,
                 device: str = "auto", overrides: dict[str, Any] | None = None):
        from genir.workspace import resolve_device

        self.run_dir = Path(run_dir)
        self.settings = read_settings(self.run_dir)
        self.overrides = dict(overrides or {})  # search settings other than the run's (``genir serve --set``)
        for key, value in self.overrides.items():
            self.settings.set(key, value)
        available = trained_methods(self.run_dir)
        for m in methods or []:
            if m not in available:
                raise LiveIndexError(f"{self.run_dir}: no trained {m!r} here "
                                     f"(trained: {', '.join(available) or 'none'})")
        self.methods = list(methods) if methods is not None else available
        for b in baselines:
            if b not in LIVE_BASELINES:
                raise LiveIndexError(f"unknown baseline {b!r}: a live index serves {', '.join(LIVE_BASELINES)}")
        self.baselines = list(baselines)
        for key in self.overrides:
            if not any(self._overrides_for(name, {key}) for name in self.methods + self.baselines):
                raise LiveIndexError(f"{key}: read by none of the systems served here ({', '.join(self.names)})")
        if beam is not None and not any(get_method(m).decodes for m in self.methods):
            raise LiveIndexError(f"--beam {beam}: none of the systems served here ({', '.join(self.names)}) "
                                 "searches by a beam search")
        self.beam, self.device = beam, resolve_device(device)
        data = self.settings.data
        self.collection = load_dataset(data.dataset, data.data_dir, data.qrels_dir)
        self.state = LiveState.read(self.run_dir)
        self._models: dict[str, Any] = {}
        self._searchers: dict[str, Searcher] = {}
        self._dense_encoder = None
        self._base_embeddings: np.ndarray | None = None
        self.shared_encoders: SharedEncoders | None = None  # set by share_query_encoders
        self.lock = threading.Lock()  # changes, one at a time

    # -- the live corpus ------------------------------------------------------------------------------
    def _hidden(self) -> set[str]:
        """Dataset documents that are not live: removed, or replaced by an added document of that id."""
        return self.state.removed | {d.id for d in self.state.added}

    def corpus(self) -> list[Document]:
        hidden = self._hidden()
        base = [d for d in self.collection.corpus.values() if d.id not in hidden]
        return base + [d for d in self.state.added if d.id not in self.state.removed]

    def live_ids(self) -> set[str]:
        return {d.id for d in self.corpus()}

    def document(self, doc_id: str) -> Document | None:
        for d in reversed(self.state.added):
            if d.id == doc_id:
                return None if doc_id in self.state.removed else d
        if doc_id in self.state.removed:
            return None
        return self.collection.corpus.get(doc_id)

    def lead_texts(self, docs: list[Document]) -> list[str]:
        """The model input of each document: its leading span, as in training (``Workspace.lead_texts``)."""
        return lead_spans(docs, self.settings.data.span_words, self.settings.data.lead_words)

    # -- parts of each method -------------------------------------------------------------------------
    def method(self, name: str) -> Method:
        return get_method(name)

    def model(self, name: str):
        if name not in self._models:
            model_class = self.method(name).model_class
            self._models[name] = model_class.load(self.run_dir / name / "model").to(self.device).eval()
        return self._models[name]

    def table(self, name: str) -> tuple[DocIdTable, dict[str, np.ndarray]]:
        """The method's docids over the live corpus (trained rows still live, then added rows) and its
        per-document arrays in the same row order."""
        method = get_method(name)
        trained = DocIdTable.load(self.run_dir / name / "docids")
        hidden = self._hidden()
        keep = [i for i, d in enumerate(trained.doc_ids) if d not in hidden]
        ids = [trained.doc_ids[i] for i in keep]
        rows = [list(trained.sequence(i)) for i in keep]
        # per-document arrays the folder has (an older folder may lack an optional one: its searcher says so)
        present = [f for f in method.doc_arrays if (self.run_dir / name / f).exists()]
        arrays = {f: np.load(self.run_dir / name / f)[keep] for f in present}
        vocab = trained.vocab_size
        live = self.state.tables.get(name)
        if live is not None:
            add = [i for i, d in enumerate(live.doc_ids) if d not in self.state.removed]
            ids += [live.doc_ids[i] for i in add]
            rows += [list(live.sequence(i)) for i in add]
            vocab = max(vocab, live.vocab_size)
            for f in present:
                arrays[f] = np.concatenate([arrays[f], self.state.arrays[name][f][add]])
        return DocIdTable(ids, rows, vocab, trained.scheme, trained.meta), arrays

    def pending(self, name: str) -> list[str]:
        """Live documents the method has no docid for (a change cut short, or a refusing method)."""
        table, _ = self.table(name)
        have = set(table.doc_ids)
        return [d.id for d in self.corpus() if d.id not in have]

    def _dense(self):
        if self._dense_encoder is None:
            from genir.search.dense import load_sentence_encoder

            self._dense_encoder = load_sentence_encoder(self.settings.dense.model)
        return self._dense_encoder

    def _embed(self, docs: list[Document]) -> np.ndarray:
        return np.asarray(self._dense().encode([d.full_text for d in docs], batch_size=64, normalize_embeddings=True,
                                               convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)

    def base_embeddings(self) -> np.ndarray | None:
        """The run's dense embeddings of the dataset's documents (``doc_embeddings.npy``), when it made them."""
        if self._base_embeddings is None:
            path = self.run_dir / "doc_embeddings.npy"
            if path.exists():
                emb = np.load(path)
                if len(emb) == len(self.collection.corpus):
                    self._base_embeddings = emb
        return self._base_embeddings

    def embeddings_of(self, doc_ids: list[str]) -> np.ndarray:
        """Dense embeddings of live documents (the run's for dataset documents, the live index's for added
        ones; computed for dataset documents when the run made none)."""
        base = self.base_embeddings()
        if base is None:
            base = self._embed(list(self.collection.corpus.values()))
            self._base_embeddings = base
        row = {d: i for i, d in enumerate(self.collection.corpus)}
        added = {d.id: i for i, d in enumerate(self.state.added)}
        hidden = self._hidden()
        out = []
        for d in doc_ids:
            if d in added and self.state.embeddings is not None:
                out.append(self.state.embeddings[added[d]])
            elif d in row and d not in hidden:
                out.append(base[row[d]])
            else:
                raise KeyError(f"no embedding for {d!r}")
        return np.stack(out) if out else np.zeros((0, base.shape[1]), np.float32)

    # -- changes --------------------------------------------------------------------------------------
    def add(self, docs: list[Document]) -> dict:
        """Index ``docs`` in every method and baseline that can take them; returns what each did (documents,
        seconds, or the reason it refused). Ids already live are an error (remove them first)."""
        if not docs:
            raise LiveIndexError("no documents to add: nothing changes")
        with self.lock:
            live = self.live_ids()
            seen: set[str] = set()
            for d in docs:
                if d.id in live:
                    raise LiveIndexError(f"document {d.id!r} is already in the index (remove it first)")
                if d.id in seen:
                    raise LiveIndexError(f"document {d.id!r} twice in one addition")
                seen.add(d.id)
            state = LiveState(
                [x for x in self.state.added if x.id not in seen] + list(docs), self.state.removed - seen,
                self.state.embeddings, dict(self.state.tables), dict(self.state.arrays), self.state.version + 1)
            old_rows = [i for i, x in enumerate(self.state.added) if x.id not in seen]
            report: dict[str, dict] = {}
            if docs and (self.state.embeddings is not None or self.base_embeddings() is not None
                         or any(BASELINES[b].dense for b in self.baselines)):
                self._dense()  # loaded before the clock starts: the figure is the documents' encoding
            start = time.perf_counter()
            new_emb = self._embed(docs) if docs else None
            if state.embeddings is not None or new_emb is not None:
                kept = self.state.embeddings[old_rows] if self.state.embeddings is not None else \
                    np.zeros((0, new_emb.shape[1]), np.float32)
                state.embeddings = np.concatenate([kept, new_emb]) if new_emb is not None else kept
            embed_seconds = time.perf_counter() - start
            for b in self.baselines:
                report[b] = {"documents": len(docs), "seconds": embed_seconds if BASELINES[b].dense else 0.0}
            previous, self.state = self.state, state  # the tables below see the new corpus
            try:
                for name in self.methods:
                    report[name] = self._add_to_method(name, docs, new_emb)
            except BaseException:
                self.state = previous
                raise
            state.write(self.run_dir)
            for name, seconds in self._refresh(docs, []).items():  # searchers already open follow at once
                report.setdefault(name, {})["searcher_seconds"] = seconds
            return report

    def _add_to_method(self, name: str, docs: list[Document], emb: np.ndarray | None) -> dict:
        method = get_method(name)
        if not method.can_add:
            return {"refused": method.live_refusal}
        start = time.perf_counter()
        table, _ = self.table(name)  # the live corpus's docids, without the documents being added
        indexed = set(table.doc_ids)
        todo = [d for d in docs if d.id not in indexed]
        folder = self.run_dir / name
        new = NewDocuments(self.model(name), table, folder, self.settings.group(method.group) if method.group else None,
                           self.settings, todo, self.lead_texts(todo), emb,
                           lambda: self.embeddings_of(table.doc_ids), self.device)
        try:
            added = method.add_docids(new)
        except ValueError as e:
            return {"refused": str(e)}
        old = self.state.tables.get(name)
        replaced = {x.id for x in todo}
        keep = [] if old is None else [i for i, d in enumerate(old.doc_ids) if d not in replaced]
        ids = ([old.doc_ids[i] for i in keep] if old else []) + [d.id for d in todo]
        rows = ([list(old.sequence(i)) for i in keep] if old else []) + [list(c) for c in added.codes]
        vocab = max(table.vocab_size, added.vocab_size or 0, old.vocab_size if old else 0)
        self.state.tables[name] = DocIdTable(ids, rows, vocab, table.scheme, {"live": True})
        arrays = {}
        for f in method.doc_arrays:
            before = self.state.arrays.get(name, {}).get(f)
            new_rows = np.asarray(added.arrays[f])
            arrays[f] = new_rows if before is None else np.concatenate([before[keep], new_rows])
        self.state.arrays[name] = arrays
        existing = set(map(tuple, table.sequences()))
        shared = sum(tuple(c) in existing for c in added.codes)
        return {"documents": len(todo), "seconds": time.perf_counter() - start, "sharing_a_docid": shared}

    def remove(self, doc_ids: list[str]) -> dict:
        """Withdraw documents from every method and baseline; unknown ids are an error (nothing changes)."""
        with self.lock:
            live = self.live_ids()
            missing = [d for d in doc_ids if d not in live]
            if missing:
                raise LiveIndexError(f"not in the index: {', '.join(map(repr, missing[:5]))}")
            gone = set(doc_ids)
            keep = [i for i, d in enumerate(self.state.added) if d.id not in gone]
            tables, arrays = {}, {}
            for name, table in self.state.tables.items():
                rows = [i for i, d in enumerate(table.doc_ids) if d not in gone]
                tables[name] = DocIdTable([table.doc_ids[i] for i in rows], [list(table.sequence(i)) for i in rows],
                                          table.vocab_size, table.scheme, table.meta)
                arrays[name] = {f: a[rows] for f, a in self.state.arrays.get(name, {}).items()}
            state = LiveState([self.state.added[i] for i in keep], self.state.removed | gone,
                              None if self.state.embeddings is None else self.state.embeddings[keep], tables, arrays,
                              self.state.version + 1)
            state.write(self.run_dir)
            self.state = state
            self._refresh([], list(gone))
            return {"removed": len(gone)}

    # -- searchers ------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return self.baselines + self.methods

    def _overrides_for(self, name: str, keys: set[str] | None = None) -> set[str]:
        """The override keys (of ``keys``, default all) that ``name``'s searcher reads."""
        from genir.retriever import searcher_reads

        method = get_method(name) if name in self.methods else None
        baseline = None if method is not None else name
        # a searcher without a beam-search decoder (Tied-Atomic) leaves the decoder precision to the decoders served
        return {key for key in (self.overrides if keys is None else keys)
                if not (method is not None and key == "search.decoder_precision" and not method.decodes)
                and searcher_reads(key, self.settings, method, baseline)}

    def searcher(self, name: str) -> Searcher:
        if name not in self._searchers:
            self._searchers[name] = self._open(name)
        return self._searchers[name]

    def _open(self, name: str) -> Searcher:
        if name not in self.names:
            raise LiveIndexError(f"{name!r} is not served here (served: {', '.join(self.names)})")
        docs = self.corpus()
        if name in self.baselines:  # built over the live corpus
            baseline = BASELINES[name]
            if not baseline.dense:
                searcher = baseline.index(docs)
            else:
                embeddings = self.embeddings_of([d.id for d in docs])
                searcher = baseline.index(docs, encoder=self._dense(), embeddings=embeddings)
                searcher = with_precision(searcher, self.settings.search.encoder_precision)
        else:
            table, arrays = self.table(name)
            beam = self.beam if get_method(name).decodes else None  # Tied-Atomic ranks every document
            searcher = Retriever.load(self.run_dir / name, docs=docs, beam=beam, model=self.model(name),
                                      table=table, doc_arrays=arrays,
                                      overrides={k: self.overrides[k] for k in self._overrides_for(name)}).searcher
        if self.shared_encoders is not None:
            self.shared_encoders.attach(searcher, name)
        return LiveFiltered(searcher, self)

    def share_query_encoders(self, encoders: SharedEncoders) -> None:
        """From now on, searchers that read queries with the same encoder encode them in one pass
        (``genir.search.shared_encoding``): the service's side by side searches."""
        self.shared_encoders = encoders
        for name, searcher in self._searchers.items():
            encoders.attach(searcher.inner, name)

    def _refresh(self, added: list[Document], removed: list[str]) -> dict[str, float]:
        """Keep opened searchers in step: an incremental change where the searcher has one (Tied-Atomic's
        vectors), else a new searcher over the new tables (the model is reused; the trie, or BM25's index,
        is rebuilt). Returns the seconds each took."""
        seconds = {}
        for name, wrapped in list(self._searchers.items()):
            start = time.perf_counter()
            inner = wrapped.inner
            if hasattr(inner, "add_documents") and hasattr(inner, "remove_documents"):
                if removed:
                    inner.remove_documents([d for d in removed if d in inner.index.id_of])
                if added:
                    inner.add_documents(added)
            else:
                self._searchers[name] = self._open(name)
            seconds[name] = time.perf_counter() - start
        return seconds


class LiveFiltered(Searcher):
    """A searcher whose hits are checked against the live corpus (a removed document never comes back)."""

    def __init__(self, inner: Searcher, index: LiveIndex):
        self.inner, self.index, self.name = inner, index, getattr(inner, "name", "searcher")

    def batch_search(self, queries, k: int = 100) -> Results:
        removed = self.index.state.removed  # ids added again are not in it
        results = self.inner.batch_search(queries, k)
        if not removed:
            return results
        return {q: [h for h in hits if h.doc_id not in removed] for q, hits in results.items()}

    def index_bytes(self) -> int | None:
        return self.inner.index_bytes()
