"""Sentence-embedding scorer for multiple-choice prompts, and its blend with TF-IDF.

- ``OptionEmbeddingScorer``: one logistic regression per model over the embeddings of the
  whole prompt, of the question stem and of the mean answer option, plus features that
  carry over to unseen subjects: how alike the answer options are to each other and to
  the stem (options that are near-paraphrases of each other mark harder questions), and
  the shape features of ``wattserve.route.scorers.text_features``. Prompts that are not
  in the ``question / A. / B. / ... / Answer:`` layout are embedded whole and get zero
  option features.
- ``BlendScorer``: the weighted mean of two scorers' predicted qualities (by default 0.6
  TF-IDF + 0.4 embeddings: ``make_scorer("tfidf-embed")``).
- ``CachedEmbedder``: embeddings kept in one ``.npz`` file per embedder in a folder, keyed
  by the SHA-256 of the text, so retraining and re-evaluating on the same prompts embeds
  each prompt once. The scorers use it when ``WATTSERVE_EMBED_CACHE`` names a folder.

The embedder is all-MiniLM-L6-v2 from the ``semantic`` extra (``wattserve.cache.semantic``),
loaded offline on first use and never pickled with the scorer.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wattserve.errors import ConfigError
from wattserve.route.scorers import TfidfScorer, _PerModelLogistic, text_features

EMBED_CACHE_ENV = "WATTSERVE_EMBED_CACHE"
_CHOICES = re.compile(r"^(.*?)((?:\n[A-J]\. [^\n]*)+)\n?Answer:\s*$", re.S)
N_OPTION_FEATURES = 7


def split_choices(text: str) -> tuple[str, list[str]]:
    """(question stem, answer options) of an ``A. ...`` multiple-choice prompt; the whole
    text and no options when the prompt is not in that layout."""
    m = _CHOICES.match(text)
    if m is None:
        return text, []
    options = [line[3:] for line in m.group(2).split("\n") if line]
    return m.group(1), options


class CachedEmbedder:
    """Another embedder's vectors, stored on disk by text hash (``<folder>/<name>.npz``)."""

    def __init__(self, inner: Any, folder: str | Path) -> None:
        self.inner = inner
        self.name = f"cached-{inner.name}"
        self.path = Path(folder) / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', inner.name)}.npz"
        self._vecs: dict[str, np.ndarray] = {}
        if self.path.is_file():
            with np.load(self.path) as z:
                self._vecs = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
        self.misses = 0

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self.key(t) for t in texts]
        todo = sorted(
            {k: t for k, t in zip(keys, texts, strict=True) if k not in self._vecs}.items()
        )
        if todo:
            self.misses += len(todo)
            new = np.asarray(self.inner.embed([t for _, t in todo]), dtype=np.float32)
            self._vecs.update(zip([k for k, _ in todo], new, strict=True))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp.npz")
            np.savez(
                tmp, keys=np.array(list(self._vecs)), vectors=np.stack(list(self._vecs.values()))
            )
            os.replace(tmp, self.path)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vecs[k] for k in keys])


def default_scorer_embedder() -> Any:
    """MiniLM (offline), behind the disk cache when ``WATTSERVE_EMBED_CACHE`` is set."""
    from wattserve.cache.semantic import default_embedder

    inner = default_embedder()
    folder = os.environ.get(EMBED_CACHE_ENV)
    return CachedEmbedder(inner, folder) if folder else inner


def option_features(stem: np.ndarray, options: list[np.ndarray]) -> np.ndarray:
    """Similarity features of one prompt: stem-option cosine (max, margin of the best over
    the second, spread, mean) and option-option cosine (mean, max, min). Zeros without at
    least two options."""
    if len(options) < 2:
        return np.zeros(N_OPTION_FEATURES)
    opts = np.stack(options)
    qs = np.sort(opts @ stem)
    oo = opts @ opts.T
    pairs = oo[np.triu_indices(len(options), 1)]
    return np.array(
        [qs[-1], qs[-1] - qs[-2], qs.std(), qs.mean(), pairs.mean(), pairs.max(), pairs.min()]
    )


class OptionEmbeddingScorer:
    """Logistic regression per model on prompt, stem and option embeddings + features."""

    name = "embed-options"

    def __init__(self, embedder: Any = None, C: float = 0.1, feature_weight: float = 0.3) -> None:
        if C <= 0:
            raise ConfigError("C must be positive")
        self.embedder = embedder
        self.C = C
        self.feature_weight = feature_weight  # scale of the standardised features
        self.models: tuple[str, ...] = ()
        self._lr = _PerModelLogistic(C)
        self._scale: tuple[np.ndarray, np.ndarray] | None = None

    def features(self, texts: Sequence[str], fit: bool = False) -> np.ndarray:
        if self.embedder is None:
            self.embedder = default_scorer_embedder()
        texts = list(texts)
        parts = [split_choices(t) for t in texts]
        flat = texts + [stem for stem, _ in parts] + [o for _, opts in parts for o in opts]
        vecs = np.asarray(self.embedder.embed(flat), dtype=float)
        n = len(texts)
        whole, stems = vecs[:n], vecs[n : 2 * n]
        at = 2 * n
        mean_opt = np.zeros_like(whole)
        sims = np.zeros((n, N_OPTION_FEATURES))
        for i, (_, opts) in enumerate(parts):
            ov = list(vecs[at : at + len(opts)])
            at += len(opts)
            if ov:
                mean_opt[i] = np.mean(ov, axis=0)
            sims[i] = option_features(stems[i], ov)
        stem_whole = np.einsum("nd,nd->n", stems, whole)[:, None]  # how much the options add
        extra = np.hstack([sims, stem_whole, text_features(texts)])
        if fit:
            self._scale = (extra.mean(axis=0), extra.std(axis=0) + 1e-9)
        if self._scale is None:
            raise ConfigError("scorer is not trained")
        extra = self.feature_weight * (extra - self._scale[0]) / self._scale[1]
        return np.hstack([whole, stems, mean_opt, extra])

    def fit(
        self, texts: Sequence[str], labels: np.ndarray, models: Sequence[str]
    ) -> OptionEmbeddingScorer:
        if len(texts) < 10:
            raise ConfigError("need at least 10 labelled prompts to train a scorer")
        self.models = tuple(models)
        self._lr.fit(self.features(texts, fit=True), labels)
        return self

    def predict_quality(self, texts: Sequence[str]) -> np.ndarray:
        if self._scale is None:
            raise ConfigError("scorer is not trained")
        texts = list(texts)
        return self._lr.predict(self.features(texts), len(texts))

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["embedder"] = None  # reloaded offline on first use
        return d


class BlendScorer:
    """Weighted mean of the predicted qualities of several scorers trained on the same data."""

    name = "blend"

    def __init__(self, parts: Sequence[Any], weights: Sequence[float]) -> None:
        if len(parts) != len(weights) or not parts:
            raise ConfigError("a blend needs one weight per scorer")
        w = np.asarray(weights, dtype=float)
        if (w < 0).any() or w.sum() <= 0:
            raise ConfigError("blend weights must be non-negative and not all zero")
        self.parts = list(parts)
        self.weights = w / w.sum()
        self.models: tuple[str, ...] = ()

    def fit(self, texts: Sequence[str], labels: np.ndarray, models: Sequence[str]) -> BlendScorer:
        for p in self.parts:
            p.fit(texts, labels, models)
        self.models = tuple(models)
        return self

    def predict_quality(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        qs = [np.asarray(p.predict_quality(texts), dtype=float) for p in self.parts]
        return np.tensordot(self.weights, np.stack(qs), axes=1)


def tfidf_embed(
    C: float = 0.3, embed_C: float = 0.1, embed_weight: float = 0.4, embedder: Any = None
) -> BlendScorer:
    """TF-IDF + shape features (``C``) blended with ``OptionEmbeddingScorer`` (``embed_C``)."""
    if not 0 <= embed_weight <= 1:
        raise ConfigError("embed_weight must be in [0, 1]")
    blend = BlendScorer(
        [TfidfScorer(C=C), OptionEmbeddingScorer(embedder=embedder, C=embed_C)],
        [1.0 - embed_weight, embed_weight],
    )
    blend.name = "tfidf-embed"
    return blend
