"""The remote client: ``Memory("http://host:port", api_key=...)`` is a ``RemoteMemory``,
the library's API over HTTP to ``memlane serve``. It needs httpx (the ``client`` extra)."""

from .client import RemoteMemory

ENGINE = RemoteMemory
"""What ``Memory`` opens for an http:// or https:// location (``Memory.ENGINES``)."""

__all__ = ["ENGINE", "RemoteMemory"]
