"""What a method is, and the recipe parts several methods share.

A :class:`Method` is a docid scheme (``make_docids``, or ``learn`` for docids that come out of training),
a training objective and its data, a searcher factory (``open_searcher``: the one way a method folder is
searched, by ``genir run``, ``search``, ``serve`` and ``transfer`` alike), and report extras. Each family
of methods lives in one module of this package and registers its methods in ``genir.methods``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genir.data.collection import Document
from genir.docids import DocIdTable, PrefixTree
from genir.search.base import Searcher
from genir.settings import SearchSettings
from genir.training import TrainConfig, Trainer
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
class Trained:
    """A method's trained parts, as the report extras see them."""

    name: str
    folder: Path
    model: Any
    table: DocIdTable
    info: dict = field(default_factory=dict)


def no_extras(*_: Any) -> dict:
    return {}


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    docids: str  # the docid scheme, in words (``genir methods``)
    objective_text: str  # the training objective, in words
    search_mode: str  # how it searches, in words
    group: str | None = None  # its settings group (``--set GROUP.key=value``)
    # (workspace, settings, folder) -> DocIdTable, for docids fixed before training
    make_docids: Callable | None = None
    # (workspace, settings, folder) -> (model, table, train_info), for docids learned while training
    learn: Callable | None = None
    objective: Callable = seq2seq_loss
    # (workspace, settings, model, table, trie) -> (dataset, collate)
    training_data: Callable | None = None
    n_codes: Callable[[DocIdTable], int] = lambda table: table.vocab_size
    model_extra: Callable[[Any], dict] = lambda settings: {}  # saved with the model (ModelConfig.extra)
    open_searcher: Callable[[SearchRequest], Searcher] | None = None
    needs_corpus: bool = False  # its searcher encodes the corpus (SearchRequest.docs) when it opens
    # zero-shot: (workspace of another corpus, settings, trained model, folder) -> that corpus's docids; None
    # when the method cannot index a corpus without retraining
    index_corpus: Callable | None = None
    # (workspace, settings, Trained, searcher) -> extra result fields; (result) -> markdown lines
    report: Callable = no_extras
    render: Callable[[dict], list[str]] = lambda result: []
    # (workspace, settings) -> None: raises on an input this method cannot use, before any stage runs
    check: Callable | None = None
    # live index (``genir index add``): NewDocuments -> AddedDocids, with no retraining; None: the method
    # cannot take a document without retraining, and ``live_refusal`` says why and what to do instead
    add_docids: Callable | None = None
    live_refusal: str = "this method cannot index a document without retraining"
    doc_arrays: tuple[str, ...] = ()  # per-document files beside the docids (kept in step by the live index)
    # (model, codes) -> the docid in words (GLEN: its vocabulary tokens); None: the codes as a path
    docid_words: Callable | None = None
    # bumped when a fix changes what the same settings train: part of the stage fingerprint from 2 on, so
    # that a run folder made by the older recipe is reported as different, never resumed as if the same
    revision: int = 1

    def __post_init__(self) -> None:
        if (self.make_docids is None) == (self.learn is None):
            raise ValueError(f"{self.name}: give make_docids or learn, not both")
        if self.open_searcher is None:
            object.__setattr__(self, "open_searcher", beam_searcher)
        if self.training_data is None:
            object.__setattr__(self, "training_data", seq2seq_training_data)


# -- shared recipe parts -----------------------------------------------------------------------------
def train_config(ws: Workspace, **overrides: Any) -> TrainConfig:
    """The training group as the loop's TrainConfig; a method overrides what its own group sets."""
    t = ws.settings.training
    shared = {k: getattr(t, k) for k in ("epochs", "batch_size", "lr", "encoder_lr", "warmup_ratio",
                                         "encoder_warmup_ratio", "grad_accumulation", "precision",
                                         "gradient_checkpointing", "seed", "checkpoint_every")}
    return TrainConfig(**{**shared, **overrides})


def train(ws: Workspace, model, objective, data: tuple, folder: Path, desc: str, **overrides: Any) -> tuple[dict, list]:
    """Runs the shared training loop (checkpoints in ``folder``, resumed when present): (info, loss history)."""
    dataset, collate = data
    trainer = Trainer(model, objective, dataset, collate, train_config(ws, **overrides), folder, desc=desc)
    return trainer.train(), trainer.history


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
