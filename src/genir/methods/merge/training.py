"""MERGE (Zhang et al., "Multi-level Relevance Document Identifier Learning for Generative Retrieval"):
RQ-VAE docids shaped by graded relevance (Sec. 3.1.2-3.1.3), and the position-weighted seq2seq loss
of the generative retriever (Sec. 3.2, Eq. 9).

The RQ-VAE (:class:`genir.docids.rqvae.RQVAE`) is trained on document embeddings with
L_IDgen = L_RQ-VAE + lambda_1 L_align + lambda_2 L_rel (Eq. 8). Batches follow Appendix C: each document
of a batch brings one relevant partner, sampled through one of its training queries.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from genir.methods.merge.settings import MergeConfig
from genir.settings import resolve_group
from genir.training.objectives import memory_of


# -- the relevance losses ---------------------------------------------------------------------------
def align_loss(z: torch.Tensor, queries: list[dict[int, list[int]]], n_grades: int) -> torch.Tensor:
    """MERGE Eq. 3-4. ``queries``: per query, grade -> rows of z (its relevant documents in the batch).
    q = mean latent of the highest-grade documents (Eq. 3); every grade j pulled toward q with weight
    w_j = 1 / (L - j + 1), mean cosine distance per grade, summed over grades, averaged over queries.
    Vectorised over all (query, document) memberships of the batch."""
    qi, rows, grade, top = [], [], [], []
    for k, grades in enumerate(queries):
        best = max(grades)
        for g, rs in grades.items():
            qi += [k] * len(rs)
            rows += rs
            grade += [g] * len(rs)
            top += [g == best] * len(rs)
    if not rows:
        return z.new_zeros(())
    dev = z.device
    qi_t, rows_t = torch.tensor(qi, device=dev), torch.tensor(rows, device=dev)
    grade_t, top_t = torch.tensor(grade, device=dev), torch.tensor(top, device=dev)
    n_q = len(queries)
    q_sum = z.new_zeros(n_q, z.shape[1]).index_add(0, qi_t[top_t], z[rows_t[top_t]])
    q = q_sum / torch.bincount(qi_t[top_t], minlength=n_q).clamp(min=1)[:, None].to(z.dtype)  # Eq. 3
    dist = 1.0 - F.cosine_similarity(z[rows_t], q[qi_t], dim=-1)
    group, inverse = torch.unique(qi_t * (n_grades + 1) + grade_t, return_inverse=True)
    mean = z.new_zeros(len(group)).index_add(0, inverse, dist) / torch.bincount(inverse).to(z.dtype)
    weight = 1.0 / (n_grades - (group % (n_grades + 1)) + 1).to(z.dtype)  # w_j = 1 / (L - j + 1)
    per_query = z.new_zeros(n_q).index_add(0, torch.div(group, n_grades + 1, rounding_mode="floor"), weight * mean)
    return per_query.mean()


def outer_loss(r: torch.Tensor, pairs: torch.Tensor, temperature: float) -> torch.Tensor:
    """MERGE Eq. 5 at one level: InfoNCE of each (document, relevant partner) pair of residuals against
    every document of the batch (cosine similarity / tau), averaged over pairs."""
    if len(pairs) == 0:
        return r.new_zeros(())
    rn = F.normalize(r, dim=-1)
    sims = rn[pairs[:, 0]] @ rn.T / temperature  # the denominator runs over D^batch, as Eq. 5 writes it
    return F.cross_entropy(sims, pairs[:, 1])


def inner_loss(r: torch.Tensor, triplets: torch.Tensor, margin: float) -> torch.Tensor:
    """MERGE Eq. 6 at one level: max(0, gamma + sim(d, d-) - sim(d, d+)), cosine, averaged over triplets
    (anchor, positive, negative) with the anchor and positive of a higher grade than the negative."""
    if len(triplets) == 0:
        return r.new_zeros(())
    rn = F.normalize(r, dim=-1)
    a, p, n = rn[triplets[:, 0]], rn[triplets[:, 1]], rn[triplets[:, 2]]
    return F.relu(margin + (a * n).sum(-1) - (a * p).sum(-1)).mean()


def relevance_loss(residuals: torch.Tensor, pairs: torch.Tensor, triplets: torch.Tensor, cfg: MergeConfig
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """MERGE Eq. 7: (1/m) sum_l beta_l L_outer^l + (1 - beta_l) L_inner^l, over the residual r_l of
    every level; ``cfg.outer`` / ``cfg.inner`` switch a term off (Table 2) by its beta (``level_weights``)."""
    total = residuals.new_zeros(())
    logs: dict[str, float] = {}
    for level, beta in enumerate(cfg.level_weights):
        o = outer_loss(residuals[level], pairs, cfg.temperature) if cfg.outer else residuals.new_zeros(())
        i = inner_loss(residuals[level], triplets, cfg.margin) if cfg.inner else residuals.new_zeros(())
        total = total + beta * o + (1 - beta) * i
        logs["outer"] = logs.get("outer", 0.0) + float(o.detach()) / len(cfg.level_weights)  # mean over levels
        logs["inner"] = logs.get("inner", 0.0) + float(i.detach()) / len(cfg.level_weights)
    return total / len(cfg.level_weights), logs


# -- batches (Appendix C) -----------------------------------------------------------------------------
class RelevanceBatches(Dataset):
    """Items are documents; ``collate`` adds, for each document with a training query, one sampled query,
    a relevant partner of that query (the outer pair), a graded triplet of that query when it has two
    grades (the inner loss), and the query's relevant documents (the alignment)."""

    def __init__(self, embeddings: np.ndarray, qrels: dict[int, dict[int, int]] | None, seed: int = 0):
        self.embeddings = torch.as_tensor(embeddings, dtype=torch.float32)
        self.qrels = qrels or {}  # query -> {document index: grade}, grades <= 0 = judged not relevant
        self.by_doc: dict[int, list[int]] = {}
        for q, rels in self.qrels.items():
            for d, g in rels.items():
                if g > 0:
                    self.by_doc.setdefault(d, []).append(q)
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.embeddings)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, items: list[int]) -> dict:
        rows: dict[int, int] = {}
        order: list[int] = []

        def row(d: int) -> int:
            if d not in rows:
                rows[d] = len(order)
                order.append(d)
            return rows[d]

        for d in items:
            row(d)
        pairs, triplets, queries = [], [], []
        for d in items:
            qs = self.by_doc.get(d)
            if not qs:
                continue
            q = self.rng.choice(qs)
            rels = self.qrels[q]
            partners = [p for p, g in rels.items() if g > 0 and p != d]
            if partners:
                pairs.append((row(d), row(self.rng.choice(partners))))
            by_grade: dict[int, list[int]] = {}
            for p, g in rels.items():
                by_grade.setdefault(max(g, 0), []).append(p)
            grades = sorted(by_grade)
            if len(grades) >= 2:  # a > b: anchor and positive of grade a, negative of grade b
                a, b = sorted(self.rng.sample(grades, 2), reverse=True)
                anchor, positive = self.rng.choice(by_grade[a]), self.rng.choice(by_grade[a])
                triplets.append((row(anchor), row(positive), row(self.rng.choice(by_grade[b]))))
            queries.append({g: [row(p) for p in docs] for g, docs in by_grade.items() if g > 0})
        return {"embeddings": self.embeddings[order], "pairs": torch.tensor(pairs, dtype=torch.long).view(-1, 2),
                "triplets": torch.tensor(triplets, dtype=torch.long).view(-1, 3), "queries": queries}


class MergeObjective:
    """MERGE Eq. 8: L_IDgen = L_RQ-VAE + lambda_1 L_align + lambda_2 L_rel; ``cfg.relevance=False`` is the
    vanilla RQ-VAE (L_RQ-VAE only)."""

    def __init__(self, cfg: MergeConfig, n_grades: int):
        self.cfg, self.n_grades = cfg, n_grades

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(batch["embeddings"])
        loss = out["loss"]
        logs = {"recon": float(out["recon_loss"].detach()), "rq": float(out["rq"].detach())}
        if self.cfg.relevance:
            if self.cfg.align:
                al = align_loss(out["z"], batch["queries"], self.n_grades)
                loss = loss + self.cfg.lambda_align * al
                logs["align"] = float(al.detach())
            rel, rel_logs = relevance_loss(out["residuals"], batch["pairs"], batch["triplets"], self.cfg)
            loss = loss + self.cfg.lambda_rel * rel
            logs.update(rel=float(rel.detach()), **rel_logs)
        logs["loss"] = float(loss.detach())
        return loss, logs


def train_rqvae(embeddings: np.ndarray, qrels: dict[int, dict[int, int]] | None, cfg: MergeConfig,
                folder: Path, show_progress: bool = True, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """Train the RQ-VAE (MERGE Sec. 3.1; ``cfg.relevance`` decides MERGE or vanilla) with checkpoints in
    ``folder``; returns the model and the training log. Codebooks start from k-means on the first batch."""
    from genir.docids.rqvae import RQVAE
    from genir.settings import TrainingSettings
    from genir.training import Trainer

    cfg = replace(cfg, **resolve_group(cfg))  # budgets left unset: their defaults
    torch.manual_seed(seed)
    model = RQVAE(embeddings.shape[1], tuple(cfg.hidden), cfg.latent_dim, cfg.levels, cfg.codes, cfg.commitment)
    data = RelevanceBatches(embeddings, qrels, seed)
    first = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[: cfg.batch_size]
    model.init_codebooks(data.embeddings[first], seed)
    n_grades = max([g for rels in (qrels or {}).values() for g in rels.values()] + [1])
    tcfg = TrainingSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                             warmup_ratio=0.0, seed=seed, checkpoint_every=1000)
    trainer = Trainer(model, MergeObjective(cfg, n_grades), data, data.collate, tcfg, folder / "checkpoints",
                      show_progress=show_progress, desc="rq-vae (merge)" if cfg.relevance else "rq-vae")
    info = trainer.train()
    return model.eval(), {**info, "history": trainer.history, "grades": n_grades,
                          "relevance_documents": len(data.by_doc)}


# -- the generative retriever's loss (Sec. 3.2) ----------------------------------------------------------
def position_weighted_loss(model, batch: dict[str, torch.Tensor], weighted: bool = True
                           ) -> tuple[torch.Tensor, dict[str, float]]:
    """MERGE Eq. 9: L = -sum_t w_t log P(y_t | y_<t, q), w_t = 1/sqrt(t) (t from 1), summed over the
    docid's positions and averaged over examples; ``weighted=False`` is the Table 2 ablation (w_t = 1)."""
    memory, mask = memory_of(model, batch)
    targets = batch["targets"]
    logits = model(memory, mask, targets)
    ce = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")  # (B, T)
    t = torch.arange(1, targets.shape[1] + 1, device=ce.device, dtype=ce.dtype)
    w = t.rsqrt() if weighted else torch.ones_like(t)
    loss = (ce * w).sum(1).mean()
    with torch.no_grad():
        valid = targets >= 0
        exact = ((logits.argmax(-1) == targets) | ~valid).all(1).float().mean()
    return loss, {"loss": float(loss.detach()), "exact": float(exact)}
