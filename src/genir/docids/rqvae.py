"""RQ-VAE docids (MERGE, Zhang et al., Sec. 3.1.1): a residual-quantised auto-encoder over document
embeddings; a document's docid is its tuple of codes, one per level, coarse to fine.

- :class:`RQVAE`: DNN encoder E (embedding -> latent z), m codebooks of K vectors, residual quantisation
  (r_0 = z, c_l = argmin_k ||r_l - e^l_k||, r_{l+1} = r_l - e^l_{c_l}), DNN decoder D (z-hat -> embedding).
- :meth:`RQVAE.init_codebooks`: k-means on the latents of the first batch, level by level (MERGE 3.1.1).
- :func:`decollide`: documents whose m codes coincide get distinct last codes by Sinkhorn (MERGE 3.1.3).
- :func:`distinct_codes_per_level`: MERGE's Table 3 statistic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genir.docids.balance import sinkhorn


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims, dims[1:], strict=False)):
        lin = nn.Linear(a, b)
        nn.init.xavier_normal_(lin.weight)
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(dims) - 2:  # no activation after the last layer
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    def __init__(self, input_dim: int, hidden: tuple[int, ...] = (512, 256, 128, 64), latent_dim: int = 32,
                 levels: int = 4, codes: int = 256, commitment: float = 1.0):
        super().__init__()
        self.levels, self.codes, self.commitment = levels, codes, commitment
        self.latent_encoder = _mlp([input_dim, *hidden, latent_dim])
        self.latent_decoder = _mlp([latent_dim, *reversed(hidden), input_dim])
        self.codebooks = nn.Parameter(torch.randn(levels, codes, latent_dim) * 0.1)
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def init_codebooks(self, embeddings: torch.Tensor, seed: int = 0) -> None:
        """MERGE 3.1.1: each codebook = k-means (K clusters) of the first batch's residuals at its level."""
        from genir.docids.schemes import kmeans_centroids

        r = self.latent_encoder(embeddings)
        for level in range(self.levels):
            centroids = kmeans_centroids(r.cpu().numpy(), self.codes, seed + level)
            self.codebooks[level] = torch.from_numpy(centroids).to(r)
            r = r - self.codebooks[level][self._nearest(r, level)]
        self.initialised.fill_(True)

    def _nearest(self, r: torch.Tensor, level: int) -> torch.Tensor:
        return torch.cdist(r, self.codebooks[level]).argmin(-1)  # c_l = argmin_k ||r_l - e^l_k||

    def quantize(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Residual quantisation of latents z (B, h): codes (B, m), residuals r_0..r_{m-1} (m, B, h),
        the quantised z-hat (straight-through: the forward value is sum_l e^l_{c_l}, the gradient reaches
        the encoder as if z-hat were z, as in VQ-VAE) and L_rq (MERGE Eq. 2)."""
        r = z
        codes, residuals, chosen = [], [], []
        rq = z.new_zeros(())
        for level in range(self.levels):
            c = self._nearest(r, level)
            e = self.codebooks[level][c]
            # MERGE Eq. 2: ||sg[r_l] - e||^2 moves the codebook, alpha ||r_l - sg[e]||^2 commits the encoder
            rq = rq + F.mse_loss(e, r.detach()) + self.commitment * F.mse_loss(r, e.detach())
            codes.append(c)
            residuals.append(r)
            chosen.append(e)
            r = r - e.detach()  # r_{l+1} = r_l - e^l_{c_l}
        z_q = torch.stack(chosen).sum(0)
        z_hat = z + (z_q - z).detach()
        return {"codes": torch.stack(codes, 1), "residuals": torch.stack(residuals), "z_hat": z_hat, "rq": rq}

    def forward(self, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        """Latent z, codes, residuals, reconstruction and the RQ-VAE loss L_recon + L_rq (MERGE Eq. 1-2)."""
        z = self.latent_encoder(embeddings)
        out = self.quantize(z)
        recon = self.latent_decoder(out["z_hat"])
        out.update(z=z, recon=recon, recon_loss=F.mse_loss(recon, embeddings))  # MERGE Eq. 1
        out["loss"] = out["recon_loss"] + out["rq"]
        return out

    @torch.no_grad()
    def encode_codes(self, embeddings: torch.Tensor, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes (N, m) of every document and its last-level residual r_{m-1} (N, h), for :func:`decollide`."""
        codes, last = [], []
        for s in range(0, len(embeddings), batch_size):
            out = self.quantize(self.latent_encoder(embeddings[s: s + batch_size]))
            codes.append(out["codes"])
            last.append(out["residuals"][-1])
        return torch.cat(codes), torch.cat(last)


def decollide(codes: np.ndarray, last_residual: np.ndarray, last_codebook: np.ndarray,
              epsilon: float = 0.05, iterations: int = 100) -> tuple[np.ndarray, dict]:
    """MERGE 3.1.3: documents whose codes all coincide are re-assigned distinct last-level codes.

    Per prefix (the first m-1 codes) that holds a collision, the colliding documents (all but the one
    nearest to the shared code keep their place) are spread over the codes the prefix does not use yet:
    Sinkhorn on -||r_{m-1} - e_k||^2 / epsilon gives a balanced soft assignment, taken greedily, most
    confident first, one document per code. A prefix with more documents than codes cannot be made
    unique at m levels: those documents get an extra level (their position), reported as ``extended``.
    """
    codes = np.asarray(codes).copy()
    n, m = codes.shape
    k = last_codebook.shape[0]
    groups: dict[tuple, list[int]] = {}
    for i, row in enumerate(codes.tolist()):
        groups.setdefault(tuple(row), []).append(i)
    colliding = {key: docs for key, docs in groups.items() if len(docs) > 1}
    by_prefix: dict[tuple, set[int]] = {}
    for key in groups:
        by_prefix.setdefault(key[:-1], set()).add(key[-1])
    moved, extended = 0, []
    for key, docs in colliding.items():
        dist = ((last_residual[docs, None, :] - last_codebook[None, key[-1], :]) ** 2).sum(-1)[:, 0]
        keep = docs[int(np.argmin(dist))]
        movers = [d for d in docs if d != keep]
        used = by_prefix[key[:-1]]
        free = [c for c in range(k) if c not in used]
        if len(free) < len(movers):  # not enough codes left under this prefix
            extended += movers[len(free):]
            movers = movers[: len(free)]
        if not movers:
            continue
        d2 = ((last_residual[movers, None, :] - last_codebook[None, free, :]) ** 2).sum(-1)
        plan = sinkhorn(torch.from_numpy(-d2), epsilon=epsilon * float(d2.std() + 1e-12),
                        iterations=iterations).numpy()
        taken: set[int] = set()
        placed: set[int] = set()
        for flat in np.argsort(-plan, axis=None):
            i, j = divmod(int(flat), len(free))
            if i in placed or j in taken:
                continue
            codes[movers[i], -1] = free[j]
            used.add(free[j])
            placed.add(i)
            taken.add(j)
            moved += 1
            if len(placed) == len(movers):
                break
    if extended:  # an extra level keeps those documents apart: their rank within the shared docid
        extra = np.zeros((n, 1), dtype=codes.dtype)
        final: dict[tuple, int] = {}
        for i in range(n):
            key = tuple(codes[i])
            extra[i, 0] = final.get(key, 0)
            final[key] = extra[i, 0] + 1
        codes = np.concatenate([codes, extra], 1)
    return codes, {"collisions_before": int(sum(len(d) - 1 for d in colliding.values())),
                   "reassigned": moved, "extended": len(extended)}


def distinct_codes_per_level(codes: np.ndarray, doc_index: dict[str, int],
                             qrels: dict[str, dict[str, int]], min_docs: int = 2) -> list[float] | None:
    """MERGE Table 3: for every query with at least ``min_docs`` relevant documents, the number of
    distinct codes at each level among them, averaged over those queries (lower = relevant documents
    share more of their docid)."""
    per_query = []
    for rels in qrels.values():
        docs = [doc_index[d] for d, g in rels.items() if g > 0 and d in doc_index]
        if len(docs) >= min_docs:
            sub = codes[docs]
            # -1 pads shorter docids (semantic ones): not a code
            per_query.append([len({c for c in sub[:, level].tolist() if c >= 0}) for level in range(codes.shape[1])])
    if not per_query:
        return None
    return np.asarray(per_query, dtype=float).mean(0).tolist()


def save_quantizer(model: RQVAE, mean: np.ndarray, std: np.ndarray, folder: str | Path) -> None:
    """The trained RQ-VAE and the standardisation of its inputs as one folder (safetensors + JSON): what a
    live index needs to give a new document its docid from the frozen quantizer."""
    from safetensors.torch import save_file

    from genir.io import atomic_path

    with atomic_path(Path(folder)) as tmp:
        tmp.mkdir(parents=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        tensors.update(input_mean=torch.from_numpy(np.asarray(mean, np.float32)),
                       input_std=torch.from_numpy(np.asarray(std, np.float32)))
        save_file(tensors, str(tmp / "quantizer.safetensors"))
        hidden = [m.out_features for m in model.latent_encoder if isinstance(m, nn.Linear)]
        (tmp / "quantizer.json").write_text(json.dumps({
            "input_dim": int(model.latent_encoder[0].in_features), "hidden": hidden[:-1], "latent_dim": hidden[-1],
            "levels": model.levels, "codes": model.codes, "commitment": model.commitment}))


def load_quantizer(folder: str | Path) -> tuple[RQVAE, np.ndarray, np.ndarray]:
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = json.loads((folder / "quantizer.json").read_text())
    model = RQVAE(cfg["input_dim"], tuple(cfg["hidden"]), cfg["latent_dim"], cfg["levels"], cfg["codes"],
                  cfg["commitment"])
    tensors = load_file(str(folder / "quantizer.safetensors"))
    mean, std = tensors.pop("input_mean").numpy(), tensors.pop("input_std").numpy()
    model.load_state_dict(tensors)
    return model.eval(), mean, std


def place_codes(existing: list[tuple[int, ...]], codes: np.ndarray, last_residual: np.ndarray,
                last_codebook: np.ndarray) -> tuple[list[list[int]], int]:
    """Level codes (N, m) of new documents made distinct from ``existing`` docids (level codes, any length),
    as :func:`decollide` does in training: a colliding document takes the free last-level code under its
    prefix nearest to its last residual. With no code free it shares the docid (counted)."""
    taken = {tuple(s[: codes.shape[1]]) for s in existing}
    out, shared = [], 0
    for i, row in enumerate(codes.tolist()):
        key = tuple(row)
        if key in taken:
            prefix = key[:-1]
            used = {t[-1] for t in taken if t[:-1] == prefix}
            free = [c for c in range(last_codebook.shape[0]) if c not in used]
            if free:
                d2 = ((last_residual[i][None, :] - last_codebook[free]) ** 2).sum(-1)
                key = (*prefix, free[int(np.argmin(d2))])
            else:
                shared += 1
        taken.add(key)
        out.append(list(key))
    return out, shared
