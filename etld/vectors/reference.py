"""A plain numpy forward pass of the BERT encoder: the yardstick for the ONNX graph.

Written for clarity, not speed: the converter runs it on a few sentences to check the
graph it built, and the tests use it as the known answer. Token type ids are all zero
(single sentences), as in the graph.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

HEADS = 12
LAYERS = 6
LAYER_NORM_EPS = 1e-12
MASKED = -1e4  # added to attention scores of padding: exp() of it is 0 in float32

Weights = dict[str, NDArray[np.float32]]
_erf = np.frompyfunc(math.erf, 1, 1)


def layer_norm(
    x: NDArray[np.float64], gamma: NDArray[np.float64], beta: NDArray[np.float64]
) -> NDArray[np.float64]:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    out: NDArray[np.float64] = (x - mean) / np.sqrt(var + LAYER_NORM_EPS) * gamma + beta
    return out


def gelu(x: NDArray[np.float64]) -> NDArray[np.float64]:
    erf = np.asarray(_erf(x / math.sqrt(2.0)), dtype=np.float64)
    return 0.5 * x * (1.0 + erf)


def softmax(x: NDArray[np.float64]) -> NDArray[np.float64]:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)  # type: ignore[no-any-return]


def forward(
    weights: Weights, input_ids: NDArray[np.int64], attention_mask: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Sentence embeddings: encoder, mean pooling over the mask, L2 normalisation."""
    w = {k: v.astype(np.float64) for k, v in weights.items() if v.dtype == np.float32}
    batch, length = input_ids.shape
    hidden = w["embeddings.word_embeddings.weight"].shape[1]
    head = hidden // HEADS
    x = (
        w["embeddings.word_embeddings.weight"][input_ids]
        + w["embeddings.position_embeddings.weight"][:length]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    mask = attention_mask.astype(np.float64)
    bias = (1.0 - mask)[:, None, None, :] * MASKED
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."

        def dense(t: NDArray[np.float64], name: str, p: str = p) -> NDArray[np.float64]:
            out: NDArray[np.float64] = t @ w[p + name + ".weight"].T + w[p + name + ".bias"]
            return out

        def heads(t: NDArray[np.float64]) -> NDArray[np.float64]:
            return t.reshape(batch, length, HEADS, head).transpose(0, 2, 1, 3)

        q = heads(dense(x, "attention.self.query"))
        k = heads(dense(x, "attention.self.key"))
        v = heads(dense(x, "attention.self.value"))
        probs = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(head) + bias)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = layer_norm(
            dense(context, "attention.output.dense") + x,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        ffn = dense(gelu(dense(x, "intermediate.dense")), "output.dense")
        x = layer_norm(ffn + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
    pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1)[:, None], 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)  # type: ignore[no-any-return]
