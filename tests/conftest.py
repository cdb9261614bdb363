"""Shared test fixtures. Area-specific fixtures live in the area's test files."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        import pynvml
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return False
    return n > 0


def pytest_collection_modifyitems(config, items):
    if os.environ.get("WATTSERVE_FORCE_GPU_TESTS") or _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- engines fixtures (lazy: only tests that ask for them pay) -----------------------------
@pytest.fixture
def mock_server():
    """URL (``http://127.0.0.1:PORT/v1``) of a fresh mock OpenAI server in a background thread."""
    from wattserve.engines.mock_server import MockServer

    with MockServer() as srv:
        yield srv.url


@pytest.fixture(scope="session")
def local_engine():
    """The embedded smollm2-135m engine on 1 thread, loaded once per session (skips if missing)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from wattserve.engines.local import LocalEngine
    from wattserve.errors import EngineUnavailable

    engine = LocalEngine("smollm2-135m", threads=1)
    try:
        engine.load()
    except EngineUnavailable as exc:
        pytest.skip(f"embedded model unavailable: {exc}")
    yield engine
    engine.close()
