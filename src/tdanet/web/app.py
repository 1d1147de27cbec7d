"""The FastAPI application: the single page, ``/api/separate``, ``/api/info``, ``/api/health``."""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from torch import nn

from .. import __version__
from ..audio import AudioInfo
from .errors import ApiError, ErrorResponse
from .queue import SeparationQueue
from .service import (
    Separated,
    SeparatorLike,
    check_upload,
    encode_wav,
    encode_zip,
    separate_upload,
    source_name,
)
from .settings import WebSettings
from .uploads import FILE_FIELD, receive_upload

STATIC_DIR = Path(__file__).parent / "static"
# Uploads in the working folder are named with this prefix and a random token.
UPLOAD_PREFIX = "upload-"
UPLOAD_NAME = re.compile(rf"{UPLOAD_PREFIX}[0-9a-f]{{32}}")
# The page loads nothing from elsewhere; audio players read blob: URLs made in the page.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Limits(BaseModel):
    """What the server accepts."""

    max_upload_bytes: int
    max_duration_s: float
    max_concurrent: int
    max_queue: int


class InfoResponse(BaseModel):
    """The model and the limits."""

    version: str
    model: str
    sample_rate: int = Field(description="rate the model works at, Hz (inputs are resampled)")
    num_sources: int
    limits: Limits
    requests_in_progress: int


class HealthResponse(BaseModel):
    """The server is up."""

    status: Literal["ok"]


class InputInfo(BaseModel):
    """The uploaded recording as decoded."""

    filename: str = Field(description="the client's file name, for display only")
    format: str
    subtype: str
    sample_rate: int
    channels: int
    duration_s: float


class AudioTrack(BaseModel):
    """One mono 16-bit PCM WAV file, base64-encoded."""

    name: str = Field(description="`speaker1`, `speaker2`, ... or `mixture`")
    wav_base64: str


class SeparationResponse(BaseModel):
    """The separated sources of one recording, at the recording's own sample rate."""

    model: str
    sample_rate: int
    num_sources: int
    duration_s: float
    processing_s: float = Field(description="seconds spent separating (not decoding/encoding)")
    input: InputInfo
    sources: list[AudioTrack]
    mixture: AudioTrack | None = Field(
        default=None, description="the mono mixture, when `mixture=true`"
    )


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries saying these statuses answer with an :class:`ErrorResponse`."""
    return {status: {"model": ErrorResponse} for status in statuses}


_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {
                        FILE_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "a recording in any format libsndfile reads "
                            "(WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, ...), any rate, any channels",
                        }
                    },
                }
            }
        },
    }
}


def create_app(
    separator: SeparatorLike | str | os.PathLike[str] | nn.Module,
    settings: WebSettings | None = None,
) -> FastAPI:
    """The web application serving ``separator``, with ``settings``' limits.

    ``separator`` is a :class:`tdanet.separate.Separator` (or any object with
    ``sample_rate``, ``num_sources`` and ``separate(waveform, sample_rate)``), a loaded
    model, or anything ``load_model`` accepts (preset, bundled name, checkpoint path, hub
    name); models are wrapped in a CPU ``Separator``.
    """
    settings = settings or WebSettings()
    if isinstance(separator, (str, os.PathLike, nn.Module)):
        from ..separate import Separator

        if isinstance(separator, nn.Module):
            model_name = settings.model_name or type(separator).__name__
            engine: SeparatorLike = Separator(model=separator, device="cpu")
        else:
            model_name = settings.model_name or os.fspath(separator)
            engine = Separator(model=os.fspath(separator), device="cpu")
    else:
        model_name = settings.model_name or type(separator).__name__
        engine = separator
    queue = SeparationQueue(settings.max_concurrent, settings.max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        work_dir, owned = _open_work_dir(settings.work_dir)
        app.state.work_dir = work_dir
        try:
            yield
        finally:
            if owned:
                shutil.rmtree(work_dir, ignore_errors=True)

    app = FastAPI(
        title="tdanet",
        version=__version__,
        summary="Separate the speakers of a recording with TDANet.",
        lifespan=lifespan,
        # The interactive docs pages load scripts from a CDN; the schema is at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.state.work_dir = None

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.response_body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = ErrorResponse(error=code, detail=str(exc.detail)).model_dump()
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'request'}: {err.get('msg')}"
            for err in exc.errors()
        )
        body = ErrorResponse(error="invalid_request", detail=detail).model_dump()
        return JSONResponse(body, status_code=422)

    # Starlette still re-raises the exception after this answer, so uvicorn logs its traceback.
    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        body = ErrorResponse(
            error="internal_error", detail="the server failed on this request; see its log"
        ).model_dump()
        return JSONResponse(body, status_code=500)

    app.add_middleware(SecurityHeaders)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/health", response_model=HealthResponse, tags=["service"])
    async def health() -> HealthResponse:
        """Liveness: the server answers."""
        return HealthResponse(status="ok")

    @app.get("/api/info", response_model=InfoResponse, tags=["service"])
    async def info() -> InfoResponse:
        """The model, its sample rate and number of sources, and the server's limits."""
        return InfoResponse(
            version=__version__,
            model=model_name,
            sample_rate=engine.sample_rate,
            num_sources=engine.num_sources,
            limits=Limits(
                max_upload_bytes=settings.max_upload_bytes,
                max_duration_s=settings.max_duration_s,
                max_concurrent=settings.max_concurrent,
                max_queue=settings.max_queue,
            ),
            requests_in_progress=queue.admitted,
        )

    @app.post(
        "/api/separate",
        tags=["separation"],
        response_model=SeparationResponse,
        responses={
            200: {
                "description": "JSON with one base64 WAV per source (`format=json`) or a zip "
                "of WAV files (`format=zip`)",
                "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            },
            **_error_responses(400, 413, 415, 422, 500, 503),
        },
        openapi_extra=_UPLOAD_BODY,
    )
    async def separate(
        request: Request,
        format: Literal["json", "zip"] = Query(
            "json", description="`json`: base64 WAVs in JSON; `zip`: a zip of WAV files"
        ),
        mixture: bool = Query(False, description="also return the mono mixture"),
    ) -> Any:
        """Separate the speakers of an uploaded recording (multipart field `file`).

        The file is checked by decoding it (not by its name or content type), must fit the
        size and duration limits, and is deleted when the request ends. Sources come back as
        mono 16-bit WAV at the upload's sample rate, named `speaker1`, `speaker2`, ...
        Errors: 400 malformed form, 413 too large or too long, 415 not audio, 422 unusable
        audio or bad parameter, 503 queue full (retry later).
        """
        async with queue.admit():
            work_dir: Path = request.app.state.work_dir
            upload = work_dir / f"{UPLOAD_PREFIX}{secrets.token_hex(16)}"
            try:
                received = await receive_upload(
                    request.headers.get("content-type"),
                    request.headers.get("content-length"),
                    request.stream(),
                    upload,
                    settings.max_upload_bytes,
                )
                name = received.display_name
                header = await anyio.to_thread.run_sync(
                    check_upload, upload, name, settings.max_duration_s
                )
                async with queue.slot():
                    result = await anyio.to_thread.run_sync(
                        separate_upload, engine, upload, name, settings.max_duration_s
                    )
                    # The upload is no longer needed: free the disk before encoding.
                    upload.unlink(missing_ok=True)
                    if format == "zip":
                        payload = await anyio.to_thread.run_sync(encode_zip, result, mixture, name)
                        return Response(
                            payload,
                            media_type="application/zip",
                            headers={"Content-Disposition": 'attachment; filename="separated.zip"'},
                        )
                    body = await anyio.to_thread.run_sync(
                        _json_body, result, header_info(header, name), model_name, mixture
                    )
                    return Response(body, media_type="application/json")
            except ClientDisconnect:
                return Response(status_code=400)
            finally:
                upload.unlink(missing_ok=True)

    return app


def header_info(header: AudioInfo, name: str) -> InputInfo:
    """The response's description of the decoded upload, from its header."""
    return InputInfo(
        filename=name,
        format=header.format,
        subtype=header.subtype,
        sample_rate=header.sample_rate,
        channels=header.channels,
        duration_s=header.duration,
    )


def _json_body(
    result: Separated, input_info: InputInfo, model_name: str, include_mixture: bool
) -> bytes:
    """The :class:`SeparationResponse` as JSON bytes, built off the event loop (it is large)."""

    def track(name: str, samples: np.ndarray) -> AudioTrack:
        wav = encode_wav(samples, result.sample_rate)
        return AudioTrack(name=name, wav_base64=base64.b64encode(wav).decode("ascii"))

    response = SeparationResponse(
        model=model_name,
        sample_rate=result.sample_rate,
        num_sources=int(result.sources.shape[0]),
        duration_s=result.mixture.shape[-1] / result.sample_rate,
        processing_s=result.seconds,
        input=input_info,
        sources=[track(source_name(i), s) for i, s in enumerate(result.sources)],
        mixture=track("mixture", result.mixture) if include_mixture else None,
    )
    return response.model_dump_json().encode()


def _open_work_dir(configured: Path | None) -> tuple[Path, bool]:
    """The folder uploads go to, and whether the server created it (and deletes it at exit).

    A configured folder is created if missing; uploads left in it by a killed server (only
    files named ``upload-<32 hex digits>``) are removed.
    """
    if configured is None:
        return Path(tempfile.mkdtemp(prefix="tdanet-serve-")), True
    configured.mkdir(parents=True, exist_ok=True)
    for stale in configured.glob(f"{UPLOAD_PREFIX}*"):
        if UPLOAD_NAME.fullmatch(stale.name):
            with suppress(OSError):
                stale.unlink()
    return configured, False
