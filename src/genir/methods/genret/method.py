"""GenRet (Sun et al., "Learning to Tokenize for Generative Retrieval"): docids learned by discrete
auto-encoding, one step at a time (progressive training), with diverse clustering; then a seq2seq "fit"
on the final docids. Documents no training saw are tokenized by the model alone (Q(z | d), Sec. 5.2).

The trainer and its equations are in :mod:`genir.methods.genret.training`; this module puts them together.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from genir.docids import DocIdTable, PrefixTree
from genir.io import save_npy
from genir.methods.base import (
    EPOCH_BEAM,
    AddedDocids,
    Method,
    NewDocuments,
    Phase,
    SearchRequest,
    Trained,
    TransferSource,
    beam_searcher,
    document_batches,
    model_config,
    refuse_unread,
    seq2seq_training_data,
    train,
    train_config,
)
from genir.methods.genret.model import CodebookSeq2Seq
from genir.methods.genret.objective import GenRetData
from genir.methods.genret.settings import GenRetConfig
from genir.methods.genret.training import ProgressiveTrainer
from genir.methods.ranking import rank_aware
from genir.settings import resolve_group
from genir.training.objectives import seq2seq_loss
from genir.workspace import Workspace


def resolved(ws: Workspace, cfg: GenRetConfig) -> GenRetConfig:
    """The group with its budgets filled in (a group built by hand leaves them unset: their defaults)."""
    return dataclasses.replace(cfg, **resolve_group(cfg))


STATES = "doc_states.npy"  # d_T of every document under its docid's prefix (the q_T . d_T tie order)


def last_states(model, memory: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """d_T (GenRet Eq. 2) of documents given their docid's prefix z_<T: the state their retrieval score
    q_T . d_T (Eq. 10) is made of."""
    return model.hidden(memory, mask, codes[:, :-1].to(memory.device))[:, -1].float().cpu()


def document_states(ws: Workspace, model, codes: torch.Tensor) -> np.ndarray:
    """d_T of every document (trained ones from their training inputs, new ones from their text)."""
    out = np.zeros((len(ws.doc_ids), model.decoder.d_model), dtype=np.float32)
    for rows, mem, mask in document_batches(ws, model):
        out[rows] = last_states(model, mem, mask, codes[rows]).numpy()
    return out


def tokenize_texts(model, texts: list[str], max_length: int, device, batch_size: int = 256,
                   states: list | None = None) -> torch.Tensor:
    """GenRet Eq. 4 for documents given as text (no cached states): their codes (N, M), on the CPU."""
    codes = []
    for s in range(0, len(texts), batch_size):
        with torch.inference_mode():
            mem, mask = model.encode_texts(texts[s: s + batch_size], max_length)
            mem, mask = mem.to(device), mask.to(device)
            codes.append(model.assign_codes(mem, mask).cpu())
            if states is not None:  # their d_T too (``states`` receives one array per batch)
                states.append(last_states(model, mem, mask, codes[-1]).numpy())
    return torch.cat(codes)


def learn(ws: Workspace, cfg: GenRetConfig, folder: Path):
    """Learn docids and the retriever together by progressive discrete auto-encoding, then tokenize the
    documents no training saw (``--new-docs``) with the tokenization model alone.

    With ``--encoder full`` the encoder trains in every phase of every step (warm-up, Eq. 11, fit), as in
    the authors' code, where T5 keeps training at each stage and only the earlier codebooks are frozen
    (the paper's "other parameters are kept fixed" is not what the code does); the corpus bank, the k-means
    input and the per-step assignment then use the current encoder.

    Returns (model, table, train_info); resumes from ``folder/progressive``."""
    cfg = resolved(ws, cfg)
    n = len(ws.doc_ids)
    model = CodebookSeq2Seq(model_config(ws, cfg.codes, cfg.docid_length(n), {"method": "genret"})).to(ws.device)
    model.freeze_encoder(ws.frozen_encoder)
    examples = ws.examples()
    queries: dict[int, list[int]] = {d: [] for d in examples.doc_text}
    for t, d, _ in examples.examples:
        if t != examples.doc_text.get(d):  # the document's own text is its input, not one of its queries
            queries[d].append(t)
    data = GenRetData(ws.text_inputs(model), examples.doc_text, queries, ws.settings.training.seed)
    trainer = ProgressiveTrainer(model, data, n, cfg, folder / "progressive", train_config=train_config(ws))
    info = trainer.train()
    codes = trainer.codes.clone()
    new = [i for i in range(n) if codes[i, 0] < 0]

    def tokenize_new() -> float:  # documents no training saw: Q(z | d) alone, no retraining
        start = time.perf_counter()
        if new:
            codes[new] = tokenize_texts(model, ws.lead_texts([ws.docs[i] for i in new]),
                                        ws.settings.model.doc_max_length, ws.device)
        return time.perf_counter() - start

    new_seconds = tokenize_new()
    meta = {"length": model.n_steps, "codes": cfg.codes, "new_documents": len(new)}
    table = DocIdTable(ws.doc_ids, codes.numpy(), cfg.codes, "genret", meta)
    steps = sum(e["train"]["steps"] + e.get("warmup", {}).get("steps", 0) for e in info["log"])
    fit_seconds, fit_history = 0.0, []
    if cfg.fit_epochs:
        trie = PrefixTree(table)
        data, objective = rank_aware(ws, cfg.rank_weight, seq2seq_training_data(ws, cfg, model, table, trie),
                                     seq2seq_loss, trie, model)
        # the per-epoch held-out points order documents sharing a docid by corpus order: d_T comes after the fit
        def fit_searcher(m):
            return beam_searcher(SearchRequest(m, table, folder, None, ws.settings.search, beam=EPOCH_BEAM))
        fit, fit_history = train(ws, model, objective, data, folder / "progressive" / "fit", "genret fit",
                                 searcher=fit_searcher, epochs=cfg.fit_epochs, batch_size=cfg.batch_size, lr=cfg.lr)
        steps, fit_seconds = steps + fit["steps"], fit["seconds"]
        new_seconds = tokenize_new()  # again, by the model that searches
        table = DocIdTable(ws.doc_ids, codes.numpy(), cfg.codes, "genret", meta)
    save_npy(folder / STATES, document_states(ws, model, codes))
    history = [(i + 1, loss) for i, (_, loss) in enumerate(
        [h for e in info["log"] for h in e["train"]["history"]])]
    phases = [p for t, e in enumerate(info["log"], 1) for p in (
        [{"name": f"step {t} warm-up", "history": e["warmup"]["history"]}] if "warmup" in e else []) + [
        {"name": f"step {t} Eq. 11", "history": e["train"]["history"]}]]
    if fit_history:
        phases.append({"name": "fit (seq2seq)", "history": fit_history, "evaluations": fit["evaluations"]})
    # training time from the per-step log, so that a resumed run still reports the whole of it
    progressive_s = sum(e["train"]["seconds"] + e.get("warmup", {}).get("seconds", 0.0) + e.get("kmeans_seconds", 0.0)
                        for e in info["log"])
    return model, table, {"seconds": progressive_s + fit_seconds, "steps": steps, "progressive": info["log"],
                          "fit_seconds": fit_seconds, "fit_history": fit_history, "new_documents": len(new),
                          "new_doc_seconds": new_seconds,
                          "history": history, "phases": phases, "genret_config": dataclasses.asdict(cfg)}


def index_corpus(ws: Workspace, cfg: GenRetConfig, model, folder: Path, source: TransferSource) -> DocIdTable:
    """Zero-shot: Q(z | d) tokenizes the new corpus (Eq. 4), as it does new documents."""
    states: list = []
    codes = tokenize_texts(model, ws.lead_texts(ws.docs), ws.settings.model.doc_max_length, ws.device,
                           states=states)
    save_npy(folder / STATES, np.concatenate(states))
    return DocIdTable(ws.doc_ids, codes.numpy(), model.config.n_codes, "genret", {"zero_shot": True})


def add_docids(new: NewDocuments) -> AddedDocids:
    """Q(z | d) tokenizes new documents (Eq. 4), as it does documents no training saw; documents that get
    an existing docid share it (and come back together), as in training."""
    states: list = []
    codes = tokenize_texts(new.model, new.lead_texts, new.run.model.doc_max_length, new.device, states=states)
    return AddedDocids(codes.tolist(), {STATES: np.concatenate(states) if states else
                                        np.zeros((0, new.model.decoder.d_model), np.float32)})


def open_searcher(req: SearchRequest):
    """Constrained beam search; documents sharing a docid ordered by q_T . d_T (``genret.tie_break=score``,
    the score GenRet trains for them) or in corpus order (``corpus``; also for a folder made before d_T
    was kept)."""
    from genir.search.generative import GenerativeSearcher, StateOrderedSearcher

    kwargs = {"beam": req.beam_size, "batch_size": req.search.batch_size, "name": req.name,
              "show_progress": req.show_progress}
    if req.settings is not None and req.settings.tie_break == "score":
        if req.doc_arrays is not None and STATES in req.doc_arrays or (req.folder / STATES).exists():
            return StateOrderedSearcher(req.model, req.table, req.doc_array(STATES), **kwargs)
        warnings.warn(f"{req.folder}: no {STATES} (a folder made before genir kept d_T): documents sharing a "
                      "docid come back in corpus order", stacklevel=2)
    return GenerativeSearcher(req.model, req.table, **kwargs)


def check_nolearn(ws: Workspace, cfg: GenRetConfig) -> None:
    methods = ws.settings.methods
    before = methods[: methods.index("genret-nolearn")] if "genret-nolearn" in methods else methods
    if "genret" not in before and not (ws.out / "genret" / "docids" / "docids.json").exists():
        raise ValueError("genret-nolearn trains on GenRet's docids: run --method genret first (same --out), "
                         "or list genret before it")


def nolearn_docids(ws: Workspace, cfg: GenRetConfig, folder: Path) -> DocIdTable:
    """GenRet's final docids from this run's ``genret`` folder (the "without learning" ablation)."""
    source = ws.out / "genret" / "docids"
    if not (source / "docids.json").exists():
        raise ValueError("genret-nolearn trains on GenRet's docids: run --method genret first (same --out)")
    table = DocIdTable.load(source)
    if table.doc_ids != ws.doc_ids:
        raise ValueError(f"{source}: docids are for another corpus")
    return table


def report(ws: Workspace, cfg: GenRetConfig, trained: Trained, searcher) -> dict:
    """Diversity and collapse checks of every progressive step."""
    log = trained.info.get("progressive")
    if not log:
        return {}
    return {"progressive": [{k: v for k, v in e.items() if k not in ("train", "warmup")} for e in log]}


def render(result: dict) -> list[str]:
    prog = result.get("progressive")
    if not prog:
        return []
    lines = [f"{result['name']}: learned docids, progressive steps (diversity d = 1 - sum_j |n_j - n/K| / 2n, "
             "GenRet Sec. 5.3; 1 = uniform):", "",
             "| step | diversity d | codes used | largest docid share | distinct prefixes | k-means init d "
             "| collapsed |", "|---|---|---|---|---|---|---|"]
    for e in prog:
        kmeans = e.get("kmeans_diversity")
        lines.append(f"| {e['step']} | {e['diversity']:.3f} | {e['codes_used']} | {e['largest_docid_share']:.2%} | "
                     f"{e['distinct_docids']:,} | {'-' if kmeans is None else f'{kmeans:.3f}'} | "
                     f"{'YES' if e['collapsed'] else 'no'} |")
    return [*lines, ""]


def check_settings(ws: Workspace, cfg: GenRetConfig) -> None:
    """GenRet settings that the other settings switch off are refused, not ignored."""
    unread = {}
    if cfg.length:
        unread["headroom"] = "sizes the docid length when genret.length is unset; it is set"
    if not cfg.diverse_init:
        unread.update(dict.fromkeys(("warmup_epochs", "warmup_ranking"), "read by the warm-up of the diverse "
                                    "codebook initialisation, which genret.diverse_init=false turns off"))
    if not cfg.reassign and cfg.assign == "argmax":
        unread.update(dict.fromkeys(("epsilon", "sinkhorn_iterations"), "Sinkhorn's, which runs with "
                                    "genret.reassign=true or genret.assign=sinkhorn; neither is on"))
    if cfg.rec_set == "batch":
        unread["bank_refresh"] = "refreshes the bank of genret.rec_set=bank; it is batch"
    if cfg.fit_epochs == 0:
        unread["rank_weight"] = "weighs the rank-aware loss of the fit stage, which genret.fit_epochs=0 turns off"
    refuse_unread(ws, "genret", cfg, unread)


class GenRet(Method):
    name = "genret"
    description = "GenRet: docids learned by discrete auto-encoding, progressive training, diverse clustering"
    docids = "learned: K codes per step, M steps (Q(z|d), Eq. 3-4)"
    objective_text = "reconstruction + commitment + retrieval (Eq. 11), step by step; then seq2seq fit"
    search_mode = "constrained beam search over the learned docids"
    group = "genret"
    learns_docids = True
    model_class = CodebookSeq2Seq
    doc_arrays = (STATES,)
    # every query-free text: 0.567 -> 0.619 nDCG@10 held-out (effectiveness.md, "The same texts for GenRet and
    # MERGE")
    indexing_texts = "all"

    budgets = ("each progressive step: genret.epochs <- training.epochs, its warm-up genret.warmup_epochs = a "
               "tenth of that; the fit: genret.fit_epochs <- training.epochs; every phase: genret.lr <- training.lr, "
               "genret.batch_size <- training.batch_size")

    learn = staticmethod(learn)

    def check(self, ws: Workspace, settings: GenRetConfig) -> None:
        check_settings(ws, settings)

    def rank_weight(self, settings: GenRetConfig) -> float:
        # the loss is the fit stage's: without it (genret.fit_epochs=0) nothing reads the rank group
        return 0.0 if settings.fit_epochs == 0 else super().rank_weight(settings)

    def phases(self, ws: Workspace) -> list[Phase]:
        g, t = resolved(ws, ws.settings.genret), ws.settings.training
        steps, docs = g.docid_length(len(ws.doc_ids)), len(ws.examples().doc_text)
        common = {"batch_size": g.batch_size, "lr": g.lr, "grad_accumulation": t.grad_accumulation}
        out = []
        if g.diverse_init and g.warmup_epochs:
            out.append(Phase("warm-up (each progressive step)", g.warmup_epochs, examples=docs, repeats=steps,
                             **common))
        out.append(Phase("Eq. 11 (each progressive step)", g.epochs, examples=docs, repeats=steps, **common))
        out.append(Phase("fit (seq2seq on the final docids)", g.fit_epochs, examples=len(ws.examples().examples),
                         **common))
        return out

    index_corpus = staticmethod(index_corpus)
    add_docids = staticmethod(add_docids)
    open_searcher = staticmethod(open_searcher)
    report = staticmethod(report)
    render = staticmethod(render)


class GenRetNoLearn(Method):
    name = "genret-nolearn"
    description = "GenRet ablation 'without learning': a seq2seq retriever trained on GenRet's final docids"
    docids = "GenRet's final docids (run genret first)"
    objective_text = "seq2seq cross-entropy to the docid"
    search_mode = "constrained beam search over the docid prefix tree"
    group = "genret"
    live_refusal = ("genret-nolearn is an ablation trained on GenRet's fixed docids: index new documents with "
                    "genret, whose tokenization model assigns them")

    def make_docids(self, ws: Workspace, settings: GenRetConfig, folder: Path) -> DocIdTable:
        return nolearn_docids(ws, settings, folder)

    def check(self, ws: Workspace, settings: GenRetConfig) -> None:
        check_nolearn(ws, settings)


METHODS = [GenRet(), GenRetNoLearn()]
GROUPS = {"genret": GenRetConfig}
