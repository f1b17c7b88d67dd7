"""GenRet's data and objective at progressive step T: documents paired with the texts that stand for their
queries, and Eq. 6, 8-11 (reconstruction, commitment, retrieval)."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from genir.distributed import map_rows, world
from genir.docids.balance import sinkhorn
from genir.methods.genret.settings import GenRetConfig
from genir.settings import resolve_group
from genir.training.data import TextInputs
from genir.training.objectives import memory_of


class GenRetData(Dataset):
    """Items are trained documents; each visit pairs the document's own text with one of its queries,
    drawn uniformly from its pseudo-queries and training queries (as the authors' code pools them).

    ``doc_text[d]`` and ``queries[d]`` are indices of ``inputs``' texts (cached states, or token ids for
    full fine-tuning)."""

    def __init__(self, inputs: TextInputs, doc_text: dict[int, int], queries: dict[int, list[int]],
                 seed: int = 0):
        self.inputs, self.doc_text, self.queries = inputs, doc_text, queries
        self.docs = sorted(doc_text)
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, i: int) -> int:
        return self.docs[i]

    def collate(self, docs: list[int]) -> dict[str, torch.Tensor]:
        q_texts = [self.rng.choice(self.queries[d]) if self.queries.get(d) else self.doc_text[d] for d in docs]
        return {**self.inputs.features([self.doc_text[d] for d in docs], "d_"),
                **self.inputs.features(q_texts, "q_"), "doc_index": torch.tensor(docs)}

    def doc_states(self, docs: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Documents' encoder states by the current encoder (no gradient), on the model's device."""
        return self.inputs.states([self.doc_text[d] for d in docs])


def straight_through(codebook: torch.Tensor, d: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """GenRet Eq. 8, straight-through estimator: the value is z_T = e_{T,z_T}; the gradients are
    dL/dd_T := dL/dz_T and dL/de_{T,j} := 1[z_T = j] dL/dz_T (the look-up routes the gradient to the
    chosen codebook row only)."""
    return codebook[codes] + d - d.detach()


class GenRetObjective:
    """The loss of progressive step ``t`` (0-based; the paper's T = t + 1).

    ``codes`` (N, M) holds the fixed docid prefixes (-1 where not yet learned). ``phase="warmup"`` is the
    codebook-initialisation warm-up (continuous d_T into the reconstruction model, L_Rec + L_Com);
    ``phase="train"`` is L = L_Rec + L_Com + L_Ret (Eq. 11).
    """

    def __init__(self, t: int, codes: torch.Tensor, data: GenRetData, config: GenRetConfig,
                 phase: str = "train"):
        config = replace(config, **resolve_group(config))  # budgets left unset: their defaults
        self.t, self.codes, self.data, self.cfg, self.phase = t, codes, data, config, phase
        self.trained = torch.zeros(len(codes), dtype=torch.bool)
        self.trained[data.docs] = True
        # documents sharing the stored prefix z_<T share a group id: S(z_<T) of Eq. 6
        prefixes = codes[:, :t].numpy() if t else np.zeros((len(codes), 0), dtype=np.int64)
        _, group = np.unique(prefixes, axis=0, return_inverse=True) if t else (None, np.zeros(len(codes)))
        self.group = torch.as_tensor(np.asarray(group).ravel(), dtype=torch.long)
        self.bank: torch.Tensor | None = None
        self.calls = 0
        # once per epoch: an epoch is len / (batch x processes) calls in each process (a step takes batch x N)
        every = config.bank_refresh or math.ceil(len(data) / (config.batch_size * world()))
        self.refresh_every = max(1, every)

    def _on(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The fixed prefixes, groups and trained-document mask on the training device, copied once per
        phase (they do not change while it runs): no host round trip per step."""
        if getattr(self, "_device_copy", (None,))[0] != device:
            self._device_copy = (device, {"codes": self.codes.to(device), "group": self.group.to(device),
                                          "trained": self.trained.to(device)})
        return self._device_copy[1]

    # -- the corpus bank of sg(d*_T) -------------------------------------------------------------
    @torch.no_grad()
    def refresh_bank(self, model) -> None:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        codes = self._on(device)["codes"]

        def vectors(idx_all: list[int]) -> torch.Tensor:
            out = []
            for s in range(0, len(idx_all), 512):
                idx = idx_all[s: s + 512]
                mem, mask = self.data.doc_states(idx)
                out.append(model.hidden(mem, mask, codes[idx, : self.t])[:, -1])
            return torch.cat(out)

        bank = torch.zeros(len(self.codes), model.decoder.d_model, device=device)
        # several processes: each computes a shard of the documents, every rank gets the whole bank
        bank[self.data.docs] = map_rows(vectors, self.data.docs).to(device)
        self.bank = bank
        model.train(was_training)

    # -- checkpointed with the training loop's state (a resumed epoch keeps the bank it started with) --
    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        return {"calls": torch.tensor(self.calls), **({"bank": self.bank} if self.bank is not None else {})}

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        self.calls = int(state["calls"])
        self.bank = state.get("bank")

    def reconstruction_loss(self, z: torch.Tensor, d_sg: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """GenRet Eq. 6 at step T: -log exp(z_T . sg(d_T)) / sum_{d* in S(z_<T)} exp(z_T . sg(d*_T)).

        "bank": every sg(d*_T), the target's own included, comes from the bank, so that numerator and
        denominator are computed alike (dropout off, same refresh); ``d_sg`` is used by "batch" only."""
        on = self._on(idx.device)
        group = on["group"][idx]
        if self.cfg.rec_set == "batch":
            scores = z @ d_sg.T
            scores = scores.masked_fill(group[:, None] != group[None, :], float("-inf"))
            return F.cross_entropy(scores, torch.arange(len(idx), device=idx.device))
        if self.bank.device != z.device:  # restored from a checkpoint on the CPU
            self.bank = self.bank.to(z.device)
        scores = z @ self.bank.T
        same = (on["group"][None, :] == group[:, None]) & on["trained"][None, :]
        return F.cross_entropy(scores.masked_fill(~same, float("-inf")), idx)

    def __call__(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        if self.cfg.rec_set == "bank" and (self.bank is None or self.calls % self.refresh_every == 0):
            self.refresh_bank(model)
        self.calls += 1
        t, idx = self.t, batch["doc_index"]
        prefix = self._on(idx.device)["codes"][idx, :t]
        d_h = model.hidden(*memory_of(model, batch, "d_"), prefix)  # GenRet Eq. 2: d_1..d_T
        d_t = d_h[:, -1]
        logs: dict[str, float] = {}
        if self.phase == "warmup":
            # Sec. 3.3.2, codebook initialisation: the continuous d_T stands in for z_T in R(d | z)
            rec = self.reconstruction_loss(d_t, d_t.detach(), idx)
            com = self._commitment(model, d_h[:, :-1], prefix) if t else d_t.new_zeros(())
            loss = rec + com
            if self.cfg.warmup_ranking:
                # With z_T = d_T, R(d | z) retrieves d_T by itself: d_T . d_T beats d_T . d*_T for any
                # vectors of equal norm, so L_Rec is ~0 from the first steps and leaves every d_T alike
                # (measured: mean cosine 0.9995 between documents after the warm-up, k-means then splits
                # noise). The ranking term of L_Ret (Eq. 10) is what makes d_T tell documents apart; the
                # authors' code warms up with it too.
                q_t = model.hidden(*memory_of(model, batch, "q_"), prefix)[:, -1]
                rank = F.cross_entropy(q_t @ d_t.T, torch.arange(len(idx), device=idx.device))
                loss = loss + rank
                logs["rank"] = float(rank.detach())
            logs.update(rec=float(rec.detach()), com=float(com.detach()))
            return loss, {"loss": float(loss.detach()), **logs}
        h = model.step_logits(d_t, t)  # H = D_T E_T^T (Eq. 3 before the softmax)
        with torch.no_grad():
            # Sec. 3.3.2, docid re-assignment: argmax over H* (Sinkhorn) instead of H (Eq. 4)
            z_code = (sinkhorn(h.detach(), self.cfg.epsilon, self.cfg.sinkhorn_iterations)
                      if self.cfg.reassign else h.detach()).argmax(-1)
        z_hat = straight_through(model.codebooks[t], d_t, z_code)
        rec = self.reconstruction_loss(z_hat, d_t.detach(), idx)  # Eq. 8: L_Rec = -log R(d | z^_<=T)
        targets = torch.cat([prefix, z_code[:, None]], 1)
        # Eq. 9: L_Com = -sum_{t<=T} log Q(z_t | z_<t, d)
        com = self._commitment(model, d_h, targets)
        # Eq. 10: L_Ret = -log softmax over the batch of q_T . d_T  -  sum_{t<=T} log P(z_t | z_<t, q)
        q_h = model.hidden(*memory_of(model, batch, "q_"), prefix)
        scores = q_h[:, -1] @ d_t.T
        rank = F.cross_entropy(scores, torch.arange(len(idx), device=idx.device))
        q_logits = model.code_logits(q_h)
        gen = sum(F.cross_entropy(q_logits[:, s], targets[:, s]) for s in range(t + 1))
        loss = rec + com + rank + gen  # Eq. 11
        with torch.no_grad():
            acc = (q_logits[:, -1].argmax(-1) == z_code).float().mean()
            plain = (h.argmax(-1) == z_code).float().mean()
        logs.update(rec=float(rec.detach()), com=float(com.detach()), ret=float((rank + gen).detach()),
                    q_acc=float(acc), argmax_agree=float(plain),
                    codes=float(len(torch.unique(z_code))) / len(z_code))
        return loss, {"loss": float(loss.detach()), **logs}

    @staticmethod
    def _commitment(model, d_h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = model.code_logits(d_h)
        return sum(F.cross_entropy(logits[:, s], targets[:, s]) for s in range(targets.shape[1]))
