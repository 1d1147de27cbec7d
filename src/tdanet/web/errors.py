"""The API's error responses: a status code plus ``{"error": code, "detail": message}``."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    """Body of every error the API returns."""

    error: str = Field(description="short machine-readable code, e.g. `file_too_large`")
    detail: str = Field(description="one line saying what is wrong and what to do")


class ApiError(Exception):
    """An error answered with ``status`` and an :class:`ErrorResponse` body."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail

    def response_body(self) -> dict[str, str]:
        """The JSON body: ``{"error": ..., "detail": ...}``."""
        return ErrorResponse(error=self.error, detail=self.detail).model_dump()
