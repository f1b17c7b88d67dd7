"""An example method in one package: DSI with random docids.

This package is the template for adding a method. A method is a :class:`~genir.methods.base.Method`
subclass (its docid scheme, and whatever of training data, objective, model and search differs from the
shared parts) plus its settings group; the package exports ``METHODS`` and ``GROUPS``, and one line in
:data:`genir.methods.FAMILIES` registers it. Everything else (the seq2seq retriever, the training loop,
checkpoints and resume, the prefix tree and beam search, the folder that opens itself, ``--dry-run``,
the report) comes from the shared parts.

Random docids: every document gets a random path of ``length`` codes out of ``codes`` per step, drawn
without collision and fixed before training; they carry no meaning, which makes them the control for
semantic and learned docids (the "random" identifiers of the DSI-family comparisons, e.g. NCI Table 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genir.docids import DocIdTable
from genir.methods.base import Method
from genir.settings import at_least
from genir.workspace import Workspace


@dataclass
class RandomDocidSettings:
    codes: int = at_least(32, 2)  # codes per step
    length: int | None = at_least(None, 1)  # None: the fewest steps with codes^length >= documents


def random_docids(doc_ids: list[str], codes: int, length: int | None, seed: int) -> DocIdTable:
    """Distinct random paths: document i gets the base-``codes`` digits of a distinct random integer."""
    n = len(doc_ids)
    length = length or max(1, math.ceil(math.log(max(n, 2)) / math.log(codes)))
    if codes**length < n:
        raise ValueError(f"random docids: {codes}^{length} paths cannot hold {n} documents; raise "
                         f"random.codes or random.length")
    numbers = np.random.default_rng(seed).choice(codes**length, size=n, replace=False)
    digits = np.stack([(numbers // codes**p) % codes for p in reversed(range(length))], axis=1)
    return DocIdTable(doc_ids, digits, codes, "random", {"length": length})


class DsiRandom(Method):
    name = "dsi-random"
    description = "DSI, random docids: a random collision-free path per document (the example method)"
    docids = "random (codes per step x length steps, no collision)"
    objective_text = "seq2seq cross-entropy to the docid (indexing + retrieval examples)"
    search_mode = "constrained beam search over the docid prefix tree"
    group = "random"
    live_refusal = "a random docid means nothing to the model until it is trained on it: retrain, or use dsi-semantic"

    def make_docids(self, ws: Workspace, settings: RandomDocidSettings, folder: Path) -> DocIdTable:
        return random_docids(ws.doc_ids, settings.codes, settings.length, ws.settings.training.seed)


METHODS = [DsiRandom()]
GROUPS = {"random": RandomDocidSettings}
