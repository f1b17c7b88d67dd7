"""MERGE (Zhang et al., "Multi-level Relevance Document Identifier Learning for Generative Retrieval"):
RQ-VAE docids shaped by graded relevance (alignment, outer InfoNCE, inner triplets; Sec. 3.1), de-collided
by Sinkhorn (Sec. 3.1.3); a retriever trained with the <retrieval> query token and the position-weighted
loss (Sec. 3.2, Eq. 9). ``rqvae`` is the same recipe without relevance (MERGE's vanilla baseline).

RQ-VAE: :mod:`genir.docids.rqvae`; losses and batches: :mod:`genir.methods.merge.training`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from genir.docids import DocIdTable, PrefixTree
from genir.docids.rqvae import decollide, load_quantizer, place_codes, save_quantizer
from genir.io import write_text
from genir.methods.base import (
    AddedDocids,
    Method,
    NewDocuments,
    Phase,
    TransferSource,
    refuse_unread,
    retriever_phase,
    seq2seq_training_data,
)
from genir.methods.baselines import refuse_trained_encoder, trained_doc_embeddings
from genir.methods.merge.training import MergeConfig, position_weighted_loss, train_rqvae
from genir.training import checkpoint
from genir.training.data import DocidCollator, DocidDataset, EncodedTexts, IndexingExamples, TextInputs
from genir.workspace import Workspace

QUERY_TOKEN = "<retrieval>"


# the settings of the relevance losses alone (MERGE Eq. 5-8), which the vanilla RQ-VAE (rqvae) does not train
RELEVANCE_KEYS = ("lambda_align", "lambda_rel", "betas", "temperature", "margin", "align", "outer", "inner")


def rqvae_docids(ws: Workspace, cfg: MergeConfig, folder: Path, relevance: bool) -> DocIdTable:
    """RQ-VAE docids over the dense document embeddings (MERGE Sec. 3.1): trained with the graded training
    judgements (MERGE, ``relevance=True``) or without (vanilla RQ-VAE), then de-collided (Sec. 3.1.3).
    Level l's code c becomes token l * K + c: <a_i><b_j><c_k><d_l> are distinct tokens."""
    cfg = dataclasses.replace(cfg, relevance=relevance)
    emb = np.asarray(trained_doc_embeddings(ws) if cfg.docid_encoder == "trained" else ws.doc_embeddings(),
                     dtype=np.float32)
    new = set(ws.new_doc_indices)
    trained = np.array([i for i in range(len(emb)) if i not in new])
    # standardised per dimension (statistics of the trained documents): unit-norm sentence embeddings put
    # the reconstruction MSE near 0.002, below the commitment terms, and the auto-encoder collapsed
    # (Cranfield: 36 distinct docids of 1,400, codes used per level 8/4/2/2; standardised: 1,396, 60/117/137/152)
    mean, std = emb[trained].mean(0), emb[trained].std(0)
    emb = (emb - mean) / np.where(std < 1e-6, 1.0, std)
    start = time.perf_counter()
    qrels = None
    if relevance:  # judgements by row of the trained embeddings
        row = {int(d): r for r, d in enumerate(trained)}
        qrels = {q: {row[d]: g for d, g in rels.items() if d in row} for q, rels in ws.train_qrels().items()}
        qrels = {q: r for q, r in qrels.items() if r}
    model, info = train_rqvae(emb[trained], qrels, cfg, folder / "rqvae", seed=ws.settings.training.seed)
    save_quantizer(model, mean, std, folder / "rqvae" / "quantizer")  # new documents get docids from it
    checkpoint.discard(folder / "rqvae")  # the quantizer is saved: its training checkpoints resume nothing now
    codes, last = model.encode_codes(torch.from_numpy(emb))  # every document, new ones included
    codes = codes.numpy()
    stats = {"collisions_before": int(len(codes) - len({tuple(c) for c in codes.tolist()})),
             "reassigned": 0, "extended": 0}
    if cfg.decollide:
        codes, stats = decollide(codes, last.numpy(), model.codebooks[-1].detach().numpy())
    k = cfg.codes
    vocab = k * cfg.levels + (int(codes[:, cfg.levels:].max()) + 1 if codes.shape[1] > cfg.levels else 0)
    tokens = codes + (np.arange(codes.shape[1]) * k)[None, :]
    used = [int(len(np.unique(codes[:, level]))) for level in range(cfg.levels)]
    meta = {"rqvae": {**stats, "codes_used_per_level": used, "seconds": time.perf_counter() - start,
                      "steps": info["steps"], "final": info["final"], "relevance": relevance,
                      "relevance_documents": info["relevance_documents"], "grades": info["grades"],
                      "config": {k_: v for k_, v in dataclasses.asdict(cfg).items() if k_ != "extra"}}}
    write_text(folder / "rqvae" / "info.json", json.dumps({**meta["rqvae"], "history": info["history"]}, default=float))
    return DocIdTable(ws.doc_ids, tokens, vocab, "merge" if relevance else "rqvae", meta)


def quantized_docids(folder: Path, embeddings: np.ndarray, existing: list[tuple[int, ...]]
                     ) -> tuple[list[list[int]], int]:
    """Docids of documents through the saved RQ-VAE in ``folder`` (their dense embeddings standardised by
    the trained documents' statistics), made distinct from ``existing`` docids (tokens) and from each other
    as in training (Sec. 3.1.3): a colliding one takes the nearest free last code. Returns (docid tokens,
    documents left sharing a docid)."""
    if not (folder / "quantizer.json").exists():
        raise ValueError(f"{folder}: no saved quantizer (a run made before genir kept it): retrain the docids "
                         f"(genir run --redo {folder.parent.parent.name}) to index documents with it")
    model, mean, std = load_quantizer(folder)
    x = (np.asarray(embeddings, np.float32) - mean) / np.where(std < 1e-6, 1.0, std)
    codes, last = model.encode_codes(torch.from_numpy(x))
    k = model.codes
    levels = [tuple(c - level * k for level, c in enumerate(s)) for s in existing]
    placed, shared = place_codes(levels, codes.numpy(), last.numpy(), model.codebooks[-1].detach().numpy())
    return [[c + level * k for level, c in enumerate(row)] for row in placed], shared


def add_docids(new: NewDocuments) -> AddedDocids:
    """New documents through the frozen RQ-VAE, made distinct from the existing docids."""
    refuse_trained_encoder(new.settings, "place a new document")
    codes, _ = quantized_docids(new.folder / "rqvae" / "quantizer", new.embeddings, new.table.sequences())
    return AddedDocids(codes)


def index_corpus(ws: Workspace, cfg: MergeConfig, model, folder: Path, source: TransferSource) -> DocIdTable:
    """Zero-shot: another corpus's documents through the RQ-VAE trained in ``source`` (its codes keep the
    meaning the retriever learned), made distinct from each other as in training."""
    refuse_trained_encoder(cfg, "index another corpus")
    name = folder.name
    trained = DocIdTable.load(source.folder / name / "docids")
    codes, shared = quantized_docids(source.folder / name / "rqvae" / "quantizer", ws.doc_embeddings(), [])
    return DocIdTable(ws.doc_ids, codes, trained.vocab_size, trained.scheme,
                      {"quantized_by": str(source.folder / name / "rqvae" / "quantizer"), "sharing_a_docid": shared})


def training_data(ws: Workspace, cfg: MergeConfig, model, table: DocIdTable, trie: PrefixTree):
    """MERGE Sec. 3.2: the DSI multi-task data with the <retrieval> token in front of every query (not of
    the documents' own indexing texts)."""
    examples = ws.examples()
    if not model.query_prefix:
        return seq2seq_training_data(ws, cfg, model, table, trie)
    queries = sorted({t for t, _, kind in examples.examples if kind == "retrieval"})
    moved = {t: len(examples.texts) + i for i, t in enumerate(queries)}
    prefixed = model.query_texts([examples.texts[t] for t in queries])
    joined = IndexingExamples(examples.texts + prefixed,
                              [(moved[t] if kind == "retrieval" else t, d, kind) for t, d, kind in examples.examples],
                              examples.doc_text)
    targets = [trie.full_sequence(i) for i in range(len(table))]
    encoded = None
    max_length = ws.settings.model.doc_max_length
    if ws.frozen_encoder:
        extra = EncodedTexts(model, prefixed, max_length, desc="encode <retrieval> queries")
        encoded = EncodedTexts.joined(ws.encoded(model), extra)
    return DocidDataset(joined, targets), DocidCollator(targets, TextInputs(joined.texts, max_length, model, encoded))


def loss(model, batch):
    """MERGE Eq. 9 with the setting the model was trained with (w_t = 1/sqrt(t) unless switched off)."""
    return position_weighted_loss(model, batch, weighted=model.config.extra.get("position_weight", True))


def model_extra(cfg: MergeConfig) -> dict:
    return {"query_prefix": QUERY_TOKEN, "position_weight": cfg.position_weight}


def render(result: dict) -> list[str]:
    rq = result.get("rqvae")
    if not rq:
        return []
    return [f"{result['name']}: RQ-VAE {'with graded relevance (MERGE)' if rq['relevance'] else '(vanilla)'}, "
            f"{rq['steps']} steps in {rq['seconds']:.0f} s; codes used per level "
            f"{', '.join(map(str, rq['codes_used_per_level']))}; {rq['collisions_before']} colliding "
            f"documents, {rq['reassigned']} re-assigned by Sinkhorn, {rq['extended']} given an extra level.", ""]


def report(ws: Workspace, cfg: MergeConfig, trained, searcher) -> dict:
    """RQ-VAE training and de-collision figures."""
    return {"rqvae": trained.table.meta["rqvae"]} if "rqvae" in trained.table.meta else {}


_SEARCH = "constrained beam search over the 4-level codes, <retrieval> query token"

class Merge(Method):
    name = "merge"
    description = ("MERGE: RQ-VAE docids shaped by graded relevance (alignment, outer InfoNCE, inner triplets), "
                   "<retrieval> queries, position-weighted loss")
    docids = "RQ-VAE codes shaped by graded relevance (Eq. 3-8)"
    objective_text = "position-weighted seq2seq cross-entropy (Eq. 9)"
    search_mode = _SEARCH
    group = "merge"
    objective = staticmethod(loss)
    revision = 2  # 2: Table 2's ablations as betas (0 / 1), as MERGE defines them
    # every query-free text: 0.620 -> 0.664 nDCG@10 held-out (effectiveness.md, "The same texts for GenRet and
    # MERGE")
    indexing_texts = "all"
    relevance = True  # the RQ-VAE learns from the graded training judgements

    budgets = ("RQ-VAE: merge.epochs <- training.epochs, merge.batch_size <- training.batch_size, merge.lr <- "
               "training.lr; retriever: training.epochs, training.batch_size, training.lr")

    def make_docids(self, ws: Workspace, settings: MergeConfig, folder: Path) -> DocIdTable:
        return rqvae_docids(ws, settings, folder, self.relevance)

    def check(self, ws: Workspace, settings: MergeConfig) -> None:
        # without judgements the relevance losses (Eq. 5-7) have nothing to read: MERGE would be the vanilla
        # RQ-VAE under MERGE's name, its relevance settings accepted and ignored
        if self.relevance and not any(ws.train_qrels().values()):
            split = ws.settings.data.train_split
            where = f"--train-split {split!r} has none" if split else "--train-split is empty"
            raise ValueError(f"merge shapes its docids by graded training judgements, and {where}: run --method "
                             "rqvae (the same recipe without relevance) for a corpus without them")
        if "merge" not in ws.settings.methods:  # rqvae alone: nothing reads the relevance losses' settings
            why = "shapes MERGE's relevance losses (Eq. 5-8), which rqvae does not train (add --method merge)"
            refuse_unread(ws, "merge", settings, dict.fromkeys(RELEVANCE_KEYS, why))

    def docid_phases(self, folder: Path) -> list[dict]:
        info = folder / "rqvae" / "info.json"
        if not info.exists():
            return []
        return [{"name": "RQ-VAE", "history": json.loads(info.read_text()).get("history") or []}]

    def phases(self, ws: Workspace) -> list[Phase]:
        m = ws.settings.merge
        trained = len(ws.doc_ids) - len(ws.new_doc_indices)
        return [Phase("RQ-VAE", m.epochs, m.batch_size, m.lr, trained), retriever_phase(ws)]

    training_data = staticmethod(training_data)
    model_extra = staticmethod(model_extra)
    add_docids = staticmethod(add_docids)
    index_corpus = staticmethod(index_corpus)

    def transfer_reads(self, source: Path) -> list[Path]:
        """The model, the trained docids and the RQ-VAE that quantises the new corpus."""
        return [*super().transfer_reads(source), source / self.name / "docids", source / self.name / "rqvae"]

    report = staticmethod(report)
    render = staticmethod(render)


class RqVae(Merge):
    name = "rqvae"
    description = "Vanilla RQ-VAE docids (MERGE's baseline): the same retriever, docids without relevance"
    docids = "RQ-VAE codes (no relevance)"
    revision = 1
    relevance = False


METHODS = [Merge(), RqVae()]
GROUPS = {"merge": MergeConfig}
