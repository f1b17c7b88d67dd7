"""GLEN (Lee et al., "Generative Retrieval via Lexical Index Learning"): identifiers are words of the
backbone's vocabulary. Phase 1 learns keyword IDs (Eq. 4); phase 2 refines them by ranking (Eq. 5-8,
prefix-aware dynamic negatives); every document then gets its identifier from the model (Sec. 3.4), and
search ranks documents sharing an identifier by cos(w^q, w^d) (Eq. 9).

Model: :mod:`genir.methods.glen.model`; losses: :mod:`genir.methods.glen.training`; search:
:mod:`genir.methods.glen.search`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from genir.distributed import world
from genir.docids import DocIdTable, PrefixTree
from genir.evaluation.metrics import evaluate
from genir.evaluation.trec import read_run
from genir.io import save_npy, write_json
from genir.methods.base import (
    AddedDocids,
    Method,
    NewDocuments,
    Phase,
    SearchRequest,
    Trained,
    TransferSource,
    document_batches,
    model_config,
    refuse_unread,
    retriever_phase,
    seq2seq_training_data,
    train,
)
from genir.methods.glen.docids import identifier_words, keyword_docids
from genir.methods.glen.model import LexicalSeq2Seq
from genir.methods.glen.search import LexicalSearcher
from genir.methods.glen.training import GlenConfig, GlenPairs, GlenRefineObjective, PrefixNegatives
from genir.models import DocidSeq2Seq
from genir.settings import SettingsError, resolve_group
from genir.training import checkpoint
from genir.training.objectives import seq2seq_loss
from genir.workspace import Workspace

LOGITS = "identifier_logits.npy"  # w^d of every document (Eq. 9), beside the docids


def resolved(ws: Workspace, cfg: GlenConfig) -> GlenConfig:
    return dataclasses.replace(cfg, **resolve_group(cfg))  # a group built by hand: budgets at their defaults


def _new_model(ws: Workspace, cfg: GlenConfig) -> LexicalSeq2Seq:
    # the decoder works at the word-embedding width (decoder_dim None: the encoder's width)
    model = LexicalSeq2Seq(model_config(ws, 0, cfg.length, {"method": "glen", "feed": cfg.feed}, decoder_dim=None))
    model = model.to(ws.device)
    model.freeze_encoder(ws.frozen_encoder)  # full: the encoder trains, and E with it (tied, as in GLEN's T5)
    return model


def _identify(model, mem, mask, given=None):
    """GLEN Eq. 2 (identifiers and w^d) for encoder states; with ``given`` identifiers only their w^d."""
    if given is None:
        z, w = model.assign_ids(mem, mask)
    else:
        z = torch.as_tensor(given, device=mem.device)
        w = model.identifier_logits(mem, mask, z)
    return z.cpu().numpy(), w.float().cpu().numpy()


def identify_texts(model, texts: list[str], max_length: int, device, batch_size: int = 256, given=None):
    """GLEN Eq. 2 for documents given as text (no cached states): identifiers (N, n) and w^d (N, n);
    with ``given`` (N, n) identifiers, only their w^d."""
    ids = np.zeros((len(texts), model.n_steps), dtype=np.int64)
    logits = np.zeros((len(texts), model.n_steps), dtype=np.float32)
    model.eval()
    for s in range(0, len(texts), batch_size):
        with torch.inference_mode():
            mem, mask = model.encode_texts(texts[s: s + batch_size], max_length)
            part = None if given is None else given[s: s + batch_size]
            ids[s: s + batch_size], logits[s: s + batch_size] = _identify(model, mem.to(device), mask.to(device), part)
    return ids, logits


def identify_all(ws: Workspace, model, tokens=None):
    """Identifiers (Eq. 2) and identifier logits w^d of every document: trained documents from their
    training inputs (cached states, or the current encoder), documents no training saw from their text.
    With ``tokens`` (N, n) the identifiers are given (keyword IDs) and only w^d is computed."""
    n = len(ws.doc_ids)
    ids = np.zeros((n, model.n_steps), dtype=np.int64)
    logits = np.zeros((n, model.n_steps), dtype=np.float32)
    for rows, mem, mask in document_batches(ws, model):
        ids[rows], logits[rows] = _identify(model, mem, mask, None if tokens is None else tokens[rows])
    return ids, logits


def phase1_keywords(ws: Workspace, tokenizer, length: int) -> DocIdTable:
    """GLEN Eq. 4's targets from the text the model reads (its leading span, ``model.doc_max_length``
    tokens with the tokenizer's special tokens among them), so that every target keyword is in its input."""
    return keyword_docids(ws.doc_ids, ws.lead_texts(ws.docs), tokenizer, length,
                          max_tokens=ws.settings.model.doc_max_length - tokenizer.num_special_tokens_to_add())


def phase1(ws: Workspace, cfg: GlenConfig, folder: Path):
    """GLEN phase 1 (Sec. 3.3.1, Eq. 4): seq2seq cross-entropy to keyword IDs, from documents,
    pseudo-queries and training queries. Kept in ``folder/phase1`` for the glen-keyword system."""
    model = _new_model(ws, cfg)
    done = folder / "phase1" / "model"
    keywords = phase1_keywords(ws, model.tokenizer, cfg.length)
    history_file = folder / "phase1" / "history.json"  # the loss curve, for the report's plot when reused
    if cfg.phase1_model:  # given: phase 2 starts from it (its history is the one saved beside it)
        done, history_file = Path(cfg.phase1_model), Path(cfg.phase1_model).parent / "history.json"
    if (done / "genir_model.json").exists():
        model = DocidSeq2Seq.load(done).to(ws.device)
        if not isinstance(model, LexicalSeq2Seq) or model.n_steps != cfg.length:
            raise SettingsError(f"glen.phase1_model: {done} holds no GLEN model of glen.length {cfg.length}")
        model.freeze_encoder(ws.frozen_encoder)
        history = json.loads(history_file.read_text()) if history_file.exists() else []
        return model, keywords, 0.0, 0, history
    data = seq2seq_training_data(ws, cfg, model, keywords, PrefixTree(keywords))
    info, history = train(ws, model, seq2seq_loss, data, folder / "phase1" / "checkpoints",
                          "glen phase 1 (keywords)", epochs=cfg.keyword_epochs, encoder_lr=cfg.keyword_encoder_lr)
    model.save(done)
    write_json(history_file, history)
    checkpoint.discard(folder / "phase1")  # phase 1's model is saved: phase 2 starts from it, not from these
    return model, keywords, info["seconds"], info["steps"], history


def learn(ws: Workspace, cfg: GlenConfig, folder: Path):
    """Phase 1 (keyword IDs), phase 2 (ranking-based refinement, Eq. 5-8, prefix-aware dynamic negatives),
    then identifiers for every document from the model (Sec. 3.4)."""
    cfg = resolved(ws, cfg)
    model, keywords, p1_seconds, p1_steps, p1_history = phase1(ws, cfg, folder)
    before, _ = identify_all(ws, model)  # identifiers after phase 1, for the before/after words
    examples = ws.examples()
    pairs = refine_pairs(examples)
    docs = sorted(examples.doc_text)
    negatives = PrefixNegatives(docs, cfg.negatives, cfg.negative_mode, ws.settings.training.seed)
    inputs = ws.text_inputs(model)
    data = GlenPairs(pairs, inputs, examples.doc_text, negatives)
    # calls per epoch in each process: a step takes batch x processes pairs (tau and the negatives per epoch)
    objective = GlenRefineObjective(cfg, math.ceil(len(pairs) / (cfg.batch_size * world())), negatives, inputs,
                                    examples.doc_text)
    info, history = train(ws, model, objective, (data, data.collate), folder / "phase2" / "checkpoints",
                          "glen phase 2 (refine)", epochs=cfg.refine_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                          encoder_lr=cfg.refine_encoder_lr)
    ids, logits = identify_all(ws, model)
    save_npy(folder / LOGITS, logits)
    save_npy(folder / "identifiers_phase1.npy", before)
    table = DocIdTable(ws.doc_ids, ids, model.config.n_codes, "glen",
                       {"length": cfg.length, "feed": cfg.feed, "negatives": cfg.negative_mode})
    return model, table, {"seconds": p1_seconds + info["seconds"], "steps": p1_steps + info["steps"],
                          "phase1_seconds": p1_seconds, "phase2_seconds": info["seconds"],
                          "history": history, "glen_config": dataclasses.asdict(cfg),
                          "phases": [{"name": "phase 1 (keyword IDs)", "history": p1_history},
                                     {"name": "phase 2 (ranking refinement)", "history": history}],
                          "keyword_collision_rate": keywords.stats()["collision_rate"]}


def refine_pairs(examples) -> list[tuple[int, int]]:
    """Phase 2's (query, document) pairs: the training queries, or, with none (a zero-shot collection), the
    pseudo-queries."""
    pairs = [(t, d) for t, d, kind in examples.examples if kind == "retrieval"]
    return pairs or [(t, d) for t, d, _ in examples.examples if t != examples.doc_text.get(d)]


# what phase 2 alone reads; phase 1's own budget and encoder rate
PHASE2_KEYS = ("refine_epochs", "negatives", "negative_mode", "lambda_point", "lambda_dist", "batch_size", "lr",
               "refine_encoder_lr", "soft_scale", "tau_floor")
PHASE1_KEYS = ("keyword_epochs", "keyword_encoder_lr")


def check_settings(ws: Workspace, cfg: GlenConfig) -> None:
    """GLEN settings that no phase of this run reads are refused, not ignored: phase 2's without ``glen`` in
    the run (``glen-keyword`` trains phase 1 only), phase 1's with ``glen.phase1_model`` (loaded, not
    trained), and the encoder's rates with a frozen encoder."""
    unread = {}
    if "glen" not in ws.settings.methods:
        unread.update(dict.fromkeys(PHASE2_KEYS, "read by phase 2, which glen-keyword does not train (add --method "
                                                 "glen)"))
    if cfg.phase1_model:
        unread.update(dict.fromkeys(PHASE1_KEYS, "read by phase 1, which glen.phase1_model replaces"))
    if ws.settings.model.encoder == "frozen":
        unread.update(dict.fromkeys(("keyword_encoder_lr", "refine_encoder_lr"), "the encoder's rate, read when it is "
                                    "fine-tuned (--encoder full); this run's encoder is frozen"))
    refuse_unread(ws, "glen", cfg, unread)


def keyword_learn(ws: Workspace, cfg: GlenConfig, folder: Path):
    """GLEN after phase 1 only: the fixed keyword IDs and the phase-1 model (the paper's Table 8 row).
    Reuses this run's ``glen/phase1`` when it exists."""
    cfg = resolved(ws, cfg)
    model, keywords, seconds, steps, history = phase1(ws, cfg, ws.out / "glen")
    _, logits = identify_all(ws, model, keywords.codes)
    save_npy(folder / LOGITS, logits)
    return model, keywords, {"seconds": seconds, "steps": steps, "glen_config": dataclasses.asdict(cfg),
                             "phases": [{"name": "phase 1 (keyword IDs)", "history": history}]}


def index_corpus(ws: Workspace, cfg: GlenConfig, model, folder: Path, source: TransferSource) -> DocIdTable:
    """Zero-shot: every document's identifier and w^d from the model (Eq. 2), the BEIR setting of Sec. 4."""
    ids, logits = identify_texts(model, ws.lead_texts(ws.docs), ws.settings.model.doc_max_length, ws.device)
    save_npy(folder / LOGITS, logits)
    return DocIdTable(ws.doc_ids, ids, model.config.n_codes, "glen", {"zero_shot": True})


def add_docids(new: NewDocuments) -> AddedDocids:
    """Identifiers and w^d of new documents from the model (Eq. 2), as for documents no training saw."""
    ids, logits = identify_texts(new.model, new.lead_texts, new.run.model.doc_max_length, new.device)
    return AddedDocids(ids.tolist(), {LOGITS: logits})


def docid_words(model, codes) -> list[str]:
    """An identifier as its vocabulary tokens."""
    return model.tokenizer.convert_ids_to_tokens([int(c) for c in codes])


def open_searcher(req: SearchRequest) -> LexicalSearcher:
    """Identifier tokens only, exact P(z|q), colliding documents in the ``glen.tie_break`` order."""
    return LexicalSearcher(req.model, req.table, req.doc_array(LOGITS), beam=req.beam_size,
                           batch_size=req.search.batch_size, tie_break=req.settings.tie_break,
                           seed=req.seed, name=req.name, show_progress=req.show_progress)


# -- report extras ---------------------------------------------------------------------------------------
def tie_break_comparison(ws: Workspace, searcher: LexicalSearcher, table: DocIdTable, random_seeds: int = 3) -> dict:
    """GLEN Table 5: on the test queries whose relevant document shares its identifier with another
    document, colliding documents ranked by cos(w^q, w^d) (Eq. 9) vs in random order (mean of
    ``random_seeds`` orders). Same model, same beam; only the order within an identifier differs."""
    colliding = {table.doc_ids[i] for group in table.groups().values() if len(group) > 1 for i in group}
    subset = sorted(q for q, rels in ws.qrels.items() if any(g > 0 and d in colliding for d, g in rels.items()))
    out: dict = {"queries": len(subset), "colliding_documents": len(colliding)}
    if not subset:
        return out
    queries = {q: ws.test_queries[q] for q in subset}
    qrels = {q: ws.qrels[q] for q in subset}
    k = ws.settings.search.k
    out["cosine"] = evaluate(searcher.with_tie_break("cosine").batch_search(queries, k), qrels)["full"]
    runs = [evaluate(searcher.with_tie_break("random", seed).batch_search(queries, k), qrels)["full"]
            for seed in range(random_seeds)]
    out["random"] = {m: float(np.mean([r[m] for r in runs])) for m in runs[0]}
    return out


def inspection(ws: Workspace, trained: Trained, n: int = 5) -> dict:
    """Sample test queries with the identifiers (as words) of their top documents, a few documents'
    identifiers after phase 1 and after refinement, and how many documents identifiers hold."""
    table, folder, tok = trained.table, trained.folder, trained.model.tokenizer
    index = {d: i for i, d in enumerate(table.doc_ids)}
    words = [identifier_words(tok, c) for c in table.codes]
    run_file = read_run(folder / f"{trained.name}.trec")
    queries = []
    for qid in list(ws.test_queries)[:n]:
        top = [h.doc_id for h in run_file.get(qid, [])[:3]]
        queries.append({"query": ws.test_queries[qid],
                        "top": [[d, words[index[d]], ws.qrels.get(qid, {}).get(d, 0) > 0] for d in top]})
    before = folder / "identifiers_phase1.npy"
    phase1_ids = np.load(before) if before.exists() else None
    changed = [] if phase1_ids is None else np.flatnonzero((phase1_ids != table.codes).any(1)).tolist()
    # the first documents, then (when refinement moved any) documents whose identifier changed
    shown = list(range(min(n, len(table)))) + [i for i in changed if i >= n][:n]
    docs = [{"doc": table.doc_ids[i], "title": ws.docs[i].title[:80] or ws.docs[i].text[:80],
             "phase1": identifier_words(tok, phase1_ids[i]) if phase1_ids is not None else None,
             "final": words[i]} for i in shown]
    sizes = Counter(Counter(words).values())
    return {"queries": queries, "documents": docs, "docs_per_identifier": dict(sorted(sizes.items())),
            "changed_by_refinement": None if phase1_ids is None else len(changed)}


def report(ws: Workspace, cfg: GlenConfig, trained: Trained, searcher: LexicalSearcher) -> dict:
    extras = {"tie_break": tie_break_comparison(ws, searcher, trained.table)}
    if not trained.info.get("transferred_from"):
        extras["inspection"] = inspection(ws, trained)
    return extras


def render(result: dict) -> list[str]:
    name, lines = result["name"], []
    ins = result.get("inspection")
    if ins:
        lines += [f"{name}: identifiers as words (top 3 documents of sample test queries; * = relevant):", ""]
        for q in ins["queries"]:
            tops = "; ".join(f"{w}{' *' if rel else ''}" for _, w, rel in q["top"])
            lines.append(f"- {q['query'][:90]} -> {tops}")
        lines += ["", "| document | after phase 1 (keywords) | final |", "|---|---|---|"]
        for d in ins["documents"]:
            lines.append(f"| {d['title']} | {d['phase1'] or '-'} | {d['final']} |")
        if ins.get("changed_by_refinement") is not None:
            lines += ["", f"Phase 2 (refinement) changed the identifier of {ins['changed_by_refinement']:,} of "
                      f"{result['docids']['documents']:,} documents."]
        sizes = ", ".join(f"{k}: {v}" for k, v in ins["docs_per_identifier"].items())
        lines += ["", f"Identifiers by the number of documents they hold (documents: identifiers): {sizes}.", ""]
    tb = result.get("tie_break")
    if tb and tb.get("cosine"):
        lines += [f"{name}: documents sharing an identifier, on the {tb['queries']} test queries whose "
                  f"relevant document collides ({tb['colliding_documents']} colliding documents; GLEN Table 5):",
                  "", "| order within an identifier | nDCG@10 | R@1 | R@10 | MRR@10 |", "|---|---|---|---|---|"]
        for mode, label in (("cosine", "cos(w^q, w^d) (Eq. 9)"), ("random", "random (mean of 3 orders)")):
            m = tb[mode]
            lines.append(f"| {label} | " + " | ".join(f"{m[k]:.3f}" for k in ("nDCG@10", "R@1", "R@10", "MRR@10"))
                         + " |")
        lines.append("")
    return lines


_SEARCH = "beam search over identifier tokens, exact P(z|q); ties by cos(w^q, w^d) (Eq. 9)"

class Glen(Method):
    name = "glen"
    description = ("GLEN: lexical docids over the backbone's vocabulary, keyword assignment then ranking refinement, "
                   "collision-free inference")
    docids = "lexical: n vocabulary tokens, from the model (Eq. 2)"
    objective_text = "phase 1 seq2seq to keyword IDs; phase 2 pairwise + pointwise ranking (Eq. 5-8)"
    search_mode = _SEARCH
    group = "glen"
    learns_docids = True
    model_class = LexicalSeq2Seq
    doc_arrays = (LOGITS,)
    # every query-free text at 6 phase-1 epochs (glen.keyword_epochs, about the steps of 30 over the light texts):
    # 0.627 -> 0.645 nDCG@10 on SciFact's held-out training queries, unseen 0.324 -> 0.424 (docs/experiments/glen.md)
    indexing_texts = "all"
    # 2: keywords from the model's input; in-batch false negatives masked; z+, w^d without dropout; 3: keywords
    # within the tokens the encoder reads, its special tokens counted (2 fewer than before)
    revision = 3

    budgets = ("phase 1: glen.keyword_epochs <- training.epochs, with training.batch_size and training.lr; "
               "phase 2: glen.refine_epochs <- training.epochs, glen.batch_size <- training.batch_size, "
               "glen.lr <- training.lr")

    learn = staticmethod(learn)

    def check(self, ws: Workspace, settings: GlenConfig) -> None:
        check_settings(ws, settings)

    def phases(self, ws: Workspace) -> list[Phase]:
        g, t = ws.settings.glen, ws.settings.training
        out = [retriever_phase(ws, "phase 1 (keyword IDs)" + (", loaded: glen.phase1_model" if g.phase1_model else ""))]
        out[0].epochs = 0 if g.phase1_model else g.keyword_epochs
        if self.name == "glen":
            out.append(Phase("phase 2 (ranking refinement)", g.refine_epochs, g.batch_size, g.lr,
                             len(refine_pairs(ws.examples())), grad_accumulation=t.grad_accumulation))
        return out

    index_corpus = staticmethod(index_corpus)
    add_docids = staticmethod(add_docids)
    docid_words = staticmethod(docid_words)
    open_searcher = staticmethod(open_searcher)
    report = staticmethod(report)
    render = staticmethod(render)


class GlenKeyword(Glen):
    name = "glen-keyword"
    description = "GLEN after phase 1 only: fixed keyword IDs (BM25 top-n tokens)"
    docids = "keyword IDs: the document's BM25 top-n tokens (Eq. 4)"
    objective_text = "phase 1 only: seq2seq to keyword IDs"

    def learn(self, ws: Workspace, settings: GlenConfig, folder: Path):
        return keyword_learn(ws, settings, folder)


METHODS = [Glen(), GlenKeyword()]
GROUPS = {"glen": GlenConfig}
