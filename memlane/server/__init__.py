"""The REST server (extra ``server``): ``create_app(Settings(open_memory=...))``.

Run it with ``memlane serve`` (docs/server.md)."""

from __future__ import annotations

from ..errors import missing_extra

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise missing_extra(exc.name or "fastapi", "server") from exc

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
