"""What a method is, and the recipe parts several methods share.

A :class:`Method` is a docid scheme (``make_docids``, or ``learn`` for docids that come out of training),
a training objective and its data, a searcher factory (``open_searcher``: the one way a method folder is
searched, by ``genir run``, ``search``, ``serve`` and ``transfer`` alike), and report extras. Each family
of methods lives in one module of this package and registers its methods in ``genir.methods``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from genir.data.collection import Document
from genir.docids import DocIdTable, PrefixTree
from genir.models import DocidSeq2Seq
from genir.search.base import Searcher
from genir.settings import SearchSettings, SettingsError, TrainingSettings
from genir.training import Trainer, planned_steps
from genir.training.data import DocidCollator, DocidDataset
from genir.training.objectives import seq2seq_loss
from genir.workspace import Workspace


@dataclass
class SearchRequest:
    """Everything a searcher factory may use: the trained parts of a method folder and the run's settings."""

    model: Any
    table: DocIdTable | None
    folder: Path
    settings: Any  # the method's settings group (None when it has none)
    search: SearchSettings
    docs: list[Document] | None = None  # the corpus, for methods whose index is the model's encodings of it
    beam: int | None = None  # None: search.beam
    show_progress: bool = False  # a progress bar over query batches (long evaluations)
    seed: int = 0  # the run's training.seed (a random tie-break draws from it)
    # per-document arrays beside the docids (row i: the table's document i), when a live index changed
    # the table; None: the files of the method folder
    doc_arrays: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def beam_size(self) -> int:
        return self.search.beam if self.beam is None else self.beam

    def doc_array(self, name: str):
        """A per-document array of the method folder (``name`` in ``Method.doc_arrays``), table order."""
        import numpy as np

        if self.doc_arrays is not None and name in self.doc_arrays:
            return self.doc_arrays[name]
        return np.load(self.folder / name)


@dataclass
class NewDocuments:
    """Documents to index after training (``genir index add``), as a method's ``add_docids`` sees them."""

    model: Any
    table: DocIdTable  # the current docids (trained + added - removed); new ones must fit beside them
    folder: Path
    settings: Any  # the method's settings group
    run: Any  # the run's Settings
    docs: list[Document]
    lead_texts: list[str]  # the model input of each document: its leading span, as in training
    embeddings: Any  # (len(docs), dim) dense embeddings of the documents, for docids built on them
    table_embeddings: Callable[[], Any]  # () -> dense embeddings of the table's documents (table order)
    device: Any = "cpu"


@dataclass
class AddedDocids:
    """A method's answer to :class:`NewDocuments`: one docid per document, and per-document arrays."""

    codes: list[list[int]]
    arrays: dict[str, Any] = field(default_factory=dict)  # file name -> (len(docs), ...) rows
    vocab_size: int | None = None  # when the new docids need a larger code range (atomic)


@dataclass
class TransferSource:
    """The run a trained model is transferred from (``genir transfer``): its folder and its settings."""

    folder: Path
    settings: Any  # the run's Settings

    def workspace(self) -> Workspace:
        """The source run's workspace: its corpus, and what the run cached (dense embeddings)."""
        return Workspace(self.settings, out=self.folder)


@dataclass
class Trained:
    """A method's trained parts, as the report extras see them."""

    name: str
    folder: Path
    model: Any
    table: DocIdTable
    info: dict = field(default_factory=dict)


class Method:
    """A generative retrieval method: a docid scheme, a training objective and its data, a searcher, and
    report extras. A method is a subclass that sets the class attributes below and overrides what differs
    from the defaults; its family package registers an instance (``METHODS``) in :mod:`genir.methods`.

    Docids come from exactly one of :meth:`make_docids` (fixed before training; the shared trainer then fits
    a ``model_class`` to them with :attr:`objective` on :meth:`training_data`) or :meth:`learn` (docids that
    come out of training, ``learns_docids = True``)."""

    name: ClassVar[str]
    description: ClassVar[str]
    docids: ClassVar[str]  # the docid scheme, in words (``genir methods``)
    objective_text: ClassVar[str]  # the training objective, in words
    search_mode: ClassVar[str]  # how it searches, in words
    group: ClassVar[str | None] = None  # its settings group (``--set GROUP.key=value``)
    learns_docids: ClassVar[bool] = False  # docids come out of training (``learn``), not ``make_docids``
    model_class: ClassVar[type[DocidSeq2Seq]] = DocidSeq2Seq  # what ``make_docids`` methods train
    objective: ClassVar[Callable] = staticmethod(seq2seq_loss)  # (model, batch) -> (loss, logs)
    decodes: ClassVar[bool] = True  # searches by a decoder's beam search (``search.decoder_precision`` applies)
    needs_corpus: ClassVar[bool] = False  # its searcher encodes the corpus (SearchRequest.docs) when it opens
    doc_arrays: ClassVar[tuple[str, ...]] = ()  # per-document files beside the docids (kept by the live index)
    live_refusal: ClassVar[str] = "this method cannot index a document without retraining"
    # its indexing texts where the run leaves them unset (settings.INDEXING_TEXTS): "all" where that won on
    # held-out training queries, "light" where it was not tried
    indexing_texts: ClassVar[str] = "light"
    # bumped when a fix changes what the same settings train: part of the stage fingerprint from 2 on, so
    # that a run folder made by the older recipe is reported as different, never resumed as if the same
    revision: ClassVar[int] = 1

    # -- docids and training ---------------------------------------------------------------------------
    def make_docids(self, ws: Workspace, settings: Any, folder: Path) -> DocIdTable:
        """Docids fixed before training."""
        raise NotImplementedError(f"{self.name} learns its docids while training (learn)")

    def learn(self, ws: Workspace, settings: Any, folder: Path) -> tuple[Any, DocIdTable, dict]:
        """Docids learned while training: (model, table, train info); resumes from ``folder``."""
        raise NotImplementedError(f"{self.name} fixes its docids before training (make_docids)")

    def training_data(self, ws: Workspace, settings: Any, model, table: DocIdTable, trie: PrefixTree) -> tuple:
        """(dataset, collate) for the shared trainer: DSI's indexing + retrieval examples by default."""
        return seq2seq_training_data(ws, settings, model, table, trie)

    def n_codes(self, table: DocIdTable) -> int:
        """The size of the model's code vocabulary for this table."""
        return table.vocab_size

    def docid_phases(self, folder: Path) -> list[dict]:
        """Training phases that made the docids before the retriever trained (MERGE's RQ-VAE), as
        ``{"name", "history": [[step, loss], ...]}`` for the report's training plot."""
        return []

    def rank_weight(self, settings: Any) -> float:
        """The rank-aware loss's weight in training (``genir.methods.ranking``): its group's ``rank_weight``
        where it declares one, else 0 (off)."""
        return float(getattr(settings, "rank_weight", 0.0) or 0.0)

    def model_extra(self, settings: Any) -> dict:
        """Method settings saved with the model (``ModelConfig.extra``)."""
        return {}

    # how --epochs / --lr / --batch-size (training.*) reach each phase, in words (``genir methods``)
    budgets: ClassVar[str] = "retriever: training.epochs, training.batch_size, training.lr"

    def phases(self, ws: Workspace) -> list[Phase]:
        """The training phases with the budgets they will run with (``ws.settings`` is resolved): what
        ``genir run --dry-run`` shows before anything is trained."""
        return [retriever_phase(ws)]

    def check(self, ws: Workspace, settings: Any) -> None:
        """Raises on a training input this method cannot use, before any stage runs (not called by a transfer:
        nothing is trained there)."""

    # -- search --------------------------------------------------------------------------------------
    def open_searcher(self, req: SearchRequest) -> Searcher:
        """The searcher of a trained folder: the shared constrained beam search by default."""
        return beam_searcher(req)

    def docid_words(self, model, codes) -> list[str] | None:
        """A docid in words (GLEN: its vocabulary tokens); None: the codes as a path."""
        return None

    # -- a corpus or documents it was not trained on ---------------------------------------------------
    @property
    def can_transfer(self) -> bool:
        """Whether it indexes a corpus it was not trained on without retraining (``index_corpus``)."""
        return type(self).index_corpus is not Method.index_corpus

    def transfer_reads(self, source: Path) -> list[Path]:
        """The files of the run ``source`` that ``index_corpus`` and the transferred searcher read: their
        content goes into the transfer's fingerprint, so a source retrained in place is not reused stale."""
        return [source / self.name / "model"]

    def index_corpus(self, ws: Workspace, settings: Any, model, folder: Path, source: TransferSource) -> DocIdTable:
        """Zero-shot: the docids of another corpus (``ws``) from the model trained in ``source``."""
        raise ValueError(f"{self.name} cannot index a corpus it was not trained on without retraining")

    @property
    def can_add(self) -> bool:
        """Whether the live index can give it a new document without retraining (``add_docids``)."""
        return type(self).add_docids is not Method.add_docids

    def add_docids(self, new: NewDocuments) -> AddedDocids:
        raise ValueError(self.live_refusal)

    # -- report --------------------------------------------------------------------------------------
    def report(self, ws: Workspace, settings: Any, trained: Trained, searcher: Searcher) -> dict:
        """Extra result fields."""
        return {}

    def render(self, result: dict) -> list[str]:
        """Markdown lines for the report from the extra fields."""
        return []

    def __repr__(self) -> str:
        return f"<method {self.name}>"


@dataclass
class Phase:
    """One training phase of a method as the shared loop will run it (``repeats`` times: GenRet's progressive
    steps): ``examples`` per epoch, and ``at_most`` when only an upper bound is known before training."""

    name: str
    epochs: float
    batch_size: int
    lr: float
    examples: int
    repeats: int = 1
    grad_accumulation: int = 1
    at_most: bool = False

    @property
    def steps(self) -> int:
        """Optimiser steps in all, over every repeat (0 when the phase is off: 0 epochs)."""
        if not self.epochs:
            return 0
        return self.repeats * planned_steps(self.examples, self.batch_size, self.epochs, self.grad_accumulation)


def retriever_phase(ws: Workspace, name: str = "retriever", examples: int | None = None) -> Phase:
    """The shared retriever's phase: the training group's budget over the DSI examples (or ``examples``)."""
    t = ws.settings.training
    n = len(ws.examples().examples) if examples is None else examples
    return Phase(name, t.epochs, t.batch_size, t.lr, n, grad_accumulation=t.grad_accumulation)


# -- shared recipe parts -----------------------------------------------------------------------------
def refuse_unread(ws: Workspace, group: str, settings: Any, unread: dict[str, str]) -> None:
    """A method's check: raises SettingsError for the first setting of ``unread`` (key -> why nothing of this
    run reads it) that is set, i.e. away from what it is left unset: its default, or for a budget that follows
    another setting (``inherited``; the run's settings come resolved), that setting's value."""
    default, spec = type(settings)(), {f.name: f.metadata for f in dataclasses.fields(settings)}
    for key, why in unread.items():
        value, follows = getattr(settings, key), spec[key].get("inherit")
        unset = getattr(default, key) if not follows else ws.settings.lookup(follows)[0] * spec[key]["scale"]
        if value is not None and value != unset:
            raise SettingsError(f"{group}.{key}={value!r}: {why}")


def train_config(ws: Workspace, **overrides: Any) -> TrainingSettings:
    """The training group as the loop runs it; a phase overrides what its own group sets."""
    return dataclasses.replace(ws.settings.training, **overrides)


def train(ws: Workspace, model, objective, data: tuple, folder: Path, desc: str,
          searcher: Callable[[Any], Searcher] | None = None, **overrides: Any) -> tuple[dict, list]:
    """Runs the shared training loop (checkpoints in ``folder``, resumed when present): (info, loss history).
    ``searcher``: (model) -> a searcher of the model as it is; with ``--holdout`` the held-out queries are
    searched with it after every epoch (``info["evaluations"]``, the report's training plot)."""
    dataset, collate = data
    after_epoch = held_out_evaluation(ws, searcher) if searcher is not None else None
    trainer = Trainer(model, objective, dataset, collate, train_config(ws, **overrides), folder, desc=desc,
                      after_epoch=after_epoch)
    return trainer.train(), trainer.history


EPOCH_BEAM = 10  # the per-epoch held-out search: beam 10 is enough for nDCG@10 and 10x cheaper than 100


def held_out_evaluation(ws: Workspace, searcher: Callable[[Any], Searcher]) -> Callable[[Any], dict] | None:
    """With ``--holdout``: (model) -> {"nDCG@10": ...} over the held-out training queries, as the run evaluates
    them (identical ids dropped); None without held-out queries (test queries are never looked at while
    training)."""
    if ws.test_split != "holdout":
        return None
    from genir.evaluation.metrics import evaluate

    def run(model) -> dict:
        results = ws.drop_identical_ids(searcher(model).batch_search(ws.test_queries, 10))
        return {"nDCG@10": evaluate(results, ws.qrels, {"nDCG@10": "nDCG@10"})["full"]["nDCG@10"],
                "beam": EPOCH_BEAM}
    return run


def epoch_searcher(method: Method, ws: Workspace, settings: Any, table: DocIdTable, folder: Path):
    """(model) -> the method's own searcher of ``model`` over ``table`` at beam ``EPOCH_BEAM``, for the
    per-epoch held-out curve; None for a method whose searcher must encode the corpus first (too slow per
    epoch)."""
    if method.needs_corpus:
        return None
    return lambda model: method.open_searcher(SearchRequest(model, table, folder, settings, ws.settings.search,
                                                            beam=EPOCH_BEAM, seed=ws.settings.training.seed))


def model_config(ws: Workspace, n_codes: int, max_docid_length: int, extra: dict, decoder_dim: Any = "model"):
    """A ModelConfig from the model group (``decoder_dim=None``: the encoder's width, as GLEN needs)."""
    from genir.models import ModelConfig

    m = ws.settings.model
    return ModelConfig(n_codes=n_codes, backbone=m.backbone, decoder_layers=m.decoder_layers,
                       decoder_ff=m.decoder_ff, decoder_dim=m.decoder_dim if decoder_dim == "model" else decoder_dim,
                       max_docid_length=max_docid_length, query_max_length=m.query_max_length,
                       doc_max_length=m.doc_max_length, dropout=m.dropout, extra=extra)


def seq2seq_training_data(ws: Workspace, settings, model, table: DocIdTable, trie: PrefixTree):
    """DSI multi-task data: indexing (document text, pseudo-queries) + retrieval (training queries)."""
    examples = ws.examples()
    targets = [trie.full_sequence(i) for i in range(len(table))]
    return DocidDataset(examples, targets), DocidCollator(targets, ws.text_inputs(model))


def document_batches(ws: Workspace, model, batch_size: int = 256):
    """(document indices, encoder states, mask) over every document of the corpus, without gradient: trained
    documents from their training inputs (cached states, or the current encoder), documents no training saw
    (``--new-docs``) from their leading span. For whole-corpus passes after training (GenRet's d_T, GLEN's
    identifiers)."""
    import torch

    examples = ws.examples()
    model.eval()
    trained = [i for i in range(len(ws.doc_ids)) if i in examples.doc_text]
    fresh = [i for i in range(len(ws.doc_ids)) if i not in examples.doc_text]
    inputs = ws.text_inputs(model)
    texts = ws.lead_texts([ws.docs[i] for i in fresh])
    with torch.inference_mode():
        for s in range(0, len(trained), batch_size):
            group = trained[s: s + batch_size]
            yield (group, *inputs.states([examples.doc_text[i] for i in group]))
        for s in range(0, len(fresh), batch_size):
            mem, mask = model.encode_texts(texts[s: s + batch_size], ws.settings.model.doc_max_length)
            yield fresh[s: s + batch_size], mem.to(ws.device), mask.to(ws.device)


def beam_searcher(req: SearchRequest) -> Searcher:
    """The shared constrained beam search over the docid table, colliding documents in corpus order."""
    from genir.search.generative import GenerativeSearcher

    return GenerativeSearcher(req.model, req.table, beam=req.beam_size, batch_size=req.search.batch_size,
                              name=req.name, show_progress=req.show_progress)
