"""The query encoder (the bundled MiniLM) under each runtime on offer, interleaved in one process: PyTorch
fp32, PyTorch under bf16 autocast, PyTorch int8 (dynamic quantisation) and, when ``onnxruntime`` is
installed, ONNX Runtime on an exported graph (as exported, and after ONNX Runtime's BERT fusions).

    pip install onnxruntime onnx onnxscript   # only for the ONNX rows; genir does not need them
    python bench/encoder_runtimes.py --dataset scifact --queries 320 --rounds 7

Queries/s (median of --rounds) over batches of --batch queries, and the largest difference of each row's
token states from fp32's over the real (unpadded) tokens. The ONNX graph is exported from the eager-attention
model: the SDPA path's mask handling did not survive the export (its states differed by up to 1.9 on
padded batches).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--queries", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from transformers import AutoModel, AutoTokenizer

    from genir.data import load_dataset
    from genir.models.precision import encoder_in
    from genir.models.pretrained import bundled_minilm_path

    path = bundled_minilm_path()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    texts = list(load_dataset(args.dataset).queries.values())[: args.queries]
    batches = [tokenizer(texts[s: s + args.batch], padding=True, truncation=True, max_length=64, return_tensors="pt",
                         return_token_type_ids=False) for s in range(0, len(texts), args.batch)]

    def torch_runner(module):
        def run() -> list[torch.Tensor]:
            with torch.inference_mode():
                return [module(**b).last_hidden_state.float() for b in batches]
        return run

    runners = {"PyTorch fp32": torch_runner(model), "PyTorch bf16 autocast": torch_runner(encoder_in(model, "bf16")),
               "PyTorch int8 (dynamic)": torch_runner(encoder_in(model, "int8"))}
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime is not installed: no ONNX rows")
    else:
        runners.update(onnx_runners(ort, path, batches, Path(tempfile.mkdtemp())))
    reference = runners["PyTorch fp32"]()
    times: dict[str, list[float]] = {name: [] for name in runners}
    diff = {}
    for name, run in runners.items():
        out = run()  # warm-up, and the states compared
        diff[name] = max(float((o - r)[b["attention_mask"].bool()].abs().max())
                         for o, r, b in zip(out, reference, batches, strict=True))
    for _ in range(args.rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    base = len(texts) / statistics.median(times["PyTorch fp32"])
    print(f"\n{len(texts)} {args.dataset} queries, batches of {args.batch}, {torch.get_num_threads()} threads\n")
    print("| runtime | queries/s | vs PyTorch fp32 | largest state difference |\n|---|---|---|---|")
    for name, t in times.items():
        qps = len(texts) / statistics.median(t)
        print(f"| {name} | {qps:.1f} | {qps / base:.2f}x | {diff[name]:.2g} |")


def onnx_runners(ort, path: str, batches, folder: Path) -> dict:
    from transformers import AutoModel

    eager = AutoModel.from_pretrained(path, attn_implementation="eager").eval()

    class States(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    axes = {0: "batch", 1: "tokens"}
    b = batches[0]
    torch.onnx.export(States(eager), (b["input_ids"], b["attention_mask"]), str(folder / "encoder.onnx"),
                      input_names=["input_ids", "attention_mask"], output_names=["states"], opset_version=17,
                      dynamic_axes={"input_ids": axes, "attention_mask": axes, "states": axes}, dynamo=False)
    from onnxruntime.transformers import optimizer

    cfg = eager.config
    optimizer.optimize_model(str(folder / "encoder.onnx"), model_type="bert", num_heads=cfg.num_attention_heads,
                             hidden_size=cfg.hidden_size).save_model_to_file(str(folder / "fused.onnx"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads() or os.cpu_count()

    def runner(file: str):
        session = ort.InferenceSession(str(folder / file), options, providers=["CPUExecutionProvider"])

        def run() -> list[torch.Tensor]:
            return [torch.from_numpy(session.run(None, {"input_ids": x["input_ids"].numpy(),
                                                        "attention_mask": x["attention_mask"].numpy()})[0])
                    for x in batches]
        return run

    return {"ONNX Runtime fp32": runner("encoder.onnx"), "ONNX Runtime fp32, BERT fusions": runner("fused.onnx")}


if __name__ == "__main__":
    main()
