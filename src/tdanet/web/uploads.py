"""Receive one uploaded file from a multipart request into a file, with a size limit.

The body is parsed as it streams in (python-multipart's push parser), so the upload never
sits in memory or in a system temporary folder: its bytes go straight to the destination
the server chose. The client's file name is only reported back for display, never used as a
path.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from .errors import ApiError

# Field name of the file in the multipart form.
FILE_FIELD = "file"
# Room for the multipart framing and small extra fields on top of the file itself.
FORM_OVERHEAD_BYTES = 64 * 1024
# Longest client file name kept for display.
MAX_DISPLAY_NAME = 120


@dataclass(frozen=True)
class ReceivedUpload:
    """The uploaded file: bytes written and the client's name, cleaned for display only."""

    size: int
    display_name: str


def display_name(raw: str) -> str:
    """The last path component of a client file name without control characters, shortened.

    The result is shown to people and echoed in responses; it is never used as a path.
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:MAX_DISPLAY_NAME] or "upload"


class _FilePartWriter:
    """Callbacks for ``MultipartParser``: write the data of the first ``file`` part to ``out``.

    Data of other parts is dropped; ``limit`` bounds the bytes written (413 beyond it).
    """

    def __init__(self, out: BinaryIO, limit: int) -> None:
        self.out = out
        self.limit = limit
        self.size = 0
        self.filename: str | None = None
        self.done = False
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._in_file = False

    def on_part_begin(self) -> None:
        self._headers = {}
        self._in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        is_file = options.get(b"name") == FILE_FIELD.encode() and b"filename" in options
        self._in_file = is_file and not self.done
        if self._in_file:
            self.filename = options[b"filename"].decode("utf-8", "replace")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            return
        self.size += end - start
        if self.size > self.limit:
            raise ApiError(
                413, "file_too_large", f"the upload is larger than the limit of {self.limit} bytes"
            )
        self.out.write(data[start:end])

    def on_part_end(self) -> None:
        if self._in_file:
            self.done = True
            self._in_file = False


async def receive_upload(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    dest: Path,
    max_bytes: int,
) -> ReceivedUpload:
    """Stream a ``multipart/form-data`` body and write its ``file`` part to ``dest``.

    Raises :class:`ApiError`: 415 if the body is not multipart, 413 if the declared or actual
    size exceeds ``max_bytes`` (checked before and while reading), 400 if the form is malformed
    or has no ``file`` part. ``dest`` is created (exclusively) even on error; the caller
    removes it.
    """
    mime, options = parse_options_header(content_type or "")
    if mime != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the recording as multipart/form-data with a `{FILE_FIELD}` field",
        )
    too_large = ApiError(
        413, "file_too_large", f"the upload is larger than the limit of {max_bytes} bytes"
    )
    declared = int(content_length) if content_length and content_length.isdigit() else 0
    if declared > max_bytes + FORM_OVERHEAD_BYTES:
        raise too_large
    with dest.open("xb") as out:
        writer = _FilePartWriter(out, max_bytes)
        received = 0
        try:
            parser = MultipartParser(
                options[b"boundary"],
                callbacks={
                    "on_part_begin": writer.on_part_begin,
                    "on_header_field": writer.on_header_field,
                    "on_header_value": writer.on_header_value,
                    "on_header_end": writer.on_header_end,
                    "on_headers_finished": writer.on_headers_finished,
                    "on_part_data": writer.on_part_data,
                    "on_part_end": writer.on_part_end,
                },
            )
            async for chunk in body:
                received += len(chunk)
                # The file part is limited by the writer; this bounds the whole body.
                if received > max_bytes + FORM_OVERHEAD_BYTES:
                    raise too_large
                parser.write(chunk)
        except FormParserError as exc:
            raise ApiError(
                400, "malformed_form", f"the multipart form is malformed ({exc})"
            ) from None
    if writer.filename is None:
        raise ApiError(
            400, "missing_file", f"the form has no file field named `{FILE_FIELD}`; attach one"
        )
    if not writer.done:
        raise ApiError(400, "malformed_form", "the upload ended before the file part was complete")
    return ReceivedUpload(writer.size, display_name(writer.filename))
