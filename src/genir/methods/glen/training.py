"""GLEN (Lee et al., "Generative Retrieval via Lexical Index Learning"), phase 2: ranking-based ID
refinement (Sec. 3.3.2) with prefix-aware dynamic negatives. Phase 1 (keyword-based ID assignment,
Eq. 4) is the shared seq2seq objective on keyword targets (:func:`genir.methods.glen.docids.keyword_docids`).
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from genir.distributed import map_rows
from genir.methods.glen.settings import GlenConfig
from genir.settings import resolve_group
from genir.training.data import TextInputs
from genir.training.objectives import memory_of


def temperature(epoch: float, floor: float = 1e-5) -> float:
    """GLEN Sec. 3.3.2: annealed tau = max(floor, exp(-epoch)); the epoch is fractional, so tau falls
    every step (as in the authors' code, whose floor is 1e-5)."""
    return max(floor, math.exp(-epoch))


def soft_identifier(doc_logits: torch.Tensor, word_embeddings: torch.Tensor, tau: float) -> torch.Tensor:
    """GLEN Eq. 6: r_t = softmax(d_t . E^T / tau) . E, (..., n, m)."""
    return torch.softmax(doc_logits / tau, -1) @ word_embeddings


def relevance(q_hidden: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """GLEN Eq. 6: rel(q, d) = sum_t q_t . r_t, for every query against every document, (B_q, B_d)."""
    return torch.einsum("qtm,dtm->qd", q_hidden, r)


def identifier_distance(w_q: torch.Tensor, w_d: torch.Tensor) -> torch.Tensor:
    """GLEN Eq. 7: cosine distance between identifier logits w^q and w^{d+}, per query."""
    return 1.0 - F.cosine_similarity(w_q, w_d, dim=-1)


class PrefixNegatives:
    """GLEN Sec. 3.3.2, prefix-aware dynamic negatives: documents with the positive's identifier, then its
    (n-1)-prefix, and so on, until N_neg; shortfalls filled at random. Identifiers are the model's current
    ones (``refresh``); before the first refresh, or with ``mode="random"``, negatives are random."""

    def __init__(self, docs: list[int], n_neg: int, mode: str = "prefix", seed: int = 0):
        self.docs, self.n_neg, self.mode = docs, n_neg, mode
        self.rng = random.Random(seed)
        self.ids: dict[int, tuple[int, ...]] = {}
        self.by_prefix: dict[tuple[int, ...], list[int]] = {}

    def refresh(self, ids: dict[int, tuple[int, ...]]) -> None:
        self.ids = ids
        self.by_prefix = {}
        for d, z in ids.items():
            for p in range(1, len(z) + 1):
                self.by_prefix.setdefault(z[:p], []).append(d)

    def sample(self, positive: int, exclude: set[int]) -> list[int]:
        out: list[int] = []
        taken = set(exclude) | {positive}
        z = self.ids.get(positive)
        if self.mode == "prefix" and z is not None:
            for p in range(len(z), 0, -1):
                pool = [d for d in self.by_prefix.get(z[:p], []) if d not in taken]
                self.rng.shuffle(pool)
                for d in pool[: self.n_neg - len(out)]:
                    out.append(d)
                    taken.add(d)
                if len(out) >= self.n_neg:
                    break
        while len(out) < self.n_neg and len(taken) < len(self.docs):
            d = self.docs[self.rng.randrange(len(self.docs))]
            if d not in taken:
                out.append(d)
                taken.add(d)
        return out


class GlenPairs(Dataset):
    """(query text, positive document) pairs; ``collate`` adds N_neg negatives per query."""

    def __init__(self, pairs: list[tuple[int, int]], inputs: TextInputs, doc_text: dict[int, int],
                 negatives: PrefixNegatives):
        self.pairs, self.inputs, self.doc_text, self.negatives = pairs, inputs, doc_text, negatives
        self.positives: dict[int, set[int]] = {}
        for t, d in pairs:
            self.positives.setdefault(t, set()).add(d)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[int, int]:
        return self.pairs[i]

    def collate(self, items: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        queries = [t for t, _ in items]
        docs: list[int] = []
        for t, d in items:
            docs += [d] + self.negatives.sample(d, self.positives[t])
        # in-batch false negatives: a column holding a document relevant to the query (its other positives,
        # or its own positive again as another query's document) is not a negative for it
        relevant = torch.tensor([[d in self.positives[t] for d in docs] for t in queries])
        return {**self.inputs.features(queries, "q_"), **self.inputs.features([self.doc_text[d] for d in docs], "d_"),
                "group": torch.tensor(1 + self.negatives.n_neg), "doc_index": torch.tensor(docs),
                "relevant": relevant}


def positive_identifiers(model, batch: dict[str, torch.Tensor], target: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """z+ (the identifier the model assigns the positive documents, Eq. 2) and its logits w^{d+} (Eq. 7),
    with dropout off: the model's identifier, not a noisy draw of it. w^{d+} keeps its gradient."""
    docs = {k: v[target] for k, v in batch.items() if k.startswith("d_")}
    was_training = model.training
    model.eval()
    try:
        h, z_pos = model.hidden_states(*memory_of(model, docs, "d_"))
        w_d = model.vocab_logits(h).gather(-1, z_pos[..., None])[..., 0]
    finally:
        model.train(was_training)
    return z_pos.detach(), w_d


class GlenRefineObjective:
    """GLEN Eq. 8: L = L_pair + lambda_point * L_point, with tau annealed by the epoch (Eq. 6)."""

    def __init__(self, config: GlenConfig, steps_per_epoch: int, negatives: PrefixNegatives,
                 inputs: TextInputs, doc_text: dict[int, int]):
        config = replace(config, **resolve_group(config))  # budgets left unset: their defaults
        self.cfg, self.steps_per_epoch, self.negatives = config, max(1, steps_per_epoch), negatives
        self.inputs, self.doc_text = inputs, doc_text
        self.calls = 0

    # -- checkpointed with the training loop's state: the epoch (tau) and this epoch's identifiers ---------
    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        out = {"calls": torch.tensor(self.calls)}
        ids = getattr(self.negatives, "ids", None)
        if ids:
            docs = sorted(ids)
            out.update(ids_docs=torch.tensor(docs), ids_tokens=torch.tensor([ids[d] for d in docs]))
        return out

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        self.calls = int(state["calls"])
        if "ids_docs" in state:
            self.negatives.refresh({int(d): tuple(int(x) for x in z) for d, z in
                                    zip(state["ids_docs"].tolist(), state["ids_tokens"].tolist(), strict=True)})

    @torch.no_grad()
    def refresh_identifiers(self, model) -> None:
        """Every trained document's current identifier (Eq. 2, by the current encoder), for the prefix-aware
        negatives."""
        was_training = model.training
        model.eval()
        docs = sorted(self.doc_text)

        def identifiers(rows: list[int]) -> torch.Tensor:
            return torch.cat([model.assign_ids(*self.inputs.states([self.doc_text[d] for d in rows[s: s + 256]]))[0]
                              for s in range(0, len(rows), 256)])

        tokens = map_rows(identifiers, docs)  # several processes: a shard each, every rank gets all
        # the negatives are drawn by the collator on the host: one transfer per refresh (once an epoch)
        self.negatives.refresh({d: tuple(z) for d, z in zip(docs, tokens.cpu().tolist(), strict=True)})
        model.train(was_training)

    def __call__(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        if self.cfg.negative_mode == "prefix" and self.calls % self.steps_per_epoch == 0:
            self.refresh_identifiers(model)
        epoch = self.calls / self.steps_per_epoch
        self.calls += 1
        tau = temperature(epoch, self.cfg.tau_floor)
        group = int(batch["group"])
        q_h, _ = model.hidden_states(*memory_of(model, batch, "q_"), with_tokens=False)
        d_h, d_tok = model.hidden_states(*memory_of(model, batch, "d_"))
        e = model.word_embeddings
        d_logits = model.vocab_logits(d_h)
        # Eq. 5-6: pairwise ranking over the query's positive, its negatives and every other query's
        # documents (in-batch negatives)
        rel = relevance(q_h, soft_identifier(d_logits * self.cfg.soft_scale, e, tau))
        target = torch.arange(q_h.shape[0], device=rel.device) * group
        if "relevant" in batch:  # the query's other relevant documents are not its negatives
            others = batch["relevant"].to(rel.device).clone()
            others[torch.arange(len(target), device=rel.device), target] = False
            rel = rel.masked_fill(others, float("-inf"))
        pair = F.cross_entropy(rel, target)
        # Eq. 7: the query generates z+, the identifier the model now assigns to its positive document
        z_pos, w_d = positive_identifiers(model, batch, target)
        q_logits = model.vocab_logits(q_h)
        ce = sum(F.cross_entropy(q_logits[:, t], z_pos[:, t]) for t in range(z_pos.shape[1]))
        w_q = q_logits.gather(-1, z_pos[..., None])[..., 0]
        dist = identifier_distance(w_q, w_d).mean()
        point = ce + self.cfg.lambda_dist * dist
        loss = pair + self.cfg.lambda_point * point  # Eq. 8
        with torch.no_grad():
            acc = (rel.argmax(1) == target).float().mean()
        return loss, {"loss": float(loss.detach()), "pair": float(pair.detach()), "ce": float(ce.detach()),
                      "dist": float(dist.detach()), "acc": float(acc), "tau": tau}

