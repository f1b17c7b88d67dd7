"""Training objectives. Each takes (model, batch) and returns (loss, logs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def memory_of(model, batch: dict[str, torch.Tensor], name: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder states of one side of a batch (``name``: "" , "q_" or "d_"; see ``TextInputs``): cached
    ones (frozen encoder), or a pass through the encoder being fine-tuned (gradients reach it)."""
    mask = batch[f"{name}mask"]
    if f"{name}memory" in batch:
        return batch[f"{name}memory"], mask
    return model.encode(batch[f"{name}input_ids"], mask), mask


def seq2seq_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """DSI: token-level cross-entropy of the docid sequence given the input (indexing and retrieval alike)."""
    memory, mask = memory_of(model, batch)
    logits = model(memory, mask, batch["targets"])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1), ignore_index=-100)
    with torch.no_grad():
        valid = batch["targets"] >= 0
        exact = ((logits.argmax(-1) == batch["targets"]) | ~valid).all(1).float().mean()
    return loss, {"loss": float(loss.detach()), "exact": float(exact)}


def dense_contrastive_loss(model, batch: dict, scale: float = 20.0) -> tuple[torch.Tensor, dict[str, float]]:
    """A bi-encoder's in-batch contrastive loss, as sentence-transformers' MultipleNegativesRankingLoss:
    cosine similarity x ``scale`` of each query against every document in the batch (its positive, its
    hard negative, the others'), cross-entropy to its positive.

    ``model`` is a SentenceTransformer; batch: ``queries`` and ``docs`` feature dicts (docs: positive and
    negative per query, interleaved).
    """
    q = F.normalize(model(batch["queries"])["sentence_embedding"], dim=-1)
    d = F.normalize(model(batch["docs"])["sentence_embedding"], dim=-1)
    scores = q @ d.T * scale
    group = d.shape[0] // q.shape[0]
    target = torch.arange(q.shape[0], device=scores.device) * group
    loss = F.cross_entropy(scores, target)
    return loss, {"loss": float(loss.detach())}
