"""The parts a ``Memory`` opens by default (a SQLite file in the user data directory, the
local MiniLM model), and the check that a store and an embedder belong together."""

from __future__ import annotations

import contextlib
from pathlib import Path

from .embed.base import Embedder
from .errors import ConfigurationError, ReadOnlyError
from .store import Store


def default_location() -> Path:
    """The embedded default: one SQLite file in the user data directory, which is created
    here. (The directory of any other location must exist: a mistyped path is an error.)"""
    from platformdirs import user_data_dir

    folder = Path(user_data_dir("memlane", appauthor=False))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "memlane.db"


def default_embedder() -> Embedder:
    from .embed.onnx_minilm import MiniLMEmbedder

    return MiniLMEmbedder()


def check_embedder(store: Store, embedder: Embedder) -> None:
    """Refuse to mix vectors of two models in one store."""
    signature = f"{embedder.model_id}/{embedder.dim}"
    stored = store.get_meta("embedder")
    if stored is None:
        # read-only and empty: no vectors of any model to mix up
        with contextlib.suppress(ReadOnlyError):
            store.set_meta("embedder", signature)
    elif stored != signature:
        raise ConfigurationError(
            f"this store holds vectors from {stored}, not {signature}: open it with the "
            "same embedder, or export and import into a new store"
        )
