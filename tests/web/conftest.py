"""A real uvicorn server on a free localhost port, serving the tiny model, for the web tests."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import uvicorn
from fastapi import FastAPI

from tdanet.separate import Separator
from tdanet.web import WebSettings, create_app

# Limits small enough to exceed cheaply in tests.
MAX_UPLOAD_BYTES = 400_000
MAX_DURATION_S = 3.0


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def mixture(seconds: float, sample_rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Two amplitude-modulated tones plus a little noise: float32 (frames, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    voice_a = np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    voice_b = np.sin(2 * np.pi * 330 * t) * (0.5 + 0.5 * np.cos(2 * np.pi * 2 * t))
    mono = 0.3 * (voice_a + voice_b) + 0.01 * rng.standard_normal(t.shape)
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def audio_bytes(
    seconds: float,
    sample_rate: int = 16000,
    channels: int = 1,
    format: str = "WAV",
    subtype: str | None = None,
) -> bytes:
    """An encoded recording of :func:`mixture`."""
    buffer = io.BytesIO()
    sf.write(
        buffer, mixture(seconds, sample_rate, channels), sample_rate, format=format, subtype=subtype
    )
    return buffer.getvalue()


@pytest.fixture(scope="session")
def separator() -> Separator:
    """The tiny preset with fixed random weights: fast, and enough to exercise the plumbing."""
    return Separator(model="tdanet-tiny", device="cpu")


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path / "work"


@pytest.fixture
def settings(work_dir: Path) -> WebSettings:
    return WebSettings(
        max_upload_bytes=MAX_UPLOAD_BYTES,
        max_duration_s=MAX_DURATION_S,
        max_concurrent=1,
        max_queue=2,
        work_dir=work_dir,
        model_name="tdanet-tiny",
    )


@pytest.fixture
def server(separator: Separator, settings: WebSettings) -> Iterator[str]:
    """Base URL of a running server with the test limits."""
    with serve(create_app(separator, settings)) as url:
        yield url
