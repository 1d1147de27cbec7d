"""The web app and HTTP API: ``create_app(separator_or_model, WebSettings(...))``.

Needs the ``web`` extra (fastapi, uvicorn, python-multipart).
"""

from .app import create_app
from .settings import WebSettings, WebSettingsError

__all__ = ["WebSettings", "WebSettingsError", "create_app"]
