"""One batched, trie-constrained beam search for every generative method.

Per step: one decoder call for all (query, beam) rows, one vectorised allowed-code mask from the
:class:`PrefixTree`, one top-k over (beam x code) per query. No Python callback per beam or per step.
The beam starts at width 1 (every beam of a query would be identical at the first step) and grows to
``beam`` as the tree allows. Scores are sums of log-softmax over all decoder outputs (as HF's
``prefix_allowed_tokens_fn`` does), so a beam as wide as the tree gives exactly the brute-force ranking.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genir.docids.trie import PrefixTree


@torch.no_grad()
def beam_search(model, trie: PrefixTree, memory: torch.Tensor, memory_mask: torch.Tensor,
                beam: int, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (leaf nodes, scores), each (B, W), best first; dead beams have score -inf.

    ``normalize=False`` sums raw logits instead of log-probabilities (same ranking for one-step docids;
    Tied-Atomic uses it so that generative scores are the dot products themselves).

    ``model`` provides ``start(memory, mask)``, ``step(state, prev_codes) -> logits`` and
    ``reorder(state, rows)`` (see :class:`genir.models.DocidSeq2Seq`).
    """
    b = memory.shape[0]
    n_out = trie.n_out
    state = model.start(memory, memory_mask)
    nodes = torch.zeros(b, 1, dtype=torch.long)
    scores = torch.zeros(b, 1)
    prev = torch.full((b,), model.bos, dtype=torch.long, device=memory.device)
    width = 1
    neg_inf = float("-inf")
    for _ in range(trie.depth):
        logits, state = model.step(state, prev)
        logp = (F.log_softmax(logits.float(), dim=-1) if normalize else logits.float()).cpu()
        flat_nodes = nodes.reshape(-1)
        done = trie.is_leaf[flat_nodes]
        cand = logp.masked_fill(~trie.allowed_mask(flat_nodes), neg_inf)
        if done.any():  # a finished docid stays as it is: one candidate, no score change
            cand[done] = neg_inf
            cand[done, n_out - 1] = 0.0
        total = (scores.reshape(-1, 1) + cand).view(b, width * n_out)
        alive = int(torch.isfinite(total).sum(1).max())
        new_width = max(1, min(beam, alive))
        top = torch.topk(total, new_width, dim=1)
        parent = torch.div(top.indices, n_out, rounding_mode="floor")
        codes = top.indices % n_out
        rows = (torch.arange(b)[:, None] * width + parent).reshape(-1)
        prev_nodes = flat_nodes[rows]
        child, _ = trie.advance(prev_nodes, codes.reshape(-1))
        nodes = torch.where(trie.is_leaf[prev_nodes], prev_nodes, child).view(b, new_width)
        scores, width = top.values, new_width
        state = model.reorder(state, rows.to(memory.device))
        prev = codes.reshape(-1).to(memory.device)
        if bool(trie.is_leaf[nodes.reshape(-1)].all()):
            break
    return nodes, scores


@torch.no_grad()
def sequence_scores(model, trie: PrefixTree, memory: torch.Tensor, memory_mask: torch.Tensor,
                    doc_indices: list[int] | None = None) -> torch.Tensor:
    """Brute force: log P(docid | query) of each document's full code sequence, (B, n_docs)."""
    idx = doc_indices if doc_indices is not None else list(range(len(trie.table)))
    seqs = [trie.full_sequence(i) for i in idx]
    width = max(len(s) for s in seqs)
    targets = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        targets[i, : len(s)] = torch.tensor(s)
    out = torch.empty(memory.shape[0], len(seqs))
    for qi in range(memory.shape[0]):
        mem = memory[qi: qi + 1].expand(len(seqs), -1, -1)
        mask = memory_mask[qi: qi + 1].expand(len(seqs), -1)
        logp = F.log_softmax(model(mem, mask, targets.to(memory.device)).float(), -1).cpu()
        picked = logp.gather(2, targets.clamp(min=0)[..., None])[..., 0]
        out[qi] = picked.masked_fill(targets < 0, 0.0).sum(1)
    return out
