"""Texts in, unit vectors out: the converted ONNX graph under onnxruntime, plus the tokenizer.

Inference is CPU-bound and holds no event-loop state, so `embed_async` runs it on one
dedicated thread: the daemon keeps serving messages, web requests and heartbeats while
a batch is computed, and batches from several consumers queue up instead of fighting
for the same two cores.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from etld.config import EmbeddingsConfig
from etld.vectors.convert import ensure_model
from etld.vectors.model import DIMENSIONS, check_model_id, load_tokenizer, locate, model_slug

Vectors = NDArray[np.float32]

# The tokenizers library tokenizes a batch on its own thread pool, whose idle workers spin
# for a while and take CPU from inference on a small machine; batches of 16 short texts
# gain nothing from it. An explicit setting in the environment still wins.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Embedder:
    """One loaded model variant; `embed` is thread-safe, `embed_async` keeps the loop free."""

    def __init__(
        self,
        graph: Path,
        tokenizer_path: Path,
        *,
        model_id: str,
        variant: str,
        batch_size: int = 16,
        max_length: int = 256,
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.tokenizer = load_tokenizer(tokenizer_path, max_length)
        self.model_id = model_id
        self.variant = variant
        self.batch_size = batch_size
        self.dimensions = DIMENSIONS
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="etld-embed")

    @classmethod
    def from_config(cls, config: EmbeddingsConfig) -> Embedder:
        """Locate and verify the packaged model, convert it if needed, and load it."""
        check_model_id(config.model)
        files = locate(verify=True)
        graph = ensure_model(config.cache_dir, config.variant, files)
        return cls(
            graph,
            files.tokenizer,
            model_id=config.model,
            variant=config.variant,
            batch_size=config.batch_size,
            max_length=config.max_length,
            threads=config.threads,
        )

    @property
    def tag(self) -> str:
        """Model and variant as used in collection names: `all_minilm_l6_v2_fp32`."""
        return f"{model_slug(self.model_id)}_{self.variant}"

    def tokenize(self, texts: Sequence[str]) -> dict[str, NDArray[np.int64]]:
        encodings = self.tokenizer.encode_batch(list(texts))
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }

    def run(self, inputs: dict[str, NDArray[np.int64]]) -> Vectors:
        (out,) = self.session.run(None, inputs)
        return np.asarray(out, dtype=np.float32)

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Unit vectors, one row per text, computed in batches of `batch_size`."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        parts = [
            self.run(self.tokenize(texts[start : start + self.batch_size]))
            for start in range(0, len(texts), self.batch_size)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def embed_async(self, texts: Sequence[str]) -> Vectors:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.embed, list(texts))

    async def embed_one(self, text: str) -> list[float]:
        vectors = await self.embed_async([text])
        return [float(v) for v in vectors[0]]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        return f"Embedder({self.model_id}, {self.variant})"


def cosine(a: Any, b: Any) -> float:
    """Cosine of two vectors (the model's are unit length, so this is their dot product)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.linalg.norm(x) * np.linalg.norm(y)), 1e-12)
    return float(x @ y) / scale
