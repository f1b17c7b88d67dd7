"""Time of one GLEN phase-1 training step (forward + backward), with the encoder states projected to keys
and values once per batch (``CodeDecoder.start``) against attended unprojected (``start(steps=n)``), the
two alternated in one process so that the ratio holds on a noisy machine.

    OMP_NUM_THREADS=1 python bench/glen_step.py --rounds 12

Shapes as GLEN trains on MiniLM: batch 32, 64 encoder states of width 384, n = 3 identifier steps fed the
last hidden state, logits over the 30,522-token vocabulary, a 2-layer decoder of width 384.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from genir.models.decoder import CodeDecoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--states", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=30522)
    args = ap.parse_args()
    torch.manual_seed(0)
    decoder = CodeDecoder(384, 2, 6, 1536, 384, max_length=8, dropout=0.1)
    vocab = torch.randn(args.vocab, 384) * 0.05
    memory = torch.randn(args.batch, args.states, 384)
    mask = torch.ones(args.batch, args.states, dtype=torch.bool)
    targets = torch.randint(0, args.vocab, (args.batch * args.steps,))

    def step(unprojected: bool) -> float:
        start = time.perf_counter()
        state = decoder.start(memory, mask, steps=args.steps if unprojected else None)
        x, hidden = torch.zeros(args.batch, 384), []
        for _ in range(args.steps):
            x, state = decoder.step(state, x)
            hidden.append(x)
        logits = torch.stack(hidden, 1) @ vocab.T
        torch.nn.functional.cross_entropy(logits.reshape(-1, args.vocab), targets).backward()
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
