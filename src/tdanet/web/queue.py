"""Admission control: bounded uploads, a bounded queue, one separation at a time.

At most ``max_uploads`` uploads are read at once (more are answered 503 at once), each
within the upload time limit. Only a complete upload takes a place in the queue (or is
answered 503), so slow clients cannot hold places that finished uploads need; the uploads
on disk and the recordings in memory stay bounded. Admitted requests then take turns on
``max_concurrent`` separation slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .errors import ApiError


class SeparationQueue:
    """``max_concurrent`` separations run at once; up to ``max_waiting`` more requests wait."""

    def __init__(self, max_concurrent: int, max_waiting: int, max_uploads: int = 8) -> None:
        self.max_concurrent = max_concurrent
        self.capacity = max_concurrent + max_waiting
        self.max_uploads = max_uploads
        self._uploading = 0
        self._admitted = 0
        self._running = 0
        self._slots = asyncio.Semaphore(max_concurrent)

    @property
    def uploading(self) -> int:
        """Uploads being received now."""
        return self._uploading

    @property
    def admitted(self) -> int:
        """Requests with a complete upload in the server (waiting or separating)."""
        return self._admitted

    @property
    def running(self) -> int:
        """Separations running now."""
        return self._running

    @asynccontextmanager
    async def upload(self) -> AsyncIterator[None]:
        """Count an upload in for the ``with`` block; 503 :class:`ApiError` if too many run."""
        if self._uploading >= self.max_uploads:
            raise ApiError(
                503,
                "server_busy",
                f"the server is busy ({self._uploading} uploads in progress); try again shortly",
            )
        self._uploading += 1
        try:
            yield
        finally:
            self._uploading -= 1

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Count a request in for the ``with`` block; 503 :class:`ApiError` if the queue is full."""
        # No await between the check and the increment: the event loop cannot interleave.
        if self._admitted >= self.capacity:
            raise ApiError(
                503,
                "server_busy",
                f"the server is busy ({self._admitted} requests in progress); try again shortly",
            )
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a free separation slot and hold it for the ``with`` block."""
        async with self._slots:
            self._running += 1
            try:
                yield
            finally:
                self._running -= 1
