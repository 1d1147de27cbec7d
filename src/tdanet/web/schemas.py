"""What the HTTP API answers: pydantic models (the OpenAPI schema), and the JSON body."""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from ..audio import AudioInfo
from .errors import ErrorResponse
from .service import Separated, encode_track, source_name, speaker_segments
from .uploads import FILE_FIELD


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


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries saying these statuses answer with an :class:`ErrorResponse`."""
    return {status: {"model": ErrorResponse} for status in statuses}


UPLOAD_BODY: dict[str, Any] = {
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


# Media type of each returned audio format.
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "opus": "audio/ogg"}


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


def json_body(
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
