"""The ONNX Runtime benchmarks of `python -m scripts.bench`: MaskGIT generation on ONNX Runtime vs PyTorch eager
(parity checked before timing), and ONNX Runtime's fused attention op vs the form our export has."""
from __future__ import annotations

import tempfile

import numpy as np
import torch

from genie.model.stmaskgit import STMaskGIT

from .harness import MID, TINY, compare, figures, generation_setup, greedy

ONNX_SIZES = {"tiny": TINY, "tiny_s16": {**TINY, "S": 16}, "mid": MID}


def onnx_parity(model: STMaskGIT, ort_model, prompt: torch.Tensor, new: int) -> dict:
    """Checked before timing: full-graph and cached-step logits within 1e-4 of PyTorch's, identical greedy tokens."""
    from genie.decoding import generate

    with torch.no_grad():
        expected = model.compute_logits(prompt)
        cache, ort_cache = model.new_kv_cache(), ort_model.new_kv_cache()
        step = (model.compute_logits_cached(prompt, cache, commit=1) -
                ort_model.compute_logits_cached(prompt, ort_cache, commit=1)).abs().max().item()
        tokens, logits = generate(model, prompt, new, greedy(2))
    full = (ort_model.compute_logits(prompt) - expected).abs().max().item()
    ort_tokens, ort_logits = generate(ort_model, prompt, new, greedy(2))
    parity = {"max_abs_logit_diff_full": full, "max_abs_logit_diff_cached_step": step,
              "max_abs_logit_diff_generation": (ort_logits - logits).abs().max().item(),
              "identical_greedy_tokens": bool(torch.equal(ort_tokens, tokens))}
    assert max(full, step, parity["max_abs_logit_diff_generation"]) <= 1e-4 and parity["identical_greedy_tokens"], parity
    return parity


def bench_onnx(smoke: bool, rounds: int) -> list[dict]:
    """MaskGIT generation (8 prompt -> 8 new frames, KV cache) on ONNX Runtime vs PyTorch eager, the same
    loop, CPU, the same number of threads; parity checked first."""
    from genie.decoding import generate
    from genie.export.onnx_export import export_onnx
    from genie.export.ort_backend import OnnxRuntimeModel

    results = []
    for size, spec in ONNX_SIZES.items():
        model, prompt, new = generation_setup(spec, smoke)
        model = model.cpu()
        prompt = prompt.cpu()
        with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as old_folder:
            export_onnx(model, folder)
            ort_model = OnnxRuntimeModel(folder, threads=torch.get_num_threads())
            parity = onnx_parity(model, ort_model, prompt, new)
            export_onnx(model, old_folder, exporter="torchscript")  # the exporter before the dynamo one
            old_model = OnnxRuntimeModel(old_folder, threads=torch.get_num_threads())
            old_parity = onnx_parity(model, old_model, prompt, new)
            with torch.no_grad():
                timing = compare(lambda: generate(ort_model, prompt, new, greedy(2)),
                                 lambda: generate(old_model, prompt, new, greedy(2)), rounds)
            results.append({"benchmark": f"onnx_exporter_{size}_2steps", "unit": "s/frame", "S": model.config.S,
                            **figures(timing, new), "torchscript_parity": old_parity,
                            "note": "ours = ONNX Runtime on the dynamo export, naive = on the TorchScript export"})
            for steps in (2, 8):
                cfg = greedy(steps)
                with torch.no_grad():
                    timing = compare(lambda c=cfg: generate(ort_model, prompt, new, c),
                                     lambda c=cfg: generate(model, prompt, new, c), rounds)
                results.append({"benchmark": f"onnxruntime_generation_{size}_{steps}steps", "unit": "s/frame",
                                "layers": model.config.num_layers, "d_model": model.config.d_model,
                                "S": model.config.S, "prompt_frames": prompt.shape[1], "new_frames": new,
                                **figures(timing, new), **parity,
                                "note": "ours = ONNX Runtime, naive = PyTorch eager (KV cache on both)"})
    return results


def _ort_attention_session(fused: bool, heads: int, head_dim: int):
    """One spatial attention as an ONNX graph from q, k, v (batch, tokens, heads * head_dim) to the output in
    the same layout: ONNX Runtime's contrib MultiHeadAttention (whose CPU kernel may run MLAS flash attention
    when it gets no mask and no cache), or the form our export has, heads split by Reshape + Transpose, then
    MatMul, Softmax, MatMul and the heads merged again."""
    import onnxruntime
    from onnx import TensorProto, helper

    from genie.export.ort_backend import session_options

    def const(name, values, dtype=TensorProto.INT64):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, dtype, [len(values)], values))

    if fused:
        nodes = [helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["out"], domain="com.microsoft",
                                  num_heads=heads)]
    else:
        split = [helper.make_node("Reshape", [t, "heads_shape"], [f"{t}_heads"]) for t in "qkv"]
        nodes = [const("heads_shape", [0, 0, heads, head_dim]), const("merged_shape", [0, 0, heads * head_dim]),
                 const("scale", [head_dim ** -0.5], TensorProto.FLOAT), *split,
                 helper.make_node("Transpose", ["q_heads"], ["q_t"], perm=[0, 2, 1, 3]),
                 helper.make_node("Transpose", ["k_heads"], ["k_t"], perm=[0, 2, 3, 1]),
                 helper.make_node("Transpose", ["v_heads"], ["v_t"], perm=[0, 2, 1, 3]),
                 helper.make_node("MatMul", ["q_t", "k_t"], ["scores"]),
                 helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
                 helper.make_node("Softmax", ["scaled"], ["weights"], axis=-1),
                 helper.make_node("MatMul", ["weights", "v_t"], ["per_head"]),
                 helper.make_node("Transpose", ["per_head"], ["per_token"], perm=[0, 2, 1, 3]),
                 helper.make_node("Reshape", ["per_token", "merged_shape"], ["out"])]
    graph = helper.make_graph(nodes, "attention", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                                                   for n in "qkv"],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 9  # what this onnxruntime reads
    return onnxruntime.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


def bench_ort_attention(smoke: bool, rounds: int) -> list[dict]:
    """Is the attention "in the form ONNX Runtime fuses" faster? The spatial attention of one cached step of
    the tiny and mid models (one new frame of 256 tokens; tiny at batch 2, as in bench_onnx) through ONNX
    Runtime's fused contrib op vs the MatMul/Softmax/MatMul form, same inputs, outputs checked first."""
    results = []
    for size, spec, batch in (("tiny", TINY, 2), ("mid", MID, 1)):
        heads, head_dim, tokens = spec["num_heads"], spec["d_model"] // spec["num_heads"], 16 if smoke else spec["S"]
        rng = np.random.default_rng(0)
        inputs = {name: rng.standard_normal((batch, tokens, heads * head_dim), dtype=np.float32) for name in "qkv"}
        fused, plain = _ort_attention_session(True, heads, head_dim), _ort_attention_session(False, heads, head_dim)
        difference = float(np.abs(fused.run(None, inputs)[0] - plain.run(None, inputs)[0]).max())
        assert difference <= 1e-5, difference
        calls = 5 if smoke else 50
        timing = compare(lambda: [fused.run(None, inputs) for _ in range(calls)],
                         lambda: [plain.run(None, inputs) for _ in range(calls)], rounds)
        results.append({"benchmark": f"ort_attention_{size}", "unit": "s/call", "batch": batch, "heads": heads,
                        "tokens": tokens, **figures(timing, calls), "max_abs_diff": difference,
                        "note": "ours = contrib MultiHeadAttention, naive = Reshape/Transpose, MatMul, Softmax, MatMul"})
    return results
