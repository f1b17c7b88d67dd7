"""Generative methods as recipes over shared parts: a docid scheme, a training objective and its data,
and a search mode.

``genir run --method NAME`` reads this registry. A new method adds a docid scheme, an objective and (if
its batches differ) a training-data builder here; the data loading, training loop, trie, beam search and
metrics are shared. Builders receive the :class:`genir.pipeline.Run`, which computes the shared pieces
(training examples, frozen-encoder states, BM25, dense embeddings) once for all methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from genir.docids import DocIdTable, PrefixTree, atomic_docids, naive_docids, semantic_docids
from genir.training.objectives import seq2seq_loss, tied_contrastive_loss, tied_margin_mse_loss


@dataclass
class MethodContext:
    """What a docid scheme may draw on: document ids in corpus order and (lazily) dense embeddings."""

    doc_ids: list[str]
    embed_docs: Callable[[], np.ndarray]
    options: dict


def seq2seq_training_data(run, model, table: DocIdTable, trie: PrefixTree):
    """DSI multi-task data: indexing (document text, pseudo-queries) + retrieval (training queries)."""
    from genir.training.data import DocidCollator, DocidDataset

    examples = run.examples()
    targets = [trie.full_sequence(i) for i in range(len(table))]
    encoded = run.encoded(model) if run.cfg.encoder == "frozen" else None
    return DocidDataset(examples, targets), DocidCollator(examples, targets, model, encoded, run.cfg.doc_max_length)


def beam_searcher(run, model, table: DocIdTable, name: str, beam: int):
    from genir.search.generative import GenerativeSearcher

    return GenerativeSearcher(model, table, beam=beam, batch_size=run.cfg.search_batch_size, name=name,
                              show_progress=True)


def _require_frozen(run) -> None:
    if run.cfg.encoder != "frozen":
        raise ValueError("tied-atomic trains on cached encoder states here: use --encoder frozen")


def tied_training_data(run, model, table: DocIdTable, trie: PrefixTree):
    """Tied-Atomic: (query, positive document) pairs from training queries and pseudo-queries, with BM25
    top-k negatives (Tied-Atomic Sec. 4: "contrastive loss with BM25 negatives sampled from top-k")."""
    from genir.training.data import ContrastiveCollator, ContrastiveDataset

    _require_frozen(run)
    examples = run.examples()
    pairs = [(t, d) for t, d, kind in examples.examples
             if kind == "retrieval" or (kind == "indexing" and t != examples.doc_text.get(d))]
    query_texts = sorted({t for t, _ in pairs})
    ranked = run.bm25().batch_search({str(t): examples.texts[t] for t in query_texts}, run.cfg.tied_negative_depth)
    index = {d: i for i, d in enumerate(table.doc_ids)}
    negatives = {t: [index[h.doc_id] for h in ranked[str(t)]] for t in query_texts}
    positives: dict[int, set[int]] = {}
    for t, d in pairs:
        positives.setdefault(t, set()).add(d)
    # negatives only among trained documents: held-out ("new") documents stay unseen in training
    negatives = {t: [d for d in negs if d not in positives[t] and d in examples.doc_text]
                 for t, negs in negatives.items()}
    collate = ContrastiveCollator(run.encoded(model), examples.doc_text, negatives, sorted(examples.doc_text),
                                  run.cfg.tied_negatives, run.cfg.seed)
    return ContrastiveDataset(pairs), collate


def tied_distillation_data(run, model, table: DocIdTable, trie: PrefixTree):
    """Margin-MSE data: training queries whose positive and at least one other document carry teacher
    scores (``--teacher-scores``: TSV query_id, doc_id, score, or a TREC run)."""
    from genir.training.data import ContrastiveDataset, MarginCollator, read_teacher_scores

    if not run.cfg.teacher_scores:
        raise ValueError("tied-atomic-distill needs --teacher-scores FILE (query_id, doc_id, score)")
    _require_frozen(run)
    teacher = read_teacher_scores(run.cfg.teacher_scores, run.collection.queries, run.collection.corpus)
    examples = run.examples()
    index = {d: i for i, d in enumerate(table.doc_ids)}
    text_id = {t: i for i, t in enumerate(examples.texts)}
    text_of = {q: text_id[run.collection.queries[q]] for q in teacher if run.collection.queries[q] in text_id}
    by_text = {text_of[q]: {index[d]: s for d, s in scores.items() if index[d] in examples.doc_text}
               for q, scores in teacher.items() if q in text_of}
    pairs = [(t, d) for t, d, kind in examples.examples
             if kind == "retrieval" and d in by_text.get(t, {}) and len(by_text[t]) > 1]
    if not pairs:
        raise ValueError("no training query has teacher scores for its positive and another document")
    return ContrastiveDataset(pairs), MarginCollator(run.encoded(model), examples.doc_text, by_text, run.cfg.seed)


def tied_searcher(run, model, table: DocIdTable, name: str, beam: int):
    """Encode every document into the tied docid matrix; search it generatively or with faiss."""
    from genir.search.tied import TiedAtomicIndex, TiedAtomicSearcher

    searcher = TiedAtomicSearcher(model, TiedAtomicIndex(model.decoder.d_model), mode=run.cfg.tied_mode,
                                  name=name)
    searcher.add_documents(run.docs)
    return searcher


def tokenize_texts(model, texts: list[str], max_length: int, device, batch_size: int = 256):
    """GenRet Eq. 4 for documents given as text (no cached states): their codes (N, M), on the CPU."""
    import torch

    codes = []
    for s in range(0, len(texts), batch_size):
        with torch.inference_mode():
            mem, mask = model.encode_texts(texts[s: s + batch_size], max_length)
            codes.append(model.assign_codes(mem.to(device), mask.to(device)).cpu())
    return torch.cat(codes)


def genret_learn(run, folder):
    """GenRet: learn docids and the retriever together by progressive discrete auto-encoding, then
    tokenize documents no training saw (``--new-docs``) with the tokenization model alone (Sec. 5.2).

    Returns (model, table, train_info); resumes from ``folder/progressive``.
    """
    import time

    from genir.docids.trie import PrefixTree
    from genir.models import ModelConfig
    from genir.models.codebook import CodebookSeq2Seq
    from genir.training.genret import GenRetData, ProgressiveTrainer

    if run.cfg.encoder != "frozen":
        raise ValueError("genret trains on cached encoder states here: use --encoder frozen")
    cfg = run.genret_config()
    n = len(run.doc_ids)
    mcfg = ModelConfig(n_codes=cfg.codes, backbone=run.cfg.backbone, decoder_layers=run.cfg.decoder_layers,
                       decoder_ff=run.cfg.decoder_ff, decoder_dim=run.cfg.decoder_dim,
                       max_docid_length=cfg.docid_length(n), query_max_length=run.cfg.query_max_length,
                       doc_max_length=run.cfg.doc_max_length, extra={"method": "genret"})
    model = CodebookSeq2Seq(mcfg).to(run.device)
    model.freeze_encoder(True)
    examples = run.examples()
    queries: dict[int, list[int]] = {d: [] for d in examples.doc_text}
    for t, d, _ in examples.examples:
        if t != examples.doc_text.get(d):  # the document's own text is its input, not one of its queries
            queries[d].append(t)
    data = GenRetData(run.encoded(model), examples.doc_text, queries, cfg.seed)
    trainer = ProgressiveTrainer(model, data, n, cfg, folder / "progressive")
    info = trainer.train()
    codes = trainer.codes.clone()
    new = [i for i in range(n) if codes[i, 0] < 0]

    def tokenize_new() -> float:  # documents no training saw: Q(z | d) alone, no retraining
        start = time.perf_counter()
        if new:
            codes[new] = tokenize_texts(model, run.lead_texts([run.docs[i] for i in new]), run.cfg.doc_max_length,
                                        run.device)
        return time.perf_counter() - start

    new_seconds = tokenize_new()
    table = DocIdTable(run.doc_ids, codes.numpy(), cfg.codes, "genret",
                       {"length": model.n_steps, "codes": cfg.codes, "new_documents": len(new)})
    steps, fit_seconds = sum(e["train"]["steps"] + e.get("warmup", {}).get("steps", 0) for e in info["log"]), 0.0
    if cfg.fit_epochs:
        from genir.training import TrainConfig, Trainer

        dataset, collate = seq2seq_training_data(run, model, table, PrefixTree(table))
        tcfg = TrainConfig(epochs=cfg.fit_epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed)
        fit = Trainer(model, seq2seq_loss, dataset, collate, tcfg, folder / "progressive" / "fit",
                      desc="genret fit").train()
        steps, fit_seconds = steps + fit["steps"], fit["seconds"]
        new_seconds = tokenize_new()  # again, by the model that searches
        table = DocIdTable(run.doc_ids, codes.numpy(), cfg.codes, "genret", table.meta)
    history = [(i + 1, loss) for i, (_, loss) in enumerate(
        [h for e in info["log"] for h in e["train"]["history"]])]
    # training time from the per-step log, so that a resumed run still reports the whole of it
    progressive_s = sum(e["train"]["seconds"] + e.get("warmup", {}).get("seconds", 0.0) + e.get("kmeans_seconds", 0.0)
                        for e in info["log"])
    return model, table, {"seconds": progressive_s + fit_seconds, "steps": steps, "progressive": info["log"],
                          "fit_seconds": fit_seconds, "new_documents": len(new), "new_doc_seconds": new_seconds,
                          "history": history, "genret_config": cfg.__dict__}


# -- zero-shot: a trained model indexes a corpus it never saw, without retraining ------------------------
def glen_index_corpus(run, model, folder) -> DocIdTable:
    """GLEN: every document's identifier and w^d from the model (Eq. 2), the BEIR setting of Sec. 4."""
    import numpy as np

    ids, logits = identify_texts(model, run.lead_texts(run.docs), run.cfg.doc_max_length, run.device)
    np.save(folder / "identifier_logits.npy", logits)
    return DocIdTable(run.doc_ids, ids, model.config.n_codes, "glen", {"zero_shot": True})


def genret_index_corpus(run, model, folder) -> DocIdTable:
    """GenRet: Q(z | d) tokenizes the new corpus (Eq. 4), as it does new documents."""
    codes = tokenize_texts(model, run.lead_texts(run.docs), run.cfg.doc_max_length, run.device)
    return DocIdTable(run.doc_ids, codes.numpy(), model.config.n_codes, "genret", {"zero_shot": True})


def semantic_index_corpus(run, model, folder) -> DocIdTable:
    """DSI-semantic: the new corpus clustered by the same recipe (hierarchical k-means of its dense
    embeddings, same c); the trained decoder's codes keep no meaning across corpora, which is what the
    static-docid rows of GLEN's Table 4 measure."""
    c = model.config.n_codes
    return semantic_docids(run.doc_ids, run.doc_embeddings(), c=c, seed=run.cfg.seed)


# -- MERGE / vanilla RQ-VAE -------------------------------------------------------------------------------
def rqvae_docids(ctx: MethodContext, relevance: bool) -> DocIdTable:
    """RQ-VAE docids over the dense document embeddings (MERGE Sec. 3.1): trained with the graded training
    judgements (MERGE, ``relevance=True``) or without (vanilla RQ-VAE), then de-collided (Sec. 3.1.3).
    Level l's code c becomes token l * K + c: <a_i><b_j><c_k><d_l> are distinct tokens."""
    import json
    import time
    from pathlib import Path

    import torch

    from genir.docids.rqvae import decollide
    from genir.training.merge import train_rqvae

    cfg = ctx.options["run_config"].merge(relevance)
    folder = Path(ctx.options["folder"]) / "rqvae"
    emb = np.asarray(ctx.embed_docs(), dtype=np.float32)
    new = set(ctx.options.get("new_docs", []))
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
        qrels = {q: {row[d]: g for d, g in rels.items() if d in row} for q, rels in ctx.options["train_qrels"].items()}
        qrels = {q: r for q, r in qrels.items() if r}
    model, info = train_rqvae(emb[trained], qrels, cfg, folder)
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
                      "config": {k_: v for k_, v in cfg.__dict__.items() if k_ != "extra"}}}
    (folder / "info.json").write_text(json.dumps({**meta["rqvae"], "history": info["history"]}, default=float))
    return DocIdTable(ctx.doc_ids, tokens, vocab, "merge" if relevance else "rqvae", meta)


def merge_training_data(run, model, table: DocIdTable, trie: PrefixTree):
    """MERGE Sec. 3.2: the DSI multi-task data with the <retrieval> token in front of every query (not of
    the documents' own indexing texts)."""
    from genir.training.data import DocidCollator, DocidDataset, EncodedTexts, IndexingExamples

    examples = run.examples()
    if not model.query_prefix:
        return seq2seq_training_data(run, model, table, trie)
    queries = sorted({t for t, _, kind in examples.examples if kind == "retrieval"})
    moved = {t: len(examples.texts) + i for i, t in enumerate(queries)}
    prefixed = model.query_texts([examples.texts[t] for t in queries])
    joined = IndexingExamples(examples.texts + prefixed,
                              [(moved[t] if kind == "retrieval" else t, d, kind) for t, d, kind in examples.examples],
                              examples.doc_text)
    targets = [trie.full_sequence(i) for i in range(len(table))]
    encoded = None
    if run.cfg.encoder == "frozen":
        extra = EncodedTexts(model, prefixed, run.cfg.doc_max_length, desc="encode <retrieval> queries")
        encoded = EncodedTexts.joined(run.encoded(model), extra)
    return DocidDataset(joined, targets), DocidCollator(joined, targets, model, encoded, run.cfg.doc_max_length)


def merge_loss(model, batch):
    """MERGE Eq. 9 with the setting the model was trained with (w_t = 1/sqrt(t) unless switched off)."""
    from genir.training.merge import position_weighted_loss

    return position_weighted_loss(model, batch, weighted=model.config.extra.get("position_weight", True))


def _merge_extra(run) -> dict:
    return {"query_prefix": "<retrieval>", "position_weight": run.cfg.merge_position_weight}


def _learned_while_training(ctx: MethodContext) -> DocIdTable:
    raise ValueError("this method learns its docids while training (learn_docids); there is no separate scheme")


def genret_docids(ctx: MethodContext) -> DocIdTable:
    """GenRet's final docids from this run's ``genret`` folder (the "without learning" ablation)."""
    from pathlib import Path

    folder = Path(ctx.options["run_out"]) / "genret" / "docids"
    if not (folder / "docids.json").exists():
        raise ValueError("genret-nolearn trains on GenRet's docids: run --method genret first (same --out)")
    table = DocIdTable.load(folder)
    if table.doc_ids != ctx.doc_ids:
        raise ValueError(f"{folder}: docids are for another corpus")
    return table


def _glen_model(run, cfg):
    from genir.models import ModelConfig
    from genir.models.lexical import LexicalSeq2Seq

    mcfg = ModelConfig(n_codes=0, backbone=run.cfg.backbone, decoder_layers=run.cfg.decoder_layers,
                       decoder_ff=run.cfg.decoder_ff, decoder_dim=None, max_docid_length=cfg.length,
                       query_max_length=run.cfg.query_max_length, doc_max_length=run.cfg.doc_max_length,
                       extra={"method": "glen", "feed": cfg.feed})
    model = LexicalSeq2Seq(mcfg).to(run.device)
    model.freeze_encoder(True)
    return model


def _identify(model, mem, mask, given=None):
    """GLEN Eq. 2 (identifiers and w^d) for encoder states; with ``given`` identifiers only their w^d."""
    import torch

    if given is None:
        z, w = model.assign_ids(mem, mask)
    else:
        z = torch.as_tensor(given, device=mem.device)
        w = model.identifier_logits(mem, mask, z)
    return z.cpu().numpy(), w.float().cpu().numpy()


def identify_texts(model, texts: list[str], max_length: int, device, batch_size: int = 256, given=None):
    """GLEN Eq. 2 for documents given as text (no cached states): identifiers (N, n) and w^d (N, n);
    with ``given`` (N, n) identifiers, only their w^d."""
    import numpy as np
    import torch

    ids = np.zeros((len(texts), model.n_steps), dtype=np.int64)
    logits = np.zeros((len(texts), model.n_steps), dtype=np.float32)
    model.eval()
    for s in range(0, len(texts), batch_size):
        with torch.inference_mode():
            mem, mask = model.encode_texts(texts[s: s + batch_size], max_length)
            part = None if given is None else given[s: s + batch_size]
            ids[s: s + batch_size], logits[s: s + batch_size] = _identify(model, mem.to(device), mask.to(device), part)
    return ids, logits


def _identify_all(run, model, tokens=None):
    """Identifiers (Eq. 2) and identifier logits w^d of every document: trained documents from their cached
    states, documents no training saw from their text (no retraining). With ``tokens`` (N, n) the
    identifiers are given (keyword IDs) and only w^d is computed."""
    import numpy as np
    import torch

    examples = run.examples()
    n = len(run.doc_ids)
    ids = np.zeros((n, model.n_steps), dtype=np.int64)
    logits = np.zeros((n, model.n_steps), dtype=np.float32)
    model.eval()
    fresh = [i for i in range(n) if i not in examples.doc_text]
    if fresh:
        ids[fresh], logits[fresh] = identify_texts(model, run.lead_texts([run.docs[i] for i in fresh]),
                                                   run.cfg.doc_max_length, run.device,
                                                   given=None if tokens is None else tokens[fresh])
    cached = [i for i in range(n) if i in examples.doc_text]
    for s in range(0, len(cached), 256):
        group = cached[s: s + 256]
        with torch.inference_mode():
            mem, mask = run.encoded(model).batch([examples.doc_text[i] for i in group])
            ids[group], logits[group] = _identify(model, mem.to(run.device), mask.to(run.device),
                                                  None if tokens is None else tokens[group])
    return ids, logits


def _glen_phase1(run, cfg, folder):
    """GLEN phase 1 (Sec. 3.3.1, Eq. 4): seq2seq cross-entropy to keyword IDs, from documents,
    pseudo-queries and training queries. Kept in ``folder/phase1`` for the glen-keyword system."""
    from genir.docids.lexical import keyword_docids
    from genir.docids.trie import PrefixTree
    from genir.models import DocidSeq2Seq
    from genir.training import TrainConfig, Trainer

    model = _glen_model(run, cfg)
    done = folder / "phase1" / "model"
    keywords = keyword_docids(run.doc_ids, [d.full_text for d in run.docs], model.tokenizer, cfg.length)
    if (done / "genir_model.json").exists():
        model = DocidSeq2Seq.load(done).to(run.device)
        model.freeze_encoder(True)
        return model, keywords, 0.0, 0
    dataset, collate = seq2seq_training_data(run, model, keywords, PrefixTree(keywords))
    tcfg = TrainConfig(epochs=cfg.keyword_epochs, batch_size=run.cfg.batch_size, lr=run.cfg.lr, seed=cfg.seed)
    info = Trainer(model, seq2seq_loss, dataset, collate, tcfg, folder / "phase1" / "checkpoints",
                   desc="glen phase 1 (keywords)").train()
    model.save(done)
    return model, keywords, info["seconds"], info["steps"]


def glen_learn(run, folder):
    """GLEN: phase 1 (keyword IDs), phase 2 (ranking-based refinement, Eq. 5-8, prefix-aware dynamic
    negatives), then identifiers for every document from the model (Sec. 3.4)."""
    import math

    import numpy as np

    from genir.training import TrainConfig, Trainer
    from genir.training.glen import GlenPairs, GlenRefineObjective, PrefixNegatives

    if run.cfg.encoder != "frozen":
        raise ValueError("glen trains on cached encoder states here: use --encoder frozen")
    cfg = run.glen_config()
    model, keywords, p1_seconds, p1_steps = _glen_phase1(run, cfg, folder)
    before, _ = _identify_all(run, model)  # identifiers after phase 1, for the before/after words
    examples = run.examples()
    pairs = [(t, d) for t, d, kind in examples.examples if kind == "retrieval"]
    if not pairs:  # no training queries: pseudo-queries stand in (a zero-shot collection)
        pairs = [(t, d) for t, d, _ in examples.examples if t != examples.doc_text.get(d)]
    docs = sorted(examples.doc_text)
    negatives = PrefixNegatives(docs, cfg.negatives, cfg.negative_mode, cfg.seed)
    data = GlenPairs(pairs, run.encoded(model), examples.doc_text, negatives)
    objective = GlenRefineObjective(cfg, math.ceil(len(pairs) / cfg.batch_size), negatives, run.encoded(model),
                                    examples.doc_text)
    tcfg = TrainConfig(epochs=cfg.refine_epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed)
    trainer = Trainer(model, objective, data, data.collate, tcfg, folder / "phase2" / "checkpoints",
                      desc="glen phase 2 (refine)")
    info = trainer.train()
    ids, logits = _identify_all(run, model)
    np.save(folder / "identifier_logits.npy", logits)
    np.save(folder / "identifiers_phase1.npy", before)
    table = DocIdTable(run.doc_ids, ids, model.config.n_codes, "glen",
                       {"length": cfg.length, "feed": cfg.feed, "negatives": cfg.negative_mode})
    return model, table, {"seconds": p1_seconds + info["seconds"], "steps": p1_steps + info["steps"],
                          "phase1_seconds": p1_seconds, "phase2_seconds": info["seconds"],
                          "history": trainer.history, "glen_config": cfg.__dict__,
                          "keyword_collision_rate": keywords.stats()["collision_rate"]}


def glen_keyword_learn(run, folder):
    """GLEN after phase 1 only: the fixed keyword IDs and the phase-1 model (the paper's Table 8 row).
    Reuses this run's ``glen/phase1`` when it exists."""
    import numpy as np

    cfg = run.glen_config()
    model, keywords, seconds, steps = _glen_phase1(run, cfg, run.out / "glen")
    _, logits = _identify_all(run, model, keywords.codes)
    np.save(folder / "identifier_logits.npy", logits)
    return model, keywords, {"seconds": seconds, "steps": steps, "glen_config": cfg.__dict__}


def glen_searcher(run, model, table: DocIdTable, name: str, beam: int):
    import numpy as np

    from genir.search.lexical import LexicalSearcher

    logits = np.load(run.out / name / "identifier_logits.npy")
    return LexicalSearcher(model, table, logits, beam=beam, batch_size=run.cfg.search_batch_size,
                           tie_break=run.glen_config().tie_break, name=name, show_progress=True)


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    make_docids: Callable[[MethodContext], DocIdTable]
    objective: Callable = seq2seq_loss
    training_data: Callable = seq2seq_training_data
    searcher: Callable = beam_searcher
    n_codes: Callable[[DocIdTable], int] = lambda table: table.vocab_size
    # methods that learn their docids while training return (model, table, train_info) from here, and
    # make_docids is not called
    learn_docids: Callable | None = None
    # zero-shot: (run on another corpus, trained model, output folder) -> that corpus's docids; None when
    # the method cannot index a corpus without retraining (atomic docids have no output for a new document)
    index_corpus: Callable | None = None
    # method settings saved with the model (ModelConfig.extra), e.g. a query task token
    model_extra: Callable = lambda run: {}


METHODS: dict[str, Method] = {
    m.name: m for m in [
        Method("dsi-atomic", "DSI, atomic docids: one output per document, one decoding step",
               lambda ctx: atomic_docids(ctx.doc_ids)),
        Method("dsi-naive", "DSI, naive string docids: the document id's characters",
               lambda ctx: naive_docids(ctx.doc_ids)),
        Method("dsi-semantic", "DSI, semantic docids: hierarchical k-means over dense document embeddings",
               lambda ctx: semantic_docids(ctx.doc_ids, ctx.embed_docs(), c=ctx.options.get("semantic_c", 32),
                                           seed=ctx.options.get("seed", 0)),
               index_corpus=semantic_index_corpus),
        Method("tied-atomic", "Tied-Atomic: atomic docids tied to the model's own document encodings",
               lambda ctx: atomic_docids(ctx.doc_ids), objective=tied_contrastive_loss,
               training_data=tied_training_data, searcher=tied_searcher, n_codes=lambda table: 1),
        Method("tied-atomic-distill", "Tied-Atomic trained by Margin-MSE on teacher scores (--teacher-scores)",
               lambda ctx: atomic_docids(ctx.doc_ids), objective=tied_margin_mse_loss,
               training_data=tied_distillation_data, searcher=tied_searcher, n_codes=lambda table: 1),
        Method("genret", "GenRet: docids learned by discrete auto-encoding, progressive training, diverse "
               "clustering", _learned_while_training, learn_docids=genret_learn, index_corpus=genret_index_corpus),
        Method("glen", "GLEN: lexical docids over the backbone's vocabulary, keyword assignment then ranking "
               "refinement, collision-free inference", _learned_while_training, learn_docids=glen_learn,
               searcher=glen_searcher, index_corpus=glen_index_corpus),
        Method("glen-keyword", "GLEN after phase 1 only: fixed keyword IDs (BM25 top-n tokens)",
               _learned_while_training, learn_docids=glen_keyword_learn, searcher=glen_searcher,
               index_corpus=glen_index_corpus),
        Method("merge", "MERGE: RQ-VAE docids shaped by graded relevance (alignment, outer InfoNCE, inner "
               "triplets), <retrieval> queries, position-weighted loss", lambda ctx: rqvae_docids(ctx, True),
               objective=merge_loss, training_data=merge_training_data, model_extra=_merge_extra),
        Method("rqvae", "Vanilla RQ-VAE docids (MERGE's baseline): the same retriever, docids without relevance",
               lambda ctx: rqvae_docids(ctx, False), objective=merge_loss, training_data=merge_training_data,
               model_extra=_merge_extra),
        Method("genret-nolearn", "GenRet ablation 'without learning': a seq2seq retriever trained on "
               "GenRet's final docids", genret_docids),
    ]
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]
