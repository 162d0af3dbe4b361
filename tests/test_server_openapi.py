"""The OpenAPI schema of a live server says what each ``/v1`` operation answers: a 200 with
the schema of its real answer, and the error statuses it can return, each with the error
shape. The answers of a live server (SQLite and PostgreSQL, with an LLM) are checked
against the schema it serves: each status declared, each JSON body valid."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from memlane.llm.fake import FakeOpenAIServer
from memlane.store import open_store

from .live_server import LiveServer, key_set, store_location, wait_for
from .test_llm_write_path import rule_model

JSON = "application/json"
NDJSON = "application/x-ndjson"
METHODS = ("get", "put", "post", "patch", "delete")


@dataclass
class Served:
    server: LiveServer
    keys: dict[str, str]
    schema: dict[str, Any]

    def as_(self, who: str | None) -> httpx.Client:
        return self.server.client(self.keys[who] if who else None)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    location = store_location(request.param, request, tmp_path_factory, "openapi")
    open_store(location).close()
    keys = key_set(location)
    with FakeOpenAIServer(rule_model) as llm, LiveServer(
            location, "--rate", "0", "--max-body", "100000",
            env={"MEMLANE_LLM_MODEL": "fake-model",
                 "MEMLANE_LLM_BASE_URL": llm.base_url}) as server, server.client() as anon:
        yield Served(server, keys, anon.get("/openapi.json").json())


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        if path.startswith("/v1/"):
            for method in METHODS:
                if method in item:
                    yield path, method, item[method]


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def is_error_shape(schema: dict[str, Any], node: dict[str, Any]) -> bool:
    outer = resolve(schema, node)
    if outer.get("required") != ["error"]:
        return False
    inner = resolve(schema, outer["properties"]["error"])
    return {"type", "message"} <= set(inner.get("required", ())) and \
        inner["properties"]["type"].get("type") == "string"


def expected_errors(path: str, op: dict[str, Any]) -> set[str]:
    """What every operation can answer, and what its parameters and body add."""
    codes = {"401", "403", "429", "503"}
    body = op.get("requestBody", {}).get("content", {})
    if op.get("parameters") or JSON in body:
        codes.add("422")  # a request that does not fit the schema
    if body:
        codes |= {"413", "415"}  # too large, or not of its media type
    if "{memory_id}" in path:
        codes.add("404")
    return codes


def test_every_operation_declares_its_answer_and_its_errors(served: Served) -> None:
    schema = served.schema
    found = list(operations(schema))
    assert len(found) == 19
    for path, method, op in found:
        where = f"{method.upper()} {path}"
        (media, answer), = op["responses"]["200"]["content"].items()
        if path == "/v1/export":
            assert media == NDJSON and answer["schema"] == {"type": "string"}, where
        else:
            assert media == JSON, where
            declared = resolve(schema, answer["schema"])
            assert declared.get("type") == "object" and declared["properties"], where
            assert declared.get("additionalProperties") is False, where
        missing = expected_errors(path, op) - set(op["responses"])
        assert not missing, (where, missing)
        for code, error in op["responses"].items():
            if code != "200":
                assert code.isdigit() and int(code) >= 400, (where, code)
                (media, body), = error["content"].items()
                assert media == JSON and is_error_shape(schema, body["schema"]), (where, code)
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # FastAPI's own 422
    import_body = schema["paths"]["/v1/import"]["post"]["requestBody"]["content"]
    assert set(import_body) == {NDJSON}


def operation_of(schema: dict[str, Any], response: httpx.Response) -> dict[str, Any]:
    path, method = response.request.url.path, response.request.method.lower()
    for template, item in schema["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method in item:
            return dict(item[method])
    raise AssertionError(f"no operation for {method} {path}")


def conforms(schema: dict[str, Any], response: httpx.Response) -> Any:
    """The answer's JSON, once its status is declared by its operation and its body is
    valid by the declared schema."""
    op = operation_of(schema, response)
    where = f"{response.request.method} {response.request.url.path} {response.status_code}"
    declared = op["responses"].get(str(response.status_code))
    assert declared is not None, (where, response.text)
    media = response.headers["content-type"].partition(";")[0]
    assert media in declared["content"], (where, media)
    if media == NDJSON:
        return [json.loads(line) for line in response.text.splitlines()]
    body = response.json()
    validator = Draft202012Validator({"components": schema["components"],
                                      **declared["content"][media]["schema"]})
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(body)]
    assert not problems, (where, problems, body)
    return body


def test_real_answers_fit_the_schema(served: Served) -> None:
    check = served.schema
    with served.as_("full") as c:
        first = conforms(check, c.post("/v1/memories", json={
            "messages": [{"role": "user", "content": "I moved to Lisbon in March.",
                          "name": "alice", "id": "D1:1"}],
            "user_id": "alice", "session_id": "s1", "timestamp": "2026-03-14T10:00:00Z",
            "metadata": {"topic": "home"}, "infer": True}))["memories"]
        assert {m["kind"] for m in first} > {"turn"}  # the LLM read facts
        turn = next(m for m in first if m["kind"] == "turn")
        conforms(check, c.post("/v1/memories", json={
            "messages": "I work as a nurse, it is tiring.", "user_id": "alice",
            "session_id": "s1", "infer": "background"}))
        assert wait_for(lambda: all(j["status"] == "done" for j in conforms(
            check, c.get("/v1/jobs"))["jobs"]))
        jobs = conforms(check, c.get("/v1/jobs"))["jobs"]
        assert jobs and jobs[0]["actions"] and jobs[0]["usage"]
        conforms(check, c.post("/v1/jobs/run", json={"limit": 5}))
        hits = conforms(check, c.post("/v1/search", json={
            "query": "Lisbon", "user_id": "alice", "explain": True}))["hits"]
        assert hits and "explain" in hits[0]
        assert conforms(check, c.post("/v1/search", json={"query": "Lisbon",
                                                         "user_id": "alice"}))["hits"]
        context = conforms(check, c.post("/v1/context", json={"query": "where",
                                                              "user_id": "alice"}))
        assert context["memories"] and context["citations"]
        small = conforms(check, c.post("/v1/context", json={
            "query": "where", "user_id": "alice", "budget_tokens": 80}))
        assert small["complete"] is False
        conforms(check, c.get(f"/v1/memories/{turn['id']}", params={"user_id": "alice"}))
        conforms(check, c.get("/v1/memories", params={"user_id": "alice", "kinds": ["fact"],
                                                      "statuses": ["active", "superseded"]}))
        conforms(check, c.patch(f"/v1/memories/{turn['id']}", json={
            "text": "I moved to Porto.", "reason": "corrected"}))
        assert len(conforms(check, c.get(f"/v1/memories/{turn['id']}/history"))["events"]) == 2
        conforms(check, c.get("/v1/messages", params={"user_id": "alice"}))
        stats = conforms(check, c.get("/v1/stats", params={"user_id": "alice"}))
        assert stats["llm_usage"]["calls"] > 0 and stats["scope"]["user_id"] == "alice"
        conforms(check, c.get("/v1/stats"))
        conforms(check, c.get("/v1/scopes"))
        conforms(check, c.get("/v1/scopes", params={"by": "session_id"}))
        lines = c.get("/v1/export", params={"user_id": "alice"})
        assert conforms(check, lines)
        conforms(check, c.delete(f"/v1/memories/{turn['id']}", params={"reason": "gone"}))
        conforms(check, c.delete("/v1/memories", params={"user_id": "alice"}))
        conforms(check, c.post("/v1/forget", json={"user_id": "alice"}))
        report = conforms(check, c.post("/v1/import", content=lines.text,
                                        headers={"content-type": NDJSON}))
        assert report["scopes"] and report["restored"]["messages"] == 2
        conforms(check, c.get("/v1/key"))
    with served.as_("admin") as admin:
        conforms(check, admin.post("/v1/reset"))


def test_real_errors_fit_the_schema(served: Served) -> None:
    check = served.schema
    missing = "/v1/memories/01M8ZZZZZZZZZZZZZZZZZZZZZZ"
    with served.as_(None) as anon, served.as_("full") as c, served.as_("alice") as alice, \
            served.as_("reader") as reader:
        answers = [
            anon.get("/v1/stats"),  # 401
            alice.get("/v1/stats"), reader.post("/v1/forget", json={"user_id": "x"}),  # 403
            c.get(missing), c.patch(missing, json={"text": "x"}), c.delete(missing),  # 404
            c.get(f"{missing}/history"),
            c.post("/v1/search", json={"query": "x", "user_id": "u", "limit": 0}),  # 400
            c.post("/v1/search", json={"query": "x", "user_id": "u", "filters": {"no": 1}}),
            c.get("/v1/memories", params={"user_id": "u", "filters": "{"}),
            c.post("/v1/import", content="not json\n", headers={"content-type": NDJSON}),
            c.post("/v1/search", json={"user_id": "u"}),  # 422
            c.get("/v1/memories", params={"user_id": "u", "limit": "many"}),
            c.post("/v1/context", content=b"[", headers={"content-type": JSON}),
            c.post("/v1/memories", json={"messages": "x" * 200_000, "user_id": "u"}),  # 413
            c.post("/v1/search", content=b"{}", headers={"content-type": "text/plain"}),  # 415
            c.post("/v1/forget", json={"user_id": "u", "wait": 3601}),  # 400
        ]
        c.post("/v1/memories", json={"messages": "one", "user_id": "u", "idempotency_key": "k"})
        answers.append(c.post("/v1/memories", json={"messages": "two", "user_id": "u",
                                                    "idempotency_key": "k"}))  # 409
        c.post("/v1/forget", json={"user_id": "u"})
    codes = set()
    for answer in answers:
        assert answer.status_code >= 400, answer.text
        conforms(check, answer)
        codes.add(answer.status_code)
    assert codes == {400, 401, 403, 404, 409, 413, 415, 422}


def test_the_models_name_every_field_of_the_values_they_describe() -> None:
    from memlane import types
    from memlane.erasure import EraseCounts
    from memlane.exchange import jsonl
    from memlane.read.context import Context
    from memlane.server import answers
    from memlane.store.base import ScopeCounts

    pairs = [(answers.MemoryRecord, types.MemoryRecord), (answers.HistoryEvent,
             types.HistoryEvent), (answers.Message, types.Message), (answers.Job, types.Job),
             (answers.Signal, types.SignalDetail), (answers.EraseCounts, EraseCounts),
             (answers.ScopeCounts, ScopeCounts), (answers.Tally, jsonl.Tally),
             (answers.ScopeImport, jsonl.ScopeImport),
             (answers.ImportReport, jsonl.ImportReport)]
    for model, value in pairs:
        assert list(model.model_fields) == list(value.__dataclass_fields__), model
    assert set(answers.SearchHit.model_fields) == {*types.SearchHit.__dataclass_fields__, "id"}
    assert set(answers.Context.model_fields) == {*Context.__dataclass_fields__, "sources",
                                                 "citations"}


DOCUMENTED = {"A memory": "MemoryRecord", "A search hit": "SearchHit", "The context": "Context",
              "A history event": "HistoryEvent", "A raw message": "Message", "A job": "Job",
              "Erase counts": "EraseCounts", "The stats": "Stats", "A scope": "ScopeCounts",
              "The import report": "ImportReport", "The key": "Key", "An error": "Error"}
"""The subsections of docs/server.md's answers, and the model each documents."""


def answers_in_docs() -> dict[str, str]:
    """Each subsection of the answers in docs/server.md, by its title."""
    from .conftest import ROOT

    text = (ROOT / "docs" / "server.md").read_text(encoding="utf-8")
    section = text.split("\n## Answers\n", 1)[1].split("\n## ", 1)[0]
    return {part.split("\n", 1)[0]: part for part in section.split("\n### ")[1:]}


def test_the_docs_name_every_field_of_every_answer() -> None:
    from memlane.server import answers

    sections = answers_in_docs()
    assert set(sections) == set(DOCUMENTED)
    for title, name in DOCUMENTED.items():
        rows = [line for line in sections[title].splitlines() if line.startswith("| `")]
        named = {field for row in rows for field in re.findall(r"`(\w+)`", row.split(" | ")[0])}
        assert named == set(getattr(answers, name).model_fields), title


def test_the_context_shown_in_the_docs_is_a_context() -> None:
    from memlane.server import answers

    example = answers_in_docs()["The context"].split("```json\n", 1)[1].split("```", 1)[0]
    context = answers.Context.model_validate_json(example)
    assert context.refs == list(context.citations) and context.complete
    assert all(f"[{ref}]" in context.text for ref in context.refs)
