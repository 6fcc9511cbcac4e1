"""Convert the packaged safetensors weights into an ONNX graph, once, cached by their hash.

The graph is the whole sentence encoder: token embeddings (word + position + token type
0, then LayerNorm), 6 BERT layers (12-head self-attention and a GELU feed-forward, each
with a residual LayerNorm), mean pooling over the attention mask and L2 normalisation.
Inputs `input_ids` and `attention_mask` (int64, batch x tokens, both dynamic); output
`embedding` (float32, batch x 384, unit length).

Before a file is cached it is checked: the fp32 graph must match a plain numpy forward
pass of the same weights, the int8 graph (onnxruntime dynamic quantisation, per channel)
must stay close to fp32. The cache directory holds a manifest with the hashes of the
source files and of each graph; `ensure_model` re-checks them at every load and rebuilds
what does not match. Run as `python -m etld.vectors.convert` to build ahead of time.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import orjson
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

from etld.vectors import reference
from etld.vectors.model import (
    MODEL_ID,
    TOKENIZER_SHA256,
    VARIANTS,
    WEIGHTS_SHA256,
    ModelFiles,
    ModelUnavailable,
    locate,
    sha256_file,
)

CONVERTER_VERSION = 1  # bump when the graph changes: older caches are then rebuilt
OPSET = 17  # LayerNormalization
FP32_TOLERANCE = 1e-4  # max abs difference to the numpy reference, per component
INT8_MIN_COSINE = 0.98
CHECK_SENTENCES = (
    "The login page crashes when the password field is empty.",
    "Users cannot sign in if they leave the password blank.",
    "Quarterly revenue grew by twelve percent.",
    "Add dark mode to the settings screen",
)


class _Graph:
    """A tiny ONNX graph builder: every call adds one node and returns its output name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value: NDArray[Any]) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        self._count += 1
        out = f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def _f32(value: NDArray[Any]) -> NDArray[np.float32]:
    return np.ascontiguousarray(value, dtype=np.float32)


def build_graph(weights: dict[str, NDArray[Any]]) -> onnx.ModelProto:
    g = _Graph()
    hidden = int(weights["embeddings.word_embeddings.weight"].shape[1])
    head = hidden // reference.HEADS
    ids, mask = "input_ids", "attention_mask"

    def dense(x: str, prefix: str) -> str:
        # Weights stored transposed (in x out) so MatMul takes them as they are, which is
        # also the layout dynamic quantisation expects for per-channel scales.
        w = g.const(prefix + ".weight", _f32(weights[prefix + ".weight"].T))
        b = g.const(prefix + ".bias", _f32(weights[prefix + ".bias"]))
        return g.op("Add", g.op("MatMul", x, w), b)

    def norm(x: str, prefix: str) -> str:
        gamma = g.const(prefix + ".weight", _f32(weights[prefix + ".weight"]))
        beta = g.const(prefix + ".bias", _f32(weights[prefix + ".bias"]))
        return g.op("LayerNormalization", x, gamma, beta, axis=-1, epsilon=reference.LAYER_NORM_EPS)

    def i64(name: str, *values: int) -> str:
        return g.const(name, np.array(values, dtype=np.int64))

    # Scalars (0-d) for Range, which takes no 1-element tensors.
    zero = g.const("c_zero", np.array(0, dtype=np.int64))
    one = g.const("c_one", np.array(1, dtype=np.int64))
    axis1, axis_last = i64("c_axis1", 1), i64("c_axis_last", -1)
    split_heads = i64("c_split_heads", 0, 0, reference.HEADS, head)
    merge_heads = i64("c_merge_heads", 0, 0, hidden)

    # Embeddings: word + position (0..S-1) + token type 0, then LayerNorm.
    words = g.op(
        "Gather",
        g.const(
            "embeddings.word_embeddings.weight", _f32(weights["embeddings.word_embeddings.weight"])
        ),
        ids,
        axis=0,
    )
    length = g.op("Gather", g.op("Shape", ids), one, axis=0)
    positions = g.op("Range", zero, length, one)
    pos_table = g.const(
        "embeddings.position_embeddings.weight",
        _f32(weights["embeddings.position_embeddings.weight"]),
    )
    type0 = g.const(
        "embeddings.token_type_embeddings.row0",
        _f32(weights["embeddings.token_type_embeddings.weight"][0]),
    )
    x = g.op("Add", g.op("Add", words, g.op("Gather", pos_table, positions, axis=0)), type0)
    x = norm(x, "embeddings.LayerNorm")

    # Padding gets a large negative score bias: (1 - mask) * -1e4, shaped B x 1 x 1 x S.
    mask_f = g.op("Cast", mask, to=TensorProto.FLOAT)
    keep = g.op("Sub", g.const("c_one_f", np.array(1.0, np.float32)), mask_f)
    bias = g.op("Mul", keep, g.const("c_masked", np.array(reference.MASKED, np.float32)))
    bias = g.op("Unsqueeze", bias, i64("c_axes12", 1, 2))
    scale = g.const("c_scale", np.array(1.0 / math.sqrt(head), np.float32))

    for layer in range(reference.LAYERS):
        p = f"encoder.layer.{layer}."
        q = g.op(
            "Transpose",
            g.op("Reshape", dense(x, p + "attention.self.query"), split_heads),
            perm=[0, 2, 1, 3],
        )
        k = g.op(
            "Transpose",
            g.op("Reshape", dense(x, p + "attention.self.key"), split_heads),
            perm=[0, 2, 3, 1],
        )
        v = g.op(
            "Transpose",
            g.op("Reshape", dense(x, p + "attention.self.value"), split_heads),
            perm=[0, 2, 1, 3],
        )
        scores = g.op("Add", g.op("Mul", g.op("MatMul", q, k), scale), bias)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merge_heads)
        x = norm(
            g.op("Add", dense(context, p + "attention.output.dense"), x),
            p + "attention.output.LayerNorm",
        )
        h = dense(x, p + "intermediate.dense")
        # Exact GELU: 0.5 · h · (1 + erf(h / √2)).
        erf = g.op(
            "Erf", g.op("Div", h, g.const(f"c_sqrt2_{layer}", np.array(math.sqrt(2.0), np.float32)))
        )
        h = g.op(
            "Mul",
            g.op("Mul", h, g.op("Add", erf, g.const(f"c_one_{layer}", np.array(1.0, np.float32)))),
            g.const(f"c_half_{layer}", np.array(0.5, np.float32)),
        )
        x = norm(g.op("Add", dense(h, p + "output.dense"), x), p + "output.LayerNorm")

    # Mean pooling over real tokens, then unit length.
    mask3 = g.op("Unsqueeze", mask_f, axis_last)
    summed = g.op("ReduceSum", g.op("Mul", x, mask3), axis1, keepdims=0)
    counts = g.op(
        "Max",
        g.op("ReduceSum", mask3, axis1, keepdims=0),
        g.const("c_min_count", np.array(1e-9, np.float32)),
    )
    pooled = g.op("Div", summed, counts)
    norms = g.op(
        "Max",
        # ReduceL2 takes its axes as an attribute until opset 18 (ReduceSum: an input).
        g.op("ReduceL2", pooled, axes=[-1], keepdims=1),
        g.const("c_min_norm", np.array(1e-12, np.float32)),
    )
    g.nodes.append(helper.make_node("Div", [pooled, norms], ["embedding"]))

    graph = helper.make_graph(
        g.nodes,
        "minilm_sentence_encoder",
        [
            helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="etld"
    )
    model.ir_version = 8  # the newest IR every supported onnxruntime reads
    model.doc_string = f"{MODEL_ID} sentence encoder, converted by etld"
    onnx.checker.check_model(model)
    return model


# -- checks ---------------------------------------------------------------------------------


def _session(model: bytes | str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _check_inputs(files: ModelFiles) -> dict[str, NDArray[np.int64]]:
    from etld.vectors.model import load_tokenizer

    encodings = load_tokenizer(files.tokenizer, 256).encode_batch(list(CHECK_SENTENCES))
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }


def check_fp32(model: bytes | str, weights: dict[str, NDArray[Any]], files: ModelFiles) -> float:
    """Max abs difference between the graph and the numpy reference on the check sentences."""
    inputs = _check_inputs(files)
    (got,) = _session(model).run(None, inputs)
    want = reference.forward(weights, inputs["input_ids"], inputs["attention_mask"])
    return float(np.abs(got - want).max())


def check_int8(int8: str, fp32: str, files: ModelFiles) -> float:
    """Lowest cosine between int8 and fp32 embeddings of the check sentences."""
    inputs = _check_inputs(files)
    (a,) = _session(int8).run(None, inputs)
    (b,) = _session(fp32).run(None, inputs)
    return float((a * b).sum(axis=1).min())


# -- the cache ----------------------------------------------------------------------------


def cache_directory(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / f"{MODEL_ID}-{WEIGHTS_SHA256[:12]}-v{CONVERTER_VERSION}"


def graph_file(variant: str) -> str:
    return f"model-{variant}.onnx"


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # Several daemons may share a cache directory: one converts, the others wait.
    with (directory / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_manifest(directory: Path) -> dict[str, Any]:
    try:
        data = orjson.loads((directory / "manifest.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("weights_sha256") != WEIGHTS_SHA256:
        return {}
    return data


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cached(directory: Path, manifest: dict[str, Any], variant: str) -> Path | None:
    path = directory / graph_file(variant)
    entry = manifest.get("graphs", {}).get(variant)
    if not isinstance(entry, dict) or not path.is_file():
        return None
    return path if sha256_file(path) == entry.get("sha256") else None


def ensure_model(cache_dir: str | Path, variant: str, files: ModelFiles | None = None) -> Path:
    """The verified ONNX graph of `variant`, converted first when missing or damaged."""
    if variant not in VARIANTS:
        raise ModelUnavailable(f"embeddings.variant must be one of {', '.join(VARIANTS)}")
    files = files or locate(verify=True)
    directory = cache_directory(cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        manifest = _read_manifest(directory)
        found = _cached(directory, manifest, variant)
        if found is not None:
            return found
        manifest.setdefault("graphs", {})
        needed = ["fp32"] if variant == "fp32" else ["fp32", "int8"]
        for name in needed:
            if _cached(directory, manifest, name) is None:
                manifest["graphs"][name] = _build(directory, name, files)
        manifest.update(
            model=MODEL_ID,
            weights_sha256=WEIGHTS_SHA256,
            tokenizer_sha256=TOKENIZER_SHA256,
            converter_version=CONVERTER_VERSION,
        )
        _write_atomic(
            directory / "manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
        )
        return directory / graph_file(variant)


def _build(directory: Path, variant: str, files: ModelFiles) -> dict[str, Any]:
    target = directory / graph_file(variant)
    if variant == "fp32":
        weights = load_file(str(files.weights))
        data = build_graph(weights).SerializeToString()
        diff = check_fp32(data, weights, files)
        if diff > FP32_TOLERANCE:
            raise ModelUnavailable(f"converted graph differs from the reference by {diff:.2e}")
        _write_atomic(target, data)
        return {"sha256": sha256_file(target), "max_abs_diff": diff}
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = directory / graph_file("fp32")
    tmp = directory / (target.name + ".tmp")
    # The quantiser logs advice about pre-processing on the root logger; the result is
    # checked against fp32 below instead.
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(fp32, tmp, per_channel=True, weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    try:
        cosine = check_int8(str(tmp), str(fp32), files)
        if cosine < INT8_MIN_COSINE:
            raise ModelUnavailable(f"int8 graph too far from fp32 (cosine {cosine:.4f})")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return {"sha256": sha256_file(target), "min_cosine_to_fp32": cosine}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m etld.vectors.convert",
        description="Convert the packaged embedding model to ONNX (cached; checked).",
    )
    parser.add_argument("--config", help="etld.toml whose embeddings.cache_dir is used")
    parser.add_argument("--cache-dir", help="overrides embeddings.cache_dir")
    parser.add_argument("--variant", choices=(*VARIANTS, "all"), default=None)
    args = parser.parse_args(argv)
    from etld.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    cache_dir = args.cache_dir or config.embeddings.cache_dir
    variant = args.variant or config.embeddings.variant
    try:
        for name in VARIANTS if variant == "all" else (variant,):
            path = ensure_model(cache_dir, name)
            print(f"{name}: {path}")
    except ModelUnavailable as exc:
        print(f"etld: {exc}", file=sys.stderr)
        return 1
    manifest = _read_manifest(cache_directory(cache_dir))
    print(orjson.dumps(manifest.get("graphs", {}), option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
