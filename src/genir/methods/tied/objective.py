"""Tied-Atomic's objectives (Sec. 4): the contrastive loss over tied document encodings, and Margin-MSE
distillation onto a teacher's score margins."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genir.training.objectives import memory_of


def tied_contrastive_loss(model, batch: dict[str, torch.Tensor], temperature: float | None = None
                          ) -> tuple[torch.Tensor, dict[str, float]]:
    """Tied-Atomic (Sec. 4): score(q, d) = h_query . h_doc (Eq. 2, W_docs tied to document encodings),
    cross-entropy over every document in the batch: the positive, its BM25 negatives and the other
    queries' documents (in-batch negatives), as Tevatron's contrastive loss does.

    Batch: ``q_*`` (B queries), ``d_*`` (B x group documents, positive first), cached states or token ids.
    """
    if temperature is None:  # the model's setting (tied.temperature), saved with it
        temperature = model.config.extra.get("tied_temperature", 1.0)
    q_memory, d_memory = memory_of(model, batch, "q_"), memory_of(model, batch, "d_")
    h_q, h_d = model.query_vector(*q_memory), model.first_hidden(*d_memory)
    scores = h_q @ h_d.T / temperature
    group = h_d.shape[0] // h_q.shape[0]
    target = torch.arange(h_q.shape[0], device=scores.device) * group
    loss, logs = _with_residual_penalty(model, F.cross_entropy(scores, target), (h_q, q_memory), (h_d, d_memory))
    with torch.no_grad():
        acc = (scores.argmax(1) == target).float().mean()
    return loss, {"loss": float(loss.detach()), "acc": float(acc), **logs}


def _with_residual_penalty(model, loss: torch.Tensor, *sides: tuple) -> tuple[torch.Tensor, dict[str, float]]:
    """``tied.residual_weight``: the loss + weight x the mean squared residual |h - s|^2 over every text of
    the batch (h: its vector, s: the encoder's sentence embedding), keeping the residual form near the
    encoder it starts from. ``sides``: (queries, documents), each (vectors, (memory, mask)); queries without
    a residual (``tied.query_residual=false``) are left out of the mean."""
    weight = model.config.extra.get("tied_residual_weight", 0.0) if model.tied_residual else 0.0
    if not weight:
        return loss, {}
    sides = sides if model.query_residual_scale else sides[1:]
    residual = torch.cat([h - model.sentence_vector(*memory) for h, memory in sides])
    penalty = residual.pow(2).sum(-1).mean()
    return loss + weight * penalty, {"residual": float(penalty.detach())}


def tied_margin_mse_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Margin-MSE distillation (Hofstaetter et al.; Tied-Atomic's MS MARCO recipe): the student's margin
    h_q.h_pos - h_q.h_neg regresses onto the teacher's margin T(q, pos) - T(q, neg).

    Batch: ``q_*`` (B), ``d_*`` (2B: positive, negative per query), ``margin`` (B).
    """
    q_memory, d_memory = memory_of(model, batch, "q_"), memory_of(model, batch, "d_")
    h_q, h_d = model.query_vector(*q_memory), model.first_hidden(*d_memory)
    pairs = h_d.view(h_q.shape[0], 2, -1)
    student = (h_q[:, None, :] * pairs).sum(-1)
    loss, logs = _with_residual_penalty(model, F.mse_loss(student[:, 0] - student[:, 1], batch["margin"]),
                                        (h_q, q_memory), (h_d, d_memory))
    return loss, {"loss": float(loss.detach()), **logs}
