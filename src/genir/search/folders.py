"""Open a trained method folder of a run (``model/`` + ``docids/``) as the searcher its recipe uses."""

from __future__ import annotations

from pathlib import Path

from genir.search.base import Searcher


def open_method_folder(method_dir: str | Path, beam: int = 100, docs: list | None = None, batch_size: int = 16,
                       **options) -> Searcher:
    """Tied docids are the model's encodings of the corpus, so those folders need ``docs`` to encode.
    GLEN folders search over identifier tokens only, with collision ranking (``options``: tie_break,
    restrict). Raises ValueError when the folder cannot be searched."""
    from genir.docids import DocIdTable
    from genir.models import DocidSeq2Seq

    method_dir = Path(method_dir)
    if not (method_dir / "model" / "genir_model.json").exists():
        raise ValueError(f"{method_dir}: no trained model (expected {method_dir / 'model'})")
    model = DocidSeq2Seq.load(method_dir / "model")
    if str(model.config.extra.get("method", "")).startswith("tied-"):
        from genir.search.tied import TiedAtomicIndex, TiedAtomicSearcher

        if docs is None:
            raise ValueError(f"{method_dir}: tied docids are encodings of the corpus; give the dataset to encode it")
        searcher = TiedAtomicSearcher(model, TiedAtomicIndex(model.decoder.d_model), mode="generative",
                                      name=method_dir.name)
        searcher.add_documents(docs)
        return searcher
    table = DocIdTable.load(method_dir / "docids")
    if model.config.extra.get("architecture") == "lexical":  # GLEN: exact P(z|q), collision ranking (Eq. 9)
        import numpy as np

        from genir.search.lexical import LexicalSearcher

        return LexicalSearcher(model, table, np.load(method_dir / "identifier_logits.npy"), beam=beam,
                               batch_size=batch_size, name=method_dir.name, **options)
    from genir.search.generative import GenerativeSearcher

    return GenerativeSearcher(model, table, beam=beam, batch_size=batch_size, name=method_dir.name)
