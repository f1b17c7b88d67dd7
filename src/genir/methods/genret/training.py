"""GenRet (Sun et al., "Learning to Tokenize for Generative Retrieval"): docids learned by discrete
auto-encoding, one docid step at a time (progressive training, Sec. 3.3.1), with diverse clustering
(codebook initialisation by constrained k-means after a warm-up, docid re-assignment by Sinkhorn-Knopp;
Sec. 3.3.2).

Pieces: :class:`GenRetConfig` (``settings``), :class:`GenRetData` (documents, each with the texts that
stand for its queries) and :class:`GenRetObjective` (Eq. 6, 8-11 at progressive step T; ``objective``), and
:class:`ProgressiveTrainer` (here) (the M learning steps; the shared :class:`~genir.training.Trainer` runs each
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
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from genir.distributed import map_rows
from genir.docids.balance import constrained_kmeans, diversity, largest_share, sinkhorn
from genir.io import atomic_path, save_npy, write_text
from genir.methods.genret.objective import GenRetData, GenRetObjective
from genir.methods.genret.settings import GenRetConfig
from genir.settings import TrainingSettings, resolve_group
from genir.training import checkpoint
from genir.training.loop import Trainer, load_weights


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
        # the seed, the checkpoint interval and the encoder's settings: the training group's
        tcfg = replace(self.train_config, epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=0.0)
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
                                                           self.train_config.seed + t)
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
