"""GenRet (Sun et al., "Learning to Tokenize for Generative Retrieval"): docids learned by discrete
auto-encoding, one docid step at a time (progressive training, Sec. 3.3.1), with diverse clustering
(codebook initialisation by constrained k-means after a warm-up, docid re-assignment by Sinkhorn-Knopp;
Sec. 3.3.2).

Pieces: :class:`GenRetConfig` (settings), :class:`GenRetData` (documents, each with the texts that stand
for its queries), :class:`GenRetObjective` (Eq. 6, 8-11 at progressive step T) and
:class:`ProgressiveTrainer` (the M learning steps; the shared :class:`~genir.training.Trainer` runs each
phase, so every phase checkpoints and resumes).

How S(z_<t) of Eq. 6 is realised (``rec_set``):
- ``"bank"`` (default): the whole trained corpus. A bank holds sg(d*_T) of every document (computed with
  the stored prefix z_<T, dropout off) and is refreshed once per epoch (``bank_refresh`` steps); the
  documents of S(z_<T) are the bank rows whose stored prefix equals the target's, the target's own row
  included (a fresh d_T, dropout on, beside bank rows made with dropout off made the loss jump between ~0 and ~7
  from one refresh to the next).
- ``"batch"``: the documents of the mini-batch that share the target's prefix (the authors' code
  batches documents by prefix to make such groups large; with random batches they are small for T > 1).

Under Eq. 8 the factors t < T of R(d | z^) take sg(z_t) and sg(d*_t) only, so they carry no gradient;
the loss computes the factor t = T, whose gradient is the whole of dL_Rec.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from genir.distributed import map_rows
from genir.docids.balance import constrained_kmeans, diversity, largest_share, sinkhorn
from genir.io import atomic_path, save_npy, write_text
from genir.settings import TrainingSettings, at_least, choice, derived, inherited, positive, resolve_group
from genir.training import checkpoint
from genir.training.data import TextInputs
from genir.training.loop import Trainer, load_weights
from genir.training.objectives import memory_of


@dataclass
class GenRetConfig:
    codes: int = at_least(512, 2)  # K, codes per step (GenRet Sec. 4.4)
    length: int | None = at_least(None, 1)  # M; None: the smallest M with K^M >= headroom x documents
    headroom: float = positive(10.0)
    # budgets: unset, each follows --epochs / --lr / --batch-size (training.*) when given, else its default
    epochs: float | None = inherited(30, "training.epochs", gt=0)  # per progressive step
    # codebook initialisation warm-up (continuous d_T), per step: a tenth of a step's epochs when those are set
    warmup_epochs: float | None = inherited(3, "genret.epochs", scale=0.1)
    # after the last step: seq2seq training on the final, fixed docids (the authors' code's "fit" stage;
    # the last step trains queries towards re-assigned codes, the stored docids are plain argmax); 0 = off
    fit_epochs: float | None = inherited(30, "training.epochs")
    batch_size: int | None = inherited(128, "training.batch_size", ge=1, added=True)
    lr: float | None = inherited(5e-4, "training.lr", gt=0)  # GenRet Sec. 4.4 (AdamW)
    reassign: bool = True  # docid re-assignment by Sinkhorn-Knopp during training
    diverse_init: bool = True  # warm-up + constrained k-means codebook initialisation (else random)
    epsilon: float = positive(1.0)  # Sinkhorn eps (GenRet Sec. 4.4)
    sinkhorn_iterations: int = at_least(100, 1)
    rec_set: str = choice("bank", "bank", "batch")  # S(z_<t): whole corpus, refreshed, or the batch
    # the warm-up also trains the ranking term of L_Ret (q_T . d_T, in-batch): see GenRetObjective
    warmup_ranking: bool = True
    bank_refresh: int = 0  # steps between bank refreshes; 0 = once per epoch
    # how the corpus's docids are fixed after each step: "argmax" (Eq. 4, plain look-up; the authors' code)
    # or "sinkhorn" (Sec. 3.3.2's re-assignment applied to the corpus, per group of documents sharing z_<T)
    assign: str = choice("argmax", "argmax", "sinkhorn")
    # documents sharing a docid: ordered by q_T . d_T, the score GenRet trains for them | in corpus order
    tie_break: str = choice("score", "score", "corpus", search=True)
    collapse_share: float = 0.5  # warn when one docid prefix holds more than this share of documents
    collapse_diversity: float = 0.2  # ... or when step diversity d falls below this
    seed: int = derived(0)  # the training group's seed
    checkpoint_every: int = derived(200)  # the training group's

    def __post_init__(self) -> None:
        if self.rec_set not in ("bank", "batch"):
            raise ValueError(f"rec_set must be 'bank' or 'batch', not {self.rec_set!r}")
        if self.assign not in ("argmax", "sinkhorn"):
            raise ValueError(f"assign must be 'argmax' or 'sinkhorn', not {self.assign!r}")
        if self.codes < 2:
            raise ValueError("codes (K) must be at least 2")

    def docid_length(self, n_docs: int) -> int:
        """GenRet Sec. 4.4: M grows with the corpus so that docids are (nearly) unique."""
        if self.length:
            return self.length
        return max(1, math.ceil(math.log(max(n_docs, 2) * self.headroom) / math.log(self.codes)))


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
        self.t, self.codes, self.data, self.cfg, self.phase = t, codes, data, config, phase
        self.trained = torch.zeros(len(codes), dtype=torch.bool)
        self.trained[data.docs] = True
        # documents sharing the stored prefix z_<T share a group id: S(z_<T) of Eq. 6
        prefixes = codes[:, :t].numpy() if t else np.zeros((len(codes), 0), dtype=np.int64)
        _, group = np.unique(prefixes, axis=0, return_inverse=True) if t else (None, np.zeros(len(codes)))
        self.group = torch.as_tensor(np.asarray(group).ravel(), dtype=torch.long)
        self.bank: torch.Tensor | None = None
        self.calls = 0
        every = config.bank_refresh or math.ceil(len(data) / config.batch_size)
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


class _Docs(Dataset):
    def __init__(self, docs: list[int]):
        self.docs = docs

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, i: int) -> int:
        return self.docs[i]


class ProgressiveTrainer:
    """GenRet Sec. 3.3.1: M learning steps; step T learns z_T while z_<T stay fixed.

    At step T the trainable parameters are the decoder, the input embeddings of z_<T and the codebook
    E_T; the codebooks E_<T (and a frozen encoder) do not move, and the stored codes z_<T are data.
    Each step: [warm-up + constrained k-means init of E_T] -> training (Eq. 11) -> z_T = argmax (Eq. 4)
    for every document, logged with diversity d and the largest docid share.

    Progress is kept in ``folder``: ``codes.npy`` + ``progress.json`` after each finished step, and the
    shared Trainer's checkpoints per phase, so a killed run resumes where it stopped.
    """

    def __init__(self, model, data: GenRetData, n_docs: int, config: GenRetConfig, folder: str | Path,
                 show_progress: bool = True, train_config: TrainingSettings | None = None):
        config = replace(config, **resolve_group(config))  # budgets left unset: their defaults
        self.model, self.data, self.cfg, self.folder = model, data, config, Path(folder)
        self.train_config = train_config or TrainingSettings()  # the shared settings (encoder rate, precision, ...)
        self.n_docs, self.show_progress = n_docs, show_progress
        self.m = model.n_steps
        self.codes = torch.full((n_docs, self.m), -1, dtype=torch.long)
        self.log: list[dict] = []

    def _phase(self, objective: GenRetObjective, epochs: float, name: str) -> dict:
        cfg = self.cfg
        tcfg = replace(self.train_config, epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=0.0,
                       seed=cfg.seed, checkpoint_every=cfg.checkpoint_every)
        trainer = Trainer(self.model, objective, self.data, self.data.collate, tcfg, self.folder / name,
                          show_progress=self.show_progress, desc=f"genret {name}")
        info = trainer.train()
        info["history"] = trainer.history
        return info

    def _set_trainable(self, t: int) -> None:
        for s, book in enumerate(self.model.codebooks):
            book.requires_grad_(s == t)  # E_<T frozen (and E_>T unused) at step T
        for s, emb in enumerate(self.model.step_embed):
            emb.weight.requires_grad_(s < t)  # inputs z_<T feed d_T; later ones are unused

    @torch.no_grad()
    def doc_vectors(self, t: int) -> torch.Tensor:
        """d_T of every trained document given its stored prefix (dropout off), (n_trained, D)."""
        objective = GenRetObjective(t, self.codes, self.data, self.cfg)
        objective.refresh_bank(self.model)
        return objective.bank[self.data.docs].cpu()

    @torch.no_grad()
    def assign(self, t: int) -> None:
        """Fix z_T for every trained document (then stored): GenRet Eq. 4, z_T = argmax_j d_T . E_T^T;
        or, with ``assign="sinkhorn"``, argmax over H* (Sec. 3.3.2) computed over each group of documents
        that share z_<T, so that documents of one group spread over the codes."""
        self.model.eval()
        docs = self.data.docs
        if self.cfg.assign == "argmax":
            device = next(self.model.parameters()).device

            def assigned(idx_all: list[int]) -> torch.Tensor:
                out = []
                for s in range(0, len(idx_all), 512):
                    idx = idx_all[s: s + 512]
                    mem, mask = self.data.doc_states(idx)
                    out.append(self.model.assign_codes(mem, mask, t + 1, self.codes[idx, :t].to(device))[:, t])
                return torch.cat(out)

            self.codes[docs, t] = map_rows(assigned, docs).cpu()  # sharded across processes, gathered
            return
        h = self.model.step_logits(self.doc_vectors(t).to(self.model.codebooks[t].device), t).cpu()
        objective = GenRetObjective(t, self.codes, self.data, self.cfg)
        groups = objective.group[docs]
        docs_t = torch.tensor(docs)
        for g in torch.unique(groups):
            rows = (groups == g).nonzero().ravel()
            plan = sinkhorn(h[rows], self.cfg.epsilon, self.cfg.sinkhorn_iterations)
            self.codes[docs_t[rows], t] = plan.argmax(-1)

    def step_stats(self, t: int) -> dict:
        docs = self.data.docs
        col = self.codes[docs, t].numpy()
        stats = {"step": t + 1, "diversity": diversity(col, self.cfg.codes),
                 "codes_used": int(len(np.unique(col))),
                 "largest_code_share": largest_share(col),
                 "largest_docid_share": largest_share(self.codes[docs, : t + 1].numpy()),
                 "distinct_docids": int(len(np.unique(self.codes[docs, : t + 1].numpy(), axis=0)))}
        collapsed = (stats["largest_docid_share"] > self.cfg.collapse_share
                     or stats["diversity"] < self.cfg.collapse_diversity)
        stats["collapsed"] = bool(collapsed)
        msg = (f"genret step {t + 1}/{self.m}: diversity d = {stats['diversity']:.3f}, "
               f"{stats['codes_used']}/{self.cfg.codes} codes used, largest docid holds "
               f"{stats['largest_docid_share']:.1%} of documents")
        tqdm.write(msg)
        if collapsed:
            warnings.warn(f"GenRet docids collapsed at step {t + 1}: {msg}. Check that re-assignment and the "
                          "diverse codebook initialisation are on, and the learning rate.", stacklevel=2)
        return stats

    def _load_progress(self) -> int:
        progress = self.folder / "progress.json"
        if not progress.exists():
            return 0
        state = json.loads(progress.read_text(encoding="utf-8"))
        self.codes = torch.from_numpy(np.load(self.folder / "codes.npy"))
        weights = self.folder / "model_after_step.safetensors"
        load_weights(self.model, load_file(str(weights)), weights, may_lack="encoder.")
        self.log = state["log"]
        return state["steps_done"]

    def _save_progress(self, steps_done: int) -> None:
        trains_encoder = any(p.requires_grad for p in self.model.encoder.parameters())
        state = {k: v.detach().clone().contiguous() for k, v in self.model.state_dict().items()
                 if trains_encoder or not k.startswith("encoder.")}  # a frozen encoder is not copied
        with atomic_path(self.folder / "model_after_step.safetensors") as tmp:
            save_file(state, str(tmp))  # tensors only: no pickle in a run folder
        save_npy(self.folder / "codes.npy", self.codes.numpy())
        # the progress record last: it names a step only once its weights and codes are complete
        write_text(self.folder / "progress.json", json.dumps(
            {"steps_done": steps_done, "log": self.log, "config": asdict(self.cfg)}, indent=1, default=float))

    def train(self, steps: int | None = None) -> dict:
        start = time.perf_counter()
        done = self._load_progress()
        device = next(self.model.parameters()).device
        for t in range(done, steps if steps is not None else self.m):
            self._set_trainable(t)
            entry: dict = {"step": t + 1}
            if self.cfg.diverse_init:
                # Sec. 3.3.2: warm up with the continuous d_T, then cluster every document's d_T into K
                # balanced groups; the centroids become E_T
                warm = GenRetObjective(t, self.codes, self.data, self.cfg, phase="warmup")
                self.model.codebooks[t].requires_grad_(False)  # not used by the warm-up loss
                if self.cfg.warmup_epochs:
                    entry["warmup"] = _brief(self._phase(warm, self.cfg.warmup_epochs, f"step{t + 1}-warmup"))
                self.model.codebooks[t].requires_grad_(True)
                init = self.folder / f"codebook{t + 1}.npy"
                if init.exists():  # a resumed run: the initialisation and its figures from before
                    centroids = np.load(init)
                    entry.update(json.loads(init.with_suffix(".json").read_text(encoding="utf-8")))
                else:
                    k_start = time.perf_counter()
                    centroids, labels = constrained_kmeans(self.doc_vectors(t).numpy(), self.cfg.codes,
                                                           self.cfg.seed + t)
                    kmeans = {"kmeans_seconds": time.perf_counter() - k_start,
                              "kmeans_diversity": diversity(labels, self.cfg.codes)}
                    entry.update(kmeans)
                    write_text(init.with_suffix(".json"), json.dumps(kmeans))
                    save_npy(init, centroids)  # last: its presence means both are complete
                with torch.no_grad():
                    self.model.codebooks[t].copy_(torch.from_numpy(centroids).to(device))
            objective = GenRetObjective(t, self.codes, self.data, self.cfg, phase="train")
            entry["train"] = _brief(self._phase(objective, self.cfg.epochs, f"step{t + 1}"))
            self.assign(t)
            entry.update(self.step_stats(t))
            self.log.append(entry)
            self._save_progress(t + 1)
            checkpoint.discard(self.folder)  # the step is stored: its phases' checkpoints resume nothing now
        for book in self.model.codebooks:
            book.requires_grad_(True)
        for emb in self.model.step_embed:
            emb.weight.requires_grad_(True)
        return {"seconds": time.perf_counter() - start, "log": self.log}


def _brief(info: dict) -> dict:
    """Keep a phase's loss curve short enough for the run's JSON (every 10th point)."""
    hist = info.pop("history", [])
    return {**info, "history": hist[::10] + hist[-1:]}
