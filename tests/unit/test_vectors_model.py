"""Known answers for the converted model: reference pass, published figures, int8, cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest
from safetensors.numpy import load_file

from etld.vectors import convert, reference
from etld.vectors.embedder import Embedder, cosine
from etld.vectors.model import (
    DIMENSIONS,
    ModelUnavailable,
    check_model_id,
    load_tokenizer,
    locate,
    sha256_file,
)
from tests.support.vectors import load_embedder, model_cache_dir

SENTENCES = [
    "The login page crashes when the password field is empty.",
    "Users cannot sign in if they leave the password blank.",
    "Quarterly revenue grew by twelve percent.",
    "Refactor the billing module",
    "A much longer sentence about deploying the payment service to the new cluster "
    "after the database migration has finished and the caches are warm again.",
]


@pytest.fixture(scope="module")
def fp32() -> Embedder:
    return load_embedder("fp32")


def test_graph_matches_a_plain_numpy_forward_pass(fp32: Embedder) -> None:
    weights = load_file(str(locate().weights))
    inputs = fp32.tokenize(SENTENCES)
    assert inputs["input_ids"].shape[0] == len(SENTENCES)
    want = reference.forward(weights, inputs["input_ids"], inputs["attention_mask"])
    got = fp32.run(inputs)
    assert got.shape == (len(SENTENCES), DIMENSIONS)
    assert float(np.abs(got - want).max()) < 1e-5


def test_published_similarities_of_all_minilm_l6_v2(fp32: Embedder) -> None:
    # The figures sentence-transformers documents for this model and these sentences.
    vectors = fp32.embed(
        ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    )
    sims = vectors @ vectors.T
    assert sims[0, 1] == pytest.approx(0.6660, abs=1e-3)
    assert sims[0, 2] == pytest.approx(0.1046, abs=1e-3)
    assert sims[1, 2] == pytest.approx(0.1411, abs=1e-3)


def test_unit_length_and_similar_much_closer_than_unrelated(fp32: Embedder) -> None:
    v = fp32.embed(SENTENCES)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    similar, unrelated = cosine(v[0], v[1]), cosine(v[0], v[2])
    assert similar > 0.6
    assert unrelated < 0.2
    assert similar - unrelated > 0.4


def test_padding_does_not_change_a_vector(fp32: Embedder) -> None:
    alone = fp32.embed([SENTENCES[3]])[0]
    padded = fp32.embed(SENTENCES)[3]  # batched with a long sentence: many pad tokens
    assert float(np.abs(alone - padded).max()) < 1e-5


def test_batches_split_by_batch_size(fp32: Embedder) -> None:
    texts = [f"item number {n}" for n in range(37)]
    together = fp32.embed(texts)
    assert together.shape == (37, DIMENSIONS)
    assert float(np.abs(together[20] - fp32.embed([texts[20]])[0]).max()) < 1e-5
    assert fp32.embed([]).shape == (0, DIMENSIONS)


def test_tokenizer_truncates_at_max_length_and_pads_dynamically() -> None:
    tokenizer = load_tokenizer(locate().tokenizer, 256)
    long, short = tokenizer.encode_batch(["word " * 600, "hi"])
    assert len(long.ids) == 256  # the shipped file truncates at 128
    assert sum(short.attention_mask) == 3  # [CLS] hi [SEP]
    short_only = tokenizer.encode_batch(["hi", "hello there"])
    assert len(short_only[0].ids) == 4  # padded to the batch's longest, not to 128
    with pytest.raises(ModelUnavailable):
        load_tokenizer(locate().tokenizer, 1024)


def test_int8_stays_close_to_fp32_and_is_a_distinct_variant(fp32: Embedder) -> None:
    int8 = load_embedder("int8")
    a, b = int8.embed(SENTENCES), fp32.embed(SENTENCES)
    assert min(cosine(x, y) for x, y in zip(a, b, strict=True)) >= 0.98
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert int8.tag != fp32.tag
    assert int8.tag.endswith("_int8")


def test_cache_manifest_records_the_hashes_and_checks() -> None:
    directory = convert.cache_directory(model_cache_dir())
    manifest = orjson.loads((directory / "manifest.json").read_bytes())
    assert manifest["weights_sha256"] == sha256_file(locate().weights)
    fp32 = manifest["graphs"]["fp32"]
    assert fp32["sha256"] == sha256_file(directory / "model-fp32.onnx")
    assert fp32["max_abs_diff"] < convert.FP32_TOLERANCE


def test_a_cached_graph_is_reused_and_a_damaged_one_rebuilt(tmp_path: Path) -> None:
    source = convert.cache_directory(model_cache_dir())
    target = convert.cache_directory(tmp_path)
    target.mkdir(parents=True)
    for name in ("manifest.json", "model-fp32.onnx"):
        shutil.copy2(source / name, target / name)
    graph = target / "model-fp32.onnx"
    stamp = graph.stat().st_mtime_ns
    assert convert.ensure_model(tmp_path, "fp32") == graph
    assert graph.stat().st_mtime_ns == stamp  # verified by hash, not rebuilt
    with graph.open("r+b") as handle:  # flip bytes inside the weights
        handle.seek(graph.stat().st_size // 2)
        handle.write(b"\x00" * 64)
    assert convert.ensure_model(tmp_path, "fp32") == graph
    assert sha256_file(graph) == sha256_file(source / "model-fp32.onnx")


def test_only_the_packaged_model_and_known_variants() -> None:
    with pytest.raises(ModelUnavailable):
        check_model_id("all-mpnet-base-v2")
    with pytest.raises(ModelUnavailable):
        convert.ensure_model(model_cache_dir(), "fp16")


def test_convert_command_reports_the_cached_graphs(capsys: pytest.CaptureFixture[str]) -> None:
    assert convert.main(["--cache-dir", str(model_cache_dir()), "--variant", "all"]) == 0
    out = capsys.readouterr().out
    assert "fp32: " in out
    assert "int8: " in out
    assert "min_cosine_to_fp32" in out
