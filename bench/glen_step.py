"""Time of one GLEN phase-1 training step (forward + backward through ``LexicalSeq2Seq``, frozen encoder),
with the encoder states projected to keys and values once per batch against attended unprojected
(``CodeDecoder.start(steps=n)``), the two alternated in one process so that the ratio holds on a noisy
machine.

    OMP_NUM_THREADS=1 python bench/glen_step.py --rounds 20

The model is GLEN's as genir builds it on the bundled MiniLM (n = 3 identifier steps fed the last hidden
state, a 2-layer decoder at the word-embedding width, logits over the 30,522-token vocabulary); the batch is
random encoder states (64 per text) and random identifier targets.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from genir.methods.glen import LexicalSeq2Seq
from genir.models import ModelConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--states", type=int, default=64)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = LexicalSeq2Seq(ModelConfig(n_codes=0, max_docid_length=3, decoder_ff=512))  # genir's model defaults
    model.encoder.requires_grad_(False)  # frozen: E is read, not trained
    memory = torch.randn(args.batch, args.states, model.decoder.d_model)
    mask = torch.ones(args.batch, args.states, dtype=torch.bool)
    targets = torch.randint(0, model.word_embeddings.shape[0], (args.batch, model.n_steps))
    layers = model.decoder.layers
    cheaper = [layer.unprojected_is_cheaper for layer in layers]

    def step(unprojected: bool) -> float:
        for layer, rule in zip(layers, cheaper, strict=True):
            layer.unprojected_is_cheaper = rule if unprojected else (lambda positions: False)
        start = time.perf_counter()
        logits = model(memory, mask, targets)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
        return time.perf_counter() - start

    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for unprojected in (False, True):
            times[unprojected].append(step(unprojected))
    projected, unprojected = (statistics.median(times[u][2:]) for u in (False, True))
    print(f"projected {projected * 1000:.0f} ms, unprojected {unprojected * 1000:.0f} ms, "
          f"ratio {unprojected / projected:.2f} (median of {args.rounds - 2} rounds after 2 warm-up)")


if __name__ == "__main__":
    main()
