"""The FastAPI application: the single page, ``/api/separate``, ``/api/info``, ``/api/health``."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
from ..audio import AudioInfo, output_subtype
from ..errors import AudioWriteError
from .errors import ApiError, ErrorResponse
from .queue import SeparationQueue
from .service import (
    Separated,
    SeparatorLike,
    check_upload,
    encode_track,
    encode_zip,
    separate_upload,
    source_name,
    speaker_segments,
)
from .settings import WebSettings
from .uploads import FILE_FIELD, receive_upload
from .workdir import UPLOAD_PREFIX, WorkDir

# One line per request: client, method, path, status, response bytes, seconds.
ACCESS_LOG = logging.getLogger("tdanet.web.access")
STATIC_DIR = Path(__file__).parent / "static"
# Response header of a zip answer listing the warnings the JSON answer has in `warnings`.
WARNING_HEADER = "X-Tdanet-Warnings"
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


def host_name(header: str) -> str:
    """The host name of a ``Host`` header: port, IPv6 brackets and a final dot removed."""
    host = header.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


class AllowedHosts:
    """ASGI middleware answering 400 to requests whose ``Host`` is not an allowed name.

    A web page on another site can make a browser send requests to a local server by
    pointing its own name at 127.0.0.1 (DNS rebinding); such requests carry that other
    name in ``Host`` and are refused here.
    """

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = {host_name(name) for name in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"host", b"").decode("latin-1")
        if host_name(header) in self.allowed:
            await self.app(scope, receive, send)
            return
        detail = (
            f"host {header[:100]!r} is not served here; start the server with "
            "--allowed-hosts NAME to allow a host name"
        )
        body = ErrorResponse(error="invalid_host", detail=detail).model_dump()
        await JSONResponse(body, status_code=400)(scope, receive, send)


class AccessLog:
    """ASGI middleware logging one line per HTTP request to :data:`ACCESS_LOG`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        size = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            client = scope.get("client")
            ACCESS_LOG.info(
                '%s "%s %s" %s %d %.3f s',
                client[0] if client else "-",
                scope["method"],
                scope["path"],
                status or "-",
                size,
                time.perf_counter() - start,
            )


class Limits(BaseModel):
    """What the server accepts."""

    max_upload_bytes: int
    max_duration_s: float
    max_concurrent: int
    max_queue: int
    max_uploads: int
    upload_timeout_s: float


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
    """One mono audio file, base64-encoded: in `wav_base64` for WAV (the default), in
    `audio_base64` for the other formats."""

    name: str = Field(description="`speaker1`, `speaker2`, ... or `mixture`")
    media_type: str = Field(description="`audio/wav`, `audio/flac`, `audio/mpeg` or `audio/ogg`")
    wav_base64: str | None = None
    audio_base64: str | None = None


class SpeechSegment(BaseModel):
    """One stretch of speech of one separated speaker."""

    start_s: float
    end_s: float
    speaker: str = Field(description="`speaker1`, `speaker2`, ... like the sources")


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
    warnings: list[str] = Field(
        default_factory=list,
        description="problems that did not stop the separation, e.g. a truncated file",
    )
    segments: list[SpeechSegment] | None = Field(
        default=None, description="who speaks when, from the sources, when `segments=true`"
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
                            "description": "a recording in any format ffmpeg decodes "
                            "(WAV, FLAC, MP3, M4A/AAC, Opus, WMA, AMR, the sound of MP4/MOV/"
                            "MKV/WebM videos, ...), any rate, any channels",
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
    work_dir: WorkDir | None = None,
) -> FastAPI:
    """The web application serving ``separator``, with ``settings``' limits.

    ``separator`` is a :class:`tdanet.separate.Separator` (or any object with
    ``sample_rate``, ``num_sources`` and ``separate(waveform, sample_rate)``), a loaded
    model, or anything ``load_model`` accepts (preset, bundled name, checkpoint path, hub
    name); models are wrapped in a CPU ``Separator``. ``work_dir``: a working folder the
    caller opened (and closes); without it the app opens ``settings.work_dir`` at startup
    and closes it at shutdown.
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
    queue = SeparationQueue(settings.max_concurrent, settings.max_queue, settings.max_uploads)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        folder = work_dir or WorkDir(settings.work_dir)
        app.state.work_dir = folder.path
        try:
            yield
        finally:
            if work_dir is None:
                folder.close()

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
    app.add_middleware(AllowedHosts, allowed=settings.allowed_hosts)
    # Added last, so outermost: refused hosts are logged too.
    app.add_middleware(AccessLog)

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
                max_uploads=settings.max_uploads,
                upload_timeout_s=settings.upload_timeout_s,
            ),
            requests_in_progress=queue.admitted,
        )

    @app.post(
        "/api/separate",
        tags=["separation"],
        response_model=SeparationResponse,
        responses={
            200: {
                "description": "JSON with one base64 file per source (`format=json`) or a "
                "zip of files (`format=zip`), in `audio_format`",
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
        segments: bool = Query(
            False,
            description="also return who speaks when (JSON `segments`; zip: segments.rttm "
            "and segments.csv)",
        ),
        audio_format: Literal["wav", "flac", "mp3", "opus"] = Query(
            "wav", description="format of the returned files"
        ),
        bit_depth: int | None = Query(
            None, description="bits per sample of wav (16, 24, 32 = float) or flac (16, 24)"
        ),
    ) -> Any:
        """Separate the speakers of an uploaded recording (multipart field `file`).

        The file is checked by decoding it (not by its name or content type), must fit the
        size and duration limits, and is deleted when the request ends. Sources come back as
        mono files in `audio_format` (16-bit WAV by default) at the upload's sample rate
        (MP3 and Opus: the next rate the codec stores), named `speaker1`, `speaker2`, ...
        Errors: 400 malformed form, 408 upload too slow, 413 too large or too long, 415 not
        audio, 422 unusable audio or bad parameter, 503 too many uploads or queue full (retry
        later).
        """
        try:
            subtype = output_subtype(audio_format, bit_depth)
        except AudioWriteError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        folder: Path = request.app.state.work_dir
        upload = folder / f"{UPLOAD_PREFIX}{secrets.token_hex(16)}"
        try:
            async with queue.upload():
                try:
                    with anyio.fail_after(settings.upload_timeout_s):
                        received = await receive_upload(
                            request.headers.get("content-type"),
                            request.headers.get("content-length"),
                            request.stream(),
                            upload,
                            settings.max_upload_bytes,
                        )
                except TimeoutError:
                    raise ApiError(
                        408,
                        "upload_timeout",
                        f"the upload took longer than {settings.upload_timeout_s:g} s; send "
                        "a smaller file or use a faster connection",
                    ) from None
            name = received.display_name
            async with queue.admit():
                header = await anyio.to_thread.run_sync(
                    check_upload, upload, name, settings.max_duration_s
                )
                async with queue.slot():
                    result = await anyio.to_thread.run_sync(
                        separate_upload, engine, upload, name, settings.max_duration_s
                    )
                    # The upload is no longer needed: free the disk before encoding.
                    upload.unlink(missing_ok=True)
                    warnings = upload_warnings(header, upload, name)
                    if format == "zip":
                        payload = await anyio.to_thread.run_sync(
                            encode_zip, result, mixture, name, audio_format, subtype, segments
                        )
                        headers = {"Content-Disposition": 'attachment; filename="separated.zip"'}
                        if warnings:
                            # Header values are latin-1; the file name may not be.
                            text = "; ".join(warnings)
                            headers[WARNING_HEADER] = text.encode("ascii", "replace").decode()
                        return Response(payload, media_type="application/zip", headers=headers)
                    body = await anyio.to_thread.run_sync(
                        _json_body,
                        result,
                        header_info(header, name, result),
                        model_name,
                        mixture,
                        audio_format,
                        subtype,
                        warnings,
                        segments,
                    )
                    return Response(body, media_type="application/json")
        except ClientDisconnect:
            return Response(status_code=400)
        finally:
            upload.unlink(missing_ok=True)

    return app


# Media type of each returned audio format.
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "opus": "audio/ogg"}


def upload_warnings(header: AudioInfo, path: Path, name: str) -> list[str]:
    """Problems of the upload that did not stop it (a truncated WAV), naming the client's file."""
    if header.truncation is None:
        return []
    return [f"{header.truncation.replace(str(path), name)}; separated the frames found"]


def header_info(header: AudioInfo, name: str, result: Separated) -> InputInfo:
    """The response's description of the decoded upload: its header, and the duration as
    decoded (``result``), which a compressed file's header may only estimate."""
    return InputInfo(
        filename=name,
        format=header.format,
        subtype=header.subtype,
        sample_rate=header.sample_rate,
        channels=header.channels,
        duration_s=result.mixture.shape[-1] / result.sample_rate,
    )


def _json_body(
    result: Separated,
    input_info: InputInfo,
    model_name: str,
    include_mixture: bool,
    audio_format: str,
    subtype: str | None,
    warnings: list[str],
    include_segments: bool = False,
) -> bytes:
    """The :class:`SeparationResponse` as JSON bytes, built off the event loop (it is large)."""

    def track(name: str, samples: np.ndarray) -> AudioTrack:
        data = base64.b64encode(
            encode_track(samples, result.sample_rate, audio_format, subtype)
        ).decode("ascii")
        field = "wav_base64" if audio_format == "wav" else "audio_base64"
        return AudioTrack.model_validate(
            {"name": name, "media_type": MEDIA_TYPES[audio_format], field: data}
        )

    response = SeparationResponse(
        model=model_name,
        sample_rate=result.sample_rate,
        num_sources=int(result.sources.shape[0]),
        duration_s=result.mixture.shape[-1] / result.sample_rate,
        processing_s=result.seconds,
        input=input_info,
        sources=[track(source_name(i), s) for i, s in enumerate(result.sources)],
        mixture=track("mixture", result.mixture) if include_mixture else None,
        warnings=warnings,
        segments=[
            SpeechSegment(start_s=start, end_s=end, speaker=source_name(index))
            for start, end, index in speaker_segments(result)
        ]
        if include_segments
        else None,
    )
    return response.model_dump_json().encode()
