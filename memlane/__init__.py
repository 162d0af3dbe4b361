"""memlane: long-term memory for LLM agents."""

from .aio import AsyncMemory
from .embed import Embedder, FakeEmbedder, MiniLMEmbedder
from .errors import (
    AccessError,
    AuthenticationError,
    BackendError,
    ConfigurationError,
    ConflictError,
    ErasurePendingError,
    FilterError,
    InvalidInputError,
    MemlaneError,
    ModelError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ReadOnlyError,
    RequestTooLargeError,
    StoreError,
    UsageError,
)
from .memory import Memory
from .read.context import Context
from .read.search import RECIPES, SearchConfig
from .types import HistoryEvent, MemoryRecord, Message, Scope, SearchHit, SignalDetail

__version__ = "0.1.0"

__all__ = [
    "RECIPES",
    "AccessError",
    "AsyncMemory",
    "AuthenticationError",
    "BackendError",
    "ConfigurationError",
    "ConflictError",
    "Context",
    "Embedder",
    "ErasurePendingError",
    "FakeEmbedder",
    "FilterError",
    "HistoryEvent",
    "InvalidInputError",
    "MemlaneError",
    "Memory",
    "MemoryRecord",
    "Message",
    "MiniLMEmbedder",
    "ModelError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ReadOnlyError",
    "RequestTooLargeError",
    "Scope",
    "SearchConfig",
    "SearchHit",
    "SignalDetail",
    "StoreError",
    "UsageError",
    "__version__",
]
