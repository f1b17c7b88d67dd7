"""Training objectives. Each takes (model, batch) and returns (loss, logs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def memory_of(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder states: cached ones (frozen encoder) or a fresh encoder pass (full fine-tuning)."""
    if "memory" in batch:
        return batch["memory"], batch["memory_mask"]
    return model.encode(batch["input_ids"], batch["attention_mask"]), batch["attention_mask"]


def seq2seq_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """DSI: token-level cross-entropy of the docid sequence given the input (indexing and retrieval alike)."""
    memory, mask = memory_of(model, batch)
    logits = model(memory, mask, batch["targets"])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1), ignore_index=-100)
    with torch.no_grad():
        valid = batch["targets"] >= 0
        exact = ((logits.argmax(-1) == batch["targets"]) | ~valid).all(1).float().mean()
    return loss, {"loss": float(loss.detach()), "exact": float(exact)}
