"""The app factory: the engine and limits a server serves, error handlers, middleware and
the routes of :mod:`tdanet.web.routes`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from torch import nn

from .. import __version__
from .errors import ApiError, ErrorResponse
from .middleware import AccessLog, AllowedHosts, SecurityHeaders
from .queue import SeparationQueue
from .routes import STATIC_DIR, Served, router
from .service import SeparatorLike
from .settings import WebSettings
from .workdir import WorkDir


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
    engine, model_name = serving_engine(separator, settings.model_name)

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
    queue = SeparationQueue(settings.max_concurrent, settings.max_queue, settings.max_uploads)
    app.state.served = Served(engine, model_name, settings, queue)
    add_error_handlers(app)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AllowedHosts, allowed=settings.allowed_hosts)
    # Added last, so outermost: refused hosts are logged too.
    app.add_middleware(AccessLog)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
    return app


def serving_engine(
    separator: SeparatorLike | str | os.PathLike[str] | nn.Module, model_name: str | None
) -> tuple[SeparatorLike, str]:
    """The engine for ``separator`` (models and names wrapped in a CPU ``Separator``) and the
    name the API reports for it (``model_name`` if given)."""
    if isinstance(separator, (str, os.PathLike, nn.Module)):
        from ..separate import Separator

        if isinstance(separator, nn.Module):
            return Separator(model=separator, device="cpu"), model_name or type(separator).__name__
        return Separator(model=os.fspath(separator), device="cpu"), model_name or os.fspath(
            separator
        )
    return separator, model_name or type(separator).__name__


def add_error_handlers(app: FastAPI) -> None:
    """Every error answers JSON ``{"error", "detail"}`` (:class:`ErrorResponse`)."""

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
