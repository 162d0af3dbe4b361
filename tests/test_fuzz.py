"""The OpenAPI schema of a live ``memlane serve``, fuzzed by schemathesis: every operation,
with requests that fit the schema and requests that do not, sent with a valid key. No
answer may be a 500 or carry a stack trace, and every answer must be one the schema
declares: its status, its media type and its body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from memlane.server import Settings, create_app
from memlane.store import open_store

from .live_server import LiveServer, make_key

TRACES = ("Traceback", 'File "', "site-packages")


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    location = str(tmp_path_factory.mktemp("fuzz") / "fuzz.db")
    open_store(location).close()
    token = make_key(location, "acme", admin=True)
    with LiveServer(location, "--rate", "0", "--max-body", "65536") as server:
        with server.client(token) as c:  # something to find
            for text in ("I moved to Lisbon in March.", "I work as a nurse."):
                c.post("/v1/memories", json={"messages": text, "user_id": "alice"})
        yield server, token


def _never() -> Any:
    raise AssertionError("only the schema is read; the live server serves the requests")


# an import's body, JSON lines, is sent as the text it is drawn as
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
# the schema the live server serves (the app is only built, never started, here)
schema = schemathesis.openapi.from_dict(create_app(Settings(open_memory=_never)).openapi())


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_operation_answers_500_or_a_trace(case: Any,
                                             fuzzed: tuple[LiveServer, str]) -> None:
    server, token = fuzzed
    response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                         timeout=30)
    assert response.status_code < 500, (case.as_curl_command(), response.text)
    assert not any(trace in response.text for trace in TRACES), (case.as_curl_command(),
                                                                 response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert {"type", "message"} <= set(error), response.text
    case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                             response_schema_conformance])
