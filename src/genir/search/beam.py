"""One batched, trie-constrained beam search for every generative method.

Per step: one decoder call for all (query, beam) rows, the allowed continuations of every beam as one
gather from the :class:`PrefixTree`'s edge arrays, one top-k over each query's candidates. No Python
callback per beam or per step.
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
                beam: int, normalize: bool = True, trace: list | None = None,
                final: dict | None = None, prefix_beam: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (leaf nodes, scores), each (B, W), best first; dead beams have score -inf.

    ``prefix_beam`` keeps at most that many unfinished docid prefixes per query after a step (finished docids
    still up to ``beam``): with uniform-length docids the steps before the last decode ``prefix_beam`` rows
    instead of ``beam``, and the last step expands those prefixes' children into the ``beam`` docids.

    ``final`` (a dict) receives the model's state after the last step, its rows in the order of the (B, W)
    output (``final["state"]``): what the model computed for each final beam, for a searcher to reuse.

    ``trace`` (a list) receives, per step, the first query's beams after the step: their trie nodes,
    scores and the beam each came from (the docid inspector; it costs a host copy per step).

    ``normalize=False`` sums raw logits instead of log-probabilities (same ranking for one-step docids;
    Tied-Atomic uses it so that generative scores are the dot products themselves).

    ``model`` provides ``start(memory, mask)``, ``step(state, prev_codes) -> logits`` and
    ``reorder(state, rows)`` (see :class:`genir.models.DocidSeq2Seq`).

    Candidates are the trie's edges out of each beam's node (a CSR gather), not a (beams x outputs)
    mask: with thousands of outputs (atomic docids, GLEN's identifier tokens) most of a dense mask is
    empty and building and ranking it dominated the search.
    """
    b, dev = memory.shape[0], memory.device
    trie = trie.on(dev)  # every tensor of the search lives where the logits are
    n_out = trie.n_out
    state = model.start(memory, memory_mask)
    nodes = torch.zeros(b, 1, dtype=torch.long, device=dev)
    scores = torch.zeros(b, 1, device=dev)
    prev = torch.full((b,), model.bos, dtype=torch.long, device=dev)
    width = 1
    neg_inf = float("-inf")
    narrow = prefix_beam is not None and prefix_beam < beam
    for _ in range(trie.depth):
        logits, state = model.step(state, prev)
        logp = F.log_softmax(logits.float(), dim=-1) if normalize else logits.float()
        flat_nodes, flat_scores = nodes.reshape(-1), scores.reshape(-1)
        live = torch.isfinite(flat_scores)  # dead beams have no candidates
        done = trie.is_leaf[flat_nodes]  # a finished docid stays as it is: one candidate, no score change
        growing = torch.nonzero(live & ~done).squeeze(1)
        staying = torch.nonzero(live & done).squeeze(1)
        e_row, e_code, e_child = trie.edges(flat_nodes[growing])
        e_row = growing[e_row]
        row = torch.cat([e_row, staying])
        code = torch.cat([e_code, torch.full_like(staying, n_out - 1)])
        child = torch.cat([e_child, flat_nodes[staying]])
        gain = torch.cat([logp[e_row, e_code], torch.zeros(len(staying), device=dev)])
        if len(staying):  # edges come grouped by beam row already; finished beams are merged in
            order = torch.argsort(row, stable=True)
            row, code, child, gain = row[order], code[order], child[order], gain[order]
        cand_score = flat_scores[row] + gain
        total = len(row)
        # per query: its candidates side by side (padded with -inf), one top-k
        query = torch.div(row, width, rounding_mode="floor")
        per_query = torch.bincount(query, minlength=b)
        q_first = torch.cumsum(per_query, 0) - per_query
        grid = torch.full((b, max(1, int(per_query.max()))), neg_inf, device=dev)
        position = torch.arange(total, device=dev) - q_first[query]
        grid[query, position] = cand_score
        if narrow:  # unfinished prefixes beyond each query's best `prefix_beam` leave the beam
            unfinished = torch.zeros_like(grid, dtype=torch.bool)
            unfinished[query, position] = ~trie.is_leaf[child]
            best = torch.topk(torch.where(unfinished, grid, neg_inf), min(prefix_beam, grid.shape[1]), dim=1).indices
            kept = torch.zeros_like(unfinished).scatter_(1, best, True)
            grid = torch.where(unfinished & ~kept, neg_inf, grid)
        new_width = max(1, min(beam, int(torch.isfinite(grid).sum(1).max())))
        top = torch.topk(grid, new_width, dim=1)
        alive = torch.isfinite(top.values)
        pick = (q_first[:, None] + top.indices).clamp(max=max(total - 1, 0))
        own_row = (torch.arange(b, device=dev) * width)[:, None].expand_as(pick)
        rows = torch.where(alive, row[pick], own_row).reshape(-1)
        codes = torch.where(alive, code[pick], n_out - 1)
        nodes = torch.where(alive, child[pick], 0)
        if trace is not None:
            trace.append({"nodes": nodes[0].tolist(), "scores": top.values[0].tolist(),
                          "parents": (rows.reshape(b, -1)[0] % width).tolist()})
        scores, width = top.values, new_width
        state = model.reorder(state, rows)
        prev = codes.reshape(-1)
        if bool((trie.is_leaf[nodes.reshape(-1)] | ~alive.reshape(-1)).all()):
            break
    if final is not None:
        final["state"] = state
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
