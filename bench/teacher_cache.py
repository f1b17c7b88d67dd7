"""The dense+BM25 teacher's embeddings from the frozen encoder's cache against the encoder reading the texts
again: the same vectors (up to the cache's float16), the time saved. Reads a run folder made with
``tied-atomic-distill --teacher-scores dense+bm25`` on the frozen MiniLM at ``model.doc_max_length=256``
(its ``encoded_texts-KEY.safetensors`` is reused; nothing is written).

    python bench/teacher_cache.py bench_runs/distill-hold-w1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    args = ap.parse_args()
    import numpy as np

    from genir.methods import get_method, read_settings
    from genir.methods.base import model_config
    from genir.methods.tied import TiedSeq2Seq, teacher_embeddings, training_pairs
    from genir.workspace import Workspace

    settings = read_settings(args.run)
    ws = Workspace(settings, args.run)
    method = get_method("tied-atomic-distill")
    model = TiedSeq2Seq(model_config(ws, 1, 1, method.model_extra(settings.tied)))
    ws.encoded(model)  # the cache as the run left it
    examples = ws.examples()
    text_ids = sorted({t for t, _ in training_pairs(examples)})
    texts = [examples.texts[t] for t in text_ids]
    lead = ws.lead_texts(ws.docs)
    embed = teacher_embeddings(ws, model)
    start = time.perf_counter()
    cached = embed(texts, text_ids), embed(lead, [examples.doc_text.get(d) for d in range(len(lead))])
    cache_s = time.perf_counter() - start
    start = time.perf_counter()
    read = embed(texts, [None] * len(texts)), embed(lead, [None] * len(lead))
    encoder_s = time.perf_counter() - start
    diff = [float(np.abs(a - b).max()) for a, b in zip(cached, read, strict=True)]
    cos = [float((a * b).sum(1).min()) for a, b in zip(cached, read, strict=True)]
    print(json.dumps({"texts": len(texts), "documents": len(lead), "cache_s": round(cache_s, 1),
                      "encoder_s": round(encoder_s, 1), "max_abs_diff (texts, documents)": diff,
                      "min_cosine (texts, documents)": cos}, indent=1))


if __name__ == "__main__":
    main()
