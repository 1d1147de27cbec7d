"""The HTTP routes: the page, ``/api/health``, ``/api/info`` and ``/api/separate``.

Each handler reads what it serves from ``request.app.state.served`` (:class:`Served`, set
by :func:`tdanet.web.app.create_app`), so the routes are plain module functions.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.requests import ClientDisconnect

from .. import __version__
from ..audio import output_subtype
from ..errors import AudioWriteError
from .errors import ApiError
from .queue import SeparationQueue
from .schemas import (
    UPLOAD_BODY,
    HealthResponse,
    InfoResponse,
    Limits,
    SeparationResponse,
    error_responses,
    header_info,
    json_body,
)
from .service import SeparatorLike, check_upload, encode_zip, separate_upload, upload_warnings
from .settings import WebSettings
from .uploads import receive_upload
from .workdir import UPLOAD_PREFIX

STATIC_DIR = Path(__file__).parent / "static"
# Response header of a zip answer listing the warnings the JSON answer has in `warnings`.
WARNING_HEADER = "X-Tdanet-Warnings"

router = APIRouter()


@dataclass(frozen=True)
class Served:
    """What the app serves: the separation engine, its name, the limits and the queue."""

    engine: SeparatorLike
    model_name: str
    settings: WebSettings
    queue: SeparationQueue


def served(request: Request) -> Served:
    return request.app.state.served


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/api/health", response_model=HealthResponse, tags=["service"])
async def health() -> HealthResponse:
    """Liveness: the server answers."""
    return HealthResponse(status="ok")


@router.get("/api/info", response_model=InfoResponse, tags=["service"])
async def info(request: Request) -> InfoResponse:
    """The model, its sample rate and number of sources, and the server's limits."""
    app = served(request)
    settings = app.settings
    return InfoResponse(
        version=__version__,
        model=app.model_name,
        sample_rate=app.engine.sample_rate,
        num_sources=app.engine.num_sources,
        limits=Limits(
            max_upload_bytes=settings.max_upload_bytes,
            max_duration_s=settings.max_duration_s,
            max_concurrent=settings.max_concurrent,
            max_queue=settings.max_queue,
            max_uploads=settings.max_uploads,
            upload_timeout_s=settings.upload_timeout_s,
        ),
        requests_in_progress=app.queue.admitted,
    )


@router.post(
    "/api/separate",
    tags=["separation"],
    response_model=SeparationResponse,
    responses={
        200: {
            "description": "JSON with one base64 file per source (`format=json`) or a "
            "zip of files (`format=zip`), in `audio_format`",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        },
        **error_responses(400, 413, 415, 422, 500, 503),
    },
    openapi_extra=UPLOAD_BODY,
)
async def separate(
    request: Request,
    format: Literal["json", "zip"] = Query(
        "json", description="`json`: base64 files in JSON; `zip`: a zip of files"
    ),
    mixture: bool = Query(False, description="also return the mono mixture"),
    segments: bool = Query(
        False,
        description="also return who speaks when (JSON `segments`; zip: `<stem>.rttm` and "
        "`<stem>_segments.csv`)",
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
    (MP3 and Opus: the next rate the codec stores): JSON tracks `speaker1`, `speaker2`, ...,
    zip entries `<stem>_spk1`, ... after the upload's name. Errors: 400 malformed form,
    408 upload too slow, 413 too large or too long, 415 not audio, 422 unusable audio or bad
    parameter, 503 too many uploads or queue full (retry later).
    """
    app = served(request)
    settings, queue = app.settings, app.queue
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
                    separate_upload, app.engine, header, name, settings.max_duration_s
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
                    json_body,
                    result,
                    header_info(header, name, result),
                    app.model_name,
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
