"""Tests for openai_batch, run against a fake OpenAI Batch and Files API.

The fake server (first section) is a small, stateful model of the real service: it checks the API
key, validates uploads and batch requests, runs batches on a fake clock, writes shuffled output and
error files, and can be armed with faults (error replies, dropped and reset connections, lost
responses, cut bodies, slow replies). Its self-tests talk to it with `http.client` only.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import re
import socket
import struct
import threading
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

# ---------------------------------------------------------------- fake Batch API server

API_KEY = "sk-test-Zq8v3XkP4mW7nR2tY6uB9cD1"

_FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
_TERMINAL = ("failed", "completed", "expired", "cancelled")
_THIRTY_DAYS = 2_592_000
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header"
    " using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with"
    " blank username) if you're accessing the API from your browser and are prompted for a"
    " username and password. You can obtain an API key from"
    " https://platform.openai.com/account/api-keys."
)
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using"
    " your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not"
    " valid JSON. If you have trouble figuring out how to fix this, please contact us through our"
    " help center at help.openai.com.)"
)
# (method, path pattern, FakeAPI method); groups are percent-encoded ids
_ROUTES = (
    ("POST", r"/v1/files", "_create_file"),
    ("GET", r"/v1/files", "_list_files"),
    ("GET", r"/v1/files/([^/]+)", "_retrieve_file"),
    ("DELETE", r"/v1/files/([^/]+)", "_delete_file"),
    ("GET", r"/v1/files/([^/]+)/content", "_file_content"),
    ("POST", r"/v1/batches", "_create_batch"),
    ("GET", r"/v1/batches", "_list_batches"),
    ("GET", r"/v1/batches/([^/]+)", "_retrieve_batch"),
    ("POST", r"/v1/batches/([^/]+)/cancel", "_cancel_batch"),
)


class FakeClock:
    """Time for the server AND the client under test; never sleeps for real."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if seconds < 0:  # like time.sleep, so that a client bug shows
            raise ValueError("sleep length must be non-negative")
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Fault:
    """One armed misbehaviour; see FakeAPI.arm."""

    action: str  # "respond" | "drop" | "reset" | "lose_response" | "cut_body" | "slow"
    status: int = 500
    body: bytes | None = None  # None: an OpenAI-shaped error body saying "Injected <status>"
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # real seconds, for "slow"
    fraction: float = 0.5  # share of the body sent, for "cut_body"

    @classmethod
    def error(
        cls, code: int, headers: dict[str, str] | None = None, message: str | None = None
    ) -> Fault:
        """An OpenAI-shaped JSON error reply; the request is not processed."""
        body = None if message is None else _error_json(code, message)
        return cls("respond", code, body, headers=dict(headers or {}))

    @classmethod
    def html(cls, code: int, html: str, headers: dict[str, str] | None = None) -> Fault:
        """An HTML reply, as a proxy or load balancer would send."""
        return cls.raw(code, html.encode(), "text/html; charset=utf-8", headers)

    @classmethod
    def raw(
        cls, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> Fault:
        return cls("respond", code, body, content_type, dict(headers or {}))

    @classmethod
    def drop(cls) -> Fault:
        """Read the request, close the connection without a reply; nothing is processed."""
        return cls("drop")

    @classmethod
    def reset(cls) -> Fault:
        """Read the request, close the connection with a TCP RST; nothing is processed."""
        return cls("reset")

    @classmethod
    def lose_response(cls) -> Fault:
        """Process the request (state changes), then close without a reply."""
        return cls("lose_response")

    @classmethod
    def cut_body(cls, fraction: float = 0.5) -> Fault:
        """Process the request, send the full Content-Length but only `fraction` of the body."""
        return cls("cut_body", fraction=fraction)

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Process the request, then wait `delay` real seconds before replying."""
        return cls("slow", delay=delay)


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    path: str  # without the query, still percent-encoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class _ApiError(Exception):
    """An error reply; also a rejected line of a batch input file (status unused there)."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> _Response:
        return _Response(self.status, _error_json(self.status, self.message, self.param, self.code))


@dataclass
class _Job:
    """What the server keeps about a running batch beyond its JSON."""

    content: bytes  # the input file as it was when the batch was created
    output_expires: int | None  # output_expires_after.seconds
    requests: list[dict[str, Any]] = field(default_factory=list)  # input lines, once validated
    failed: list[bool] = field(default_factory=list)  # fail_rule, per request
    at: dict[str, float] = field(default_factory=dict)  # status -> exact time it was entered


def _error_json(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> bytes:
    kind = "invalid_request_error"
    if status == 429:
        kind, code = "requests", code or "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    error = {"message": message, "type": kind, "param": param, "code": code}
    return json.dumps({"error": error}).encode()


def _json_type(value: Any) -> str:
    kinds = ((bool, "a boolean"), (int, "an integer"), (float, "a decimal"), (str, "a string"))
    kinds += ((list, "an array"), (dict, "an object"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


def _mask(key: str) -> str:
    return f"{key[:5]}...{key[-4:]}"


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?[0-9]+", raw):
        message = f"Invalid '{name}': expected an integer, but got '{raw}' instead."
        raise _ApiError(400, message, name, "invalid_type")
    value = int(raw)
    if value < low:
        message = f"Expected a value >= {low}, but got {value} instead."
        raise _ApiError(400, f"Invalid '{name}': integer below minimum value. {message}", name,
                        "integer_below_min_value")  # fmt: skip
    if value > high:
        message = f"Expected a value <= {high}, but got {value} instead."
        raise _ApiError(400, f"Invalid '{name}': integer above maximum value. {message}", name,
                        "integer_above_max_value")  # fmt: skip
    return value


def _check_choice(value: Any, choices: tuple[str, ...], param: str) -> None:
    if value not in choices:
        supported = ", ".join(f"'{choice}'" for choice in choices)
        message = f"Invalid value: {json.dumps(value)}. Supported values are: {supported}."
        raise _ApiError(400, message, param, "invalid_value")


def _require_string(params: dict[str, Any], name: str) -> str:
    if name not in params:
        raise _ApiError(400, f"Missing required parameter: '{name}'.", name,
                        "missing_required_parameter")  # fmt: skip
    if not isinstance(params[name], str):
        got = _json_type(params[name])
        message = f"Invalid type for '{name}': expected a string, but got {got} instead."
        raise _ApiError(400, message, name, "invalid_type")
    return params[name]


def _check_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        message = f"Invalid type for 'metadata': expected an object, but got {_json_type(metadata)}"
        raise _ApiError(400, message + " instead.", "metadata", "invalid_type")
    if len(metadata) > 16:
        message = "Invalid 'metadata': too many properties. Expected an object with at most 16"
        message += f" properties, but got an object with {len(metadata)} properties instead."
        raise _ApiError(400, message, "metadata", "object_above_max_properties")
    for key, value in metadata.items():
        if not isinstance(value, str):
            message = f"Invalid type for 'metadata.{key}': expected a string, but got"
            raise _ApiError(400, f"{message} {_json_type(value)} instead.", f"metadata.{key}",
                            "invalid_type")  # fmt: skip
        for what, text, most in (("key", key, 64), ("value", value, 512)):
            if len(text) > most:
                message = f"Invalid 'metadata': {what} too long. Expected a string with maximum"
                message += f" length {most}, but got a string with length {len(text)} instead."
                raise _ApiError(400, message, f"metadata.{key}", "string_above_max_length")


def _check_expires_after(value: Any, param: str) -> int | None:
    """Check an expiration policy {anchor, seconds}; return its seconds."""
    if value is None:
        return None
    if not isinstance(value, dict):
        message = f"Invalid type for '{param}': expected an object, but got {_json_type(value)}"
        raise _ApiError(400, message + " instead.", param, "invalid_type")
    for name in value.keys() - {"anchor", "seconds"}:
        raise _ApiError(400, f"Unknown parameter: '{param}.{name}'.", f"{param}.{name}",
                        "unknown_parameter")  # fmt: skip
    _check_choice(value.get("anchor"), ("created_at",), f"{param}.anchor")
    seconds = value.get("seconds")
    if type(seconds) is not int or not 3600 <= seconds <= _THIRTY_DAYS:
        message = f"Invalid '{param}.seconds': expected an integer between 3600 and {_THIRTY_DAYS}"
        raise _ApiError(400, f"{message}, but got {json.dumps(seconds)} instead.",
                        f"{param}.seconds", "invalid_value")  # fmt: skip
    return seconds


def _parse_multipart(content_type: str, body: bytes) -> list[tuple[str, str | None, bytes]]:
    """Split a multipart/form-data body into (name, filename, data) parts."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not boundary:
        message = f"Invalid Content-Type header ({content_type}), expected multipart/form-data."
        raise _ApiError(400, message)
    delimiter = b"\r\n--" + str(boundary).encode("latin-1")
    # The first delimiter needs no CRLF before it; the text before it is a preamble.
    pieces = (b"\r\n" + body).split(delimiter)[1:]
    closing = next((i for i, piece in enumerate(pieces) if piece.startswith(b"--")), None)
    if closing is None:
        raise _ApiError(400, "Malformed multipart body: no closing boundary.")
    return [_parse_part(piece) for piece in pieces[:closing]]


def _parse_part(piece: bytes) -> tuple[str, str | None, bytes]:
    head, separator, data = piece.partition(b"\r\n\r\n")
    if not separator:
        raise _ApiError(400, "Malformed multipart body: a part has no header end.")
    disposition = Message()
    for line in head.split(b"\r\n")[1:]:  # [0] is what follows the boundary on its line
        name, _, value = line.decode("utf-8", "replace").partition(":")
        if name.strip().lower() == "content-disposition":
            disposition["content-disposition"] = value.strip()
    name = disposition.get_param("name", header="content-disposition")
    if not isinstance(name, str):
        raise _ApiError(400, "Malformed multipart body: a part has no name.")
    return name, disposition.get_filename() or None, data


def _check_line(raw: bytes, endpoint: str, seen: set[str]) -> dict[str, Any]:
    """Check one line of a batch input file like the service does; return it parsed."""
    try:
        line = json.loads(raw)
    except ValueError:
        raise _ApiError(400, "This line is not parseable as valid JSON.", None,
                        "invalid_json_line") from None  # fmt: skip
    if not isinstance(line, dict):
        raise _ApiError(400, "This line is not a JSON object.", None, "invalid_json_line")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        message = "The custom_id for this request must be a non-empty string."
        raise _ApiError(400, message, None, "missing_custom_id")
    if custom_id in seen:
        message = f"The custom_id '{custom_id}' is a duplicate of another request's."
        raise _ApiError(400, message + " It must be unique in a batch.", None,
                        "duplicate_custom_id")  # fmt: skip
    seen.add(custom_id)
    if line.get("method") != "POST":
        raise _ApiError(400, "The method for this request must be 'POST'.", None, "invalid_method")
    if line.get("url") != endpoint:
        message = f"The url for this request does not match the batch endpoint '{endpoint}'."
        raise _ApiError(400, message, None, "mismatched_endpoint")
    if not isinstance(line.get("body"), dict):
        raise _ApiError(400, "The body for this request must be a JSON object.", None,
                        "invalid_body")  # fmt: skip
    if not isinstance(line["body"].get("model"), str):
        raise _ApiError(400, "The body for this request must name a model.", None, "missing_model")
    return line


def _check_lines(content: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the requests of a batch input file and the BatchError of each bad line."""
    requests: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    lines = content.split(b"\n")
    if lines[-1] == b"":  # the last line's terminator, not an empty line
        lines.pop()
    for number, raw in enumerate(lines, 1):
        try:
            request = _check_line(raw, endpoint, seen)
            model = requests[0]["body"]["model"] if requests else request["body"]["model"]
            if request["body"]["model"] != model:
                message = f"The model for this request does not match the batch's model '{model}'."
                raise _ApiError(400, message, None, "mismatched_model")
            requests.append(request)
        except _ApiError as exc:
            errors.append({"code": exc.code, "message": exc.message, "param": None, "line": number})
    if not lines:
        errors.append({"code": "empty_file", "message": "The input file has no requests.",
                       "param": None, "line": None})  # fmt: skip
    return requests, errors


def _as_text(value: Any) -> str:
    """The text a message, a list of content parts or an input holds."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_as_text(item) for item in value)
    if isinstance(value, dict):
        return _as_text(value.get("text", value.get("content", "")))
    return "" if value is None else json.dumps(value)


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _reply(endpoint: str, body: dict[str, Any], created: int, serial: str) -> dict[str, Any]:
    """The deterministic response body of one successful request."""
    model = body["model"]
    if endpoint == "/v1/chat/completions":
        messages = body.get("messages")
        prompt = _as_text(messages[-1] if isinstance(messages, list) and messages else messages)
        usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(prompt) + 1}
        message = {"role": "assistant", "content": f"echo: {prompt}"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return {"id": f"chatcmpl-{serial}", "object": "chat.completion", "created": created,
                "model": model, "choices": [choice],
                "usage": {**usage, "total_tokens": 2 * usage["prompt_tokens"] + 1}}  # fmt: skip
    if endpoint == "/v1/embeddings":
        inputs = body.get("input")
        texts = inputs if isinstance(inputs, list) and inputs else [inputs]
        data = [{"object": "embedding", "index": k, "embedding": _vector(_as_text(text))}
                for k, text in enumerate(texts)]  # fmt: skip
        tokens = sum(_tokens(_as_text(text)) for text in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": model, "usage": usage}
    if endpoint == "/v1/responses":
        prompt = _as_text(body.get("input"))
        text = {"type": "output_text", "text": f"echo: {prompt}"}
        output = [{"type": "message", "role": "assistant", "content": [text]}]
        usage = {"input_tokens": _tokens(prompt), "output_tokens": _tokens(prompt) + 1}
        return {"id": f"resp_{serial}", "object": "response", "created_at": created,
                "status": "completed", "model": model, "output": output,
                "usage": {**usage, "total_tokens": 2 * usage["input_tokens"] + 1}}  # fmt: skip
    return {"echo": body}


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(byte / 127.5 - 1, 6) for byte in digest[:3]]


def _usage(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch's usage: the sums over its successful responses."""
    usages = [body.get("usage") or {} for body in bodies]
    tokens_in = sum(usage.get("prompt_tokens", usage.get("input_tokens", 0)) for usage in usages)
    tokens_out = sum(usage.get("completion_tokens", usage.get("output_tokens", 0)) for usage in usages)
    return {"input_tokens": tokens_in, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": tokens_out, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens_in + tokens_out}  # fmt: skip


def _oldest_first(items: Any) -> list[dict[str, Any]]:
    # sorted() is stable, so equal created_at keep their creation order.
    return sorted(items, key=lambda item: item["created_at"])


def _page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise _ApiError(400, f"Invalid 'after': no object with id '{after}' in this list.",
                            "after", "invalid_value")  # fmt: skip
        items = items[ids.index(after) + 1 :]
    data = items[:limit]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return {"object": "list", "data": data, "first_id": first, "last_id": last,
            "has_more": len(items) > limit}  # fmt: skip


class FakeAPI:
    """A stateful model of the OpenAI Batch and Files API, served by `serve()`.

    Batches created through the API (or seeded by add_batch as "validating" with a stored input
    file) run on `clock`; any other seeded batch stays exactly as seeded.
    """

    seconds_validating: float = 10.0
    seconds_per_request: float = 1.0
    seconds_finalizing: float = 5.0
    seconds_cancelling: float = 5.0
    completion_window_seconds: float = 86400.0
    max_upload_bytes: int = 512 * 1024 * 1024

    def __init__(self, clock: FakeClock | None = None, api_key: str = API_KEY) -> None:
        self.clock = clock or FakeClock()
        self.api_key = api_key
        self.base_url = ""
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        #: decides, when a batch validates, which input lines go to the error file
        self.fail_rule: Callable[[dict[str, Any]], bool] = lambda line: "fail" in line["custom_id"]
        #: exceptions raised inside the fake while handling requests (bugs in the fake)
        self.errors: list[BaseException] = []
        self.lock = threading.RLock()
        self._faults: list[tuple[str, re.Pattern[str], list[Fault]]] = []
        self._jobs: dict[str, _Job] = {}
        self._serial = 0
        self._received = 0

    # -- public helpers for tests

    @contextmanager
    def serve(self) -> Iterator[FakeAPI]:
        """Serve this fake on 127.0.0.1 in a daemon thread while the block runs."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.api = self
        self.base_url = f"http://127.0.0.1:{server.server_port}/v1"
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    def arm(self, method: str, path: str, *faults: Fault) -> None:
        """Make the next requests whose path full-matches `path` meet `faults`, in order."""
        with self.lock:
            self._faults.append((method.upper(), re.compile(path), list(faults)))

    def add_file(
        self, content: bytes, *, filename: str = "input.jsonl", purpose: str = "batch"
    ) -> dict[str, Any]:
        """Seed a file directly; return its JSON."""
        with self.lock:
            expires = _THIRTY_DAYS if purpose == "batch" else None
            return self._store_file(content, filename, purpose, int(self.clock.now), expires)

    def add_batch(self, **fields: Any) -> dict[str, Any]:
        """Seed a batch: any Batch field, plus output_expires_after; return its JSON."""
        with self.lock:
            output_expires = _check_expires_after(fields.pop("output_expires_after", None), "")
            created = int(fields.get("created_at", self.clock.now))
            batch = {"id": self._new_id("batch_", 32), "object": "batch",
                     "endpoint": "/v1/chat/completions", "model": None, "errors": None,
                     "input_file_id": self._new_id("file-", 24), "completion_window": "24h",
                     "status": "validating", "output_file_id": None, "error_file_id": None,
                     "created_at": created, "in_progress_at": None,
                     "expires_at": created + int(self.completion_window_seconds)}  # fmt: skip
            for status in ("finalizing", "completed", "failed", "expired", "cancelling"):
                batch[f"{status}_at"] = None
            batch.update(cancelled_at=None, request_counts={"total": 0, "completed": 0,
                         "failed": 0}, usage=None, metadata=None)  # fmt: skip
            unknown = fields.keys() - batch.keys()
            if unknown:
                raise TypeError(f"add_batch() got unknown Batch fields: {sorted(unknown)}")
            batch.update(fields)
            self.batches[batch["id"]] = batch
            content = self.contents.get(batch["input_file_id"])
            if batch["status"] == "validating" and content is not None:
                self._jobs[batch["id"]] = _Job(content, output_expires)
            return batch

    def process(self) -> None:
        """Advance every batch to what the clock says (each request does this first)."""
        with self.lock:
            for batch in self.batches.values():
                job = self._jobs.get(batch["id"])
                if job is not None:
                    self._advance(batch, job)

    # -- request handling (the handler thread calls _receive, then _handle)

    def _receive(self, request: Recorded) -> tuple[str, Fault | None]:
        """Record a request; return its request id and the fault armed for it, if any."""
        with self.lock:
            self.requests.append(request)
            self._received += 1
            for method, pattern, faults in self._faults:
                if faults and method == request.method and pattern.fullmatch(request.path):
                    return f"req_{self._received}", faults.pop(0)
            return f"req_{self._received}", None

    def _handle(self, request: Recorded) -> _Response:
        with self.lock:
            try:
                self.process()
                self._authenticate(request.headers.get("authorization", ""))
                for method, pattern, name in _ROUTES:
                    match = re.fullmatch(pattern, request.path)
                    if match and method == request.method:
                        ids = [urllib.parse.unquote(group) for group in match.groups()]
                        result = getattr(self, name)(request, *ids)
                        if isinstance(result, _Response):
                            return result
                        return _Response(200, json.dumps(result).encode())
                raise _ApiError(404, f"Invalid URL ({request.method} {request.path})")
            except _ApiError as exc:
                return exc.response()
            except Exception as exc:  # a bug in the fake: answer like the service, keep it
                self.errors.append(exc)
                message = "The server had an error while processing your request. Sorry about that!"
                return _ApiError(500, message).response()

    def _authenticate(self, authorization: str) -> None:
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise _ApiError(401, _NO_KEY)
        if key.strip() != self.api_key:
            message = f"Incorrect API key provided: {_mask(key.strip())}."
            raise _ApiError(401, message, None, "invalid_api_key")

    def _new_id(self, prefix: str, width: int) -> str:
        self._serial += 1
        return prefix + hashlib.sha256(f"{prefix}{self._serial}".encode()).hexdigest()[:width]

    # -- files

    def _store_file(
        self, content: bytes, filename: str, purpose: str, created: int, expires: int | None
    ) -> dict[str, Any]:
        file = {"id": self._new_id("file-", 24), "object": "file", "bytes": len(content),
                "created_at": created, "expires_at": None if expires is None else created + expires,
                "filename": filename, "purpose": purpose, "status": "processed",
                "status_details": None}  # fmt: skip
        self.files[file["id"]] = file
        self.contents[file["id"]] = content
        return file

    def _file(self, file_id: str) -> dict[str, Any]:
        if file_id not in self.files:
            raise _ApiError(404, f"No such File object: {file_id}", "id")
        return self.files[file_id]

    def _create_file(self, request: Recorded) -> dict[str, Any]:
        parts = _parse_multipart(request.headers.get("content-type", ""), request.body)
        fields = {name: data.decode("utf-8", "replace") for name, _, data in parts}
        allowed = {"purpose", "file", "expires_after[anchor]", "expires_after[seconds]"}
        for name in fields.keys() - allowed:
            raise _ApiError(400, f"Unrecognized request argument supplied: {name}")
        purpose = _require_string(fields, "purpose")
        _check_choice(purpose, _FILE_PURPOSES, "purpose")
        uploads = [(filename, data) for name, filename, data in parts if name == "file"]
        if not uploads or uploads[-1][0] is None:
            raise _ApiError(400, "Missing required parameter: 'file'.", "file",
                            "missing_required_parameter")  # fmt: skip
        filename, content = str(uploads[-1][0]), uploads[-1][1]
        if purpose == "batch":
            self._check_batch_upload(filename, content)
        expires = self._form_expires_after(fields)
        if expires is None and purpose == "batch":
            expires = _THIRTY_DAYS
        return self._store_file(content, filename, purpose, int(self.clock.now), expires)

    def _check_batch_upload(self, filename: str, content: bytes) -> None:
        if not filename.endswith(".jsonl"):
            raise _ApiError(400, "Invalid file format for Batch API. Must be .jsonl", "file")
        if len(content) > self.max_upload_bytes:
            message = f"File is too large: {len(content)} bytes, the limit is"
            raise _ApiError(400, f"{message} {self.max_upload_bytes} bytes.", "file")

    def _form_expires_after(self, fields: dict[str, str]) -> int | None:
        anchor, seconds = fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]")
        if anchor is None and seconds is None:
            return None
        number = int(seconds) if seconds and re.fullmatch(r"[0-9]+", seconds) else seconds
        return _check_expires_after({"anchor": anchor, "seconds": number}, "expires_after")

    def _list_files(self, request: Recorded) -> dict[str, Any]:
        query = request.query
        order = query.get("order", "desc")
        _check_choice(order, ("asc", "desc"), "order")
        limit = _int_param(query, "limit", 10_000, 1, 10_000)
        purpose = query.get("purpose")
        files = [file for file in _oldest_first(self.files.values())
                 if purpose is None or file["purpose"] == purpose]  # fmt: skip
        if order == "desc":
            files.reverse()
        return _page(files, query.get("after"), limit)

    def _retrieve_file(self, request: Recorded, file_id: str) -> dict[str, Any]:
        return self._file(file_id)

    def _delete_file(self, request: Recorded, file_id: str) -> dict[str, Any]:
        self._file(file_id)
        del self.files[file_id], self.contents[file_id]
        return {"id": file_id, "object": "file", "deleted": True}

    def _file_content(self, request: Recorded, file_id: str) -> _Response:
        self._file(file_id)
        return _Response(200, self.contents[file_id], "application/octet-stream")

    # -- batches

    def _batch(self, batch_id: str) -> dict[str, Any]:
        if batch_id not in self.batches:
            raise _ApiError(404, f"No batch found with id '{batch_id}'.")
        return self.batches[batch_id]

    def _create_batch(self, request: Recorded) -> dict[str, Any]:
        try:
            params = json.loads(request.body)
        except ValueError:
            raise _ApiError(400, _BAD_JSON) from None
        if not isinstance(params, dict):
            message = f"Invalid body: expected an object, but got {_json_type(params)} instead."
            raise _ApiError(400, message, None, "invalid_type")
        known = {"input_file_id", "endpoint", "completion_window", "metadata"}
        for name in params.keys() - known - {"output_expires_after"}:
            raise _ApiError(400, f"Unrecognized request argument supplied: {name}")
        file_id = _require_string(params, "input_file_id")
        _check_choice(_require_string(params, "endpoint"), _ENDPOINTS, "endpoint")
        _check_choice(_require_string(params, "completion_window"), ("24h",), "completion_window")
        _check_metadata(params.get("metadata"))
        expires = params.get("output_expires_after")
        _check_expires_after(expires, "output_expires_after")
        if file_id not in self.files:
            raise _ApiError(400, f"Could not find file {file_id}.", "input_file_id")
        if self.files[file_id]["purpose"] != "batch":
            message = f"File {file_id} has purpose '{self.files[file_id]['purpose']}'"
            raise _ApiError(400, message + "; the Batch API needs purpose 'batch'.", "input_file_id")
        fields = {name: params[name] for name in known if name in params}
        return self.add_batch(**fields, output_expires_after=expires)

    def _list_batches(self, request: Recorded) -> dict[str, Any]:
        limit = _int_param(request.query, "limit", 20, 1, 100)
        return _page(_oldest_first(self.batches.values())[::-1], request.query.get("after"), limit)

    def _retrieve_batch(self, request: Recorded, batch_id: str) -> dict[str, Any]:
        return self._batch(batch_id)

    def _cancel_batch(self, request: Recorded, batch_id: str) -> dict[str, Any]:
        batch = self._batch(batch_id)
        if batch["status"] in _TERMINAL:
            raise _ApiError(400, f"Cannot cancel a batch with status '{batch['status']}'.")
        if batch["status"] != "cancelling":
            self._enter(batch, self._jobs.get(batch_id), "cancelling", self.clock.now)
        return batch

    # -- running batches on the clock; every time comes from the schedule, not from `now`

    def _advance(self, batch: dict[str, Any], job: _Job) -> None:
        now = self.clock.now
        while batch["status"] not in _TERMINAL:
            due, step = self._next_step(batch, job)
            if due > now:
                self._count(batch, job, min(now, job.at.get("cancelling", now)))
                return
            step(batch, job, due)

    def _next_step(
        self, batch: dict[str, Any], job: _Job
    ) -> tuple[float, Callable[[dict[str, Any], _Job, float], None]]:
        status = batch["status"]
        if status == "cancelling":
            return job.at["cancelling"] + self.seconds_cancelling, self._cancelled
        if status == "validating":
            due, step = batch["created_at"] + self.seconds_validating, self._validate
        elif status == "in_progress":
            due, step = self._finish_time(job, len(job.requests) - 1), self._finalize
        else:
            due, step = job.at["finalizing"] + self.seconds_finalizing, self._complete
        expires = batch["expires_at"]
        return (expires, self._expire) if expires is not None and expires < due else (due, step)

    def _finish_time(self, job: _Job, index: int) -> float:
        return job.at["in_progress"] + (index + 1) * self.seconds_per_request

    def _enter(self, batch: dict[str, Any], job: _Job | None, status: str, at: float) -> None:
        batch["status"] = status
        batch[f"{status}_at"] = int(at)
        if job is not None:
            job.at[status] = at

    def _validate(self, batch: dict[str, Any], job: _Job, at: float) -> None:
        requests, errors = _check_lines(job.content, batch["endpoint"])
        if errors:
            batch["errors"] = {"object": "list", "data": errors}
            self._enter(batch, job, "failed", at)
            return
        job.requests = requests
        job.failed = [bool(self.fail_rule(request)) for request in requests]
        batch["model"] = requests[0]["body"]["model"]
        self._enter(batch, job, "in_progress", at)

    def _count(self, batch: dict[str, Any], job: _Job, cutoff: float) -> None:
        done = self._done(job, cutoff)
        failed = sum(job.failed[index] for index in done)
        counts = {"total": len(job.requests), "completed": len(done) - failed, "failed": failed}
        batch["request_counts"] = counts

    def _done(self, job: _Job, cutoff: float) -> list[int]:
        indexes = range(len(job.requests))
        return [index for index in indexes if self._finish_time(job, index) <= cutoff]

    def _finalize(self, batch: dict[str, Any], job: _Job, at: float) -> None:
        self._count(batch, job, at)
        self._enter(batch, job, "finalizing", at)

    def _complete(self, batch: dict[str, Any], job: _Job, at: float) -> None:
        self._close(batch, job, "completed", at, cutoff=at)

    def _cancelled(self, batch: dict[str, Any], job: _Job, at: float) -> None:
        self._close(batch, job, "cancelled", at, cutoff=job.at["cancelling"])

    def _expire(self, batch: dict[str, Any], job: _Job, at: float) -> None:
        self._close(batch, job, "expired", at, cutoff=at)

    def _close(self, batch: dict[str, Any], job: _Job, status: str, at: float, cutoff: float) -> None:
        """End a batch, writing the results of the requests that finished by `cutoff`."""
        self._count(batch, job, cutoff)
        results = [self._result(batch, job, index) for index in self._done(job, cutoff)]
        random.Random(batch["id"]).shuffle(results)  # the service writes lines out of order
        good = [line for line in results if line["response"]["status_code"] == 200]
        bad = [line for line in results if line["response"]["status_code"] != 200]
        batch["output_file_id"] = self._result_file(batch, job, "output", good, at)
        batch["error_file_id"] = self._result_file(batch, job, "error", bad, at)
        batch["usage"] = _usage([line["response"]["body"] for line in good])
        self._enter(batch, job, status, at)

    def _result(self, batch: dict[str, Any], job: _Job, index: int) -> dict[str, Any]:
        request = job.requests[index]
        if job.failed[index]:
            error = {"message": "Request failed by fail_rule", "type": "invalid_request_error",
                     "param": None, "code": None}  # fmt: skip
            status, body = 400, {"error": error}
        else:
            created = int(self._finish_time(job, index))
            serial = self._new_id("", 24)
            status, body = 200, _reply(batch["endpoint"], request["body"], created, serial)
        response = {"status_code": status, "request_id": self._new_id("req_", 32), "body": body}
        return {"id": self._new_id("batch_req_", 32), "custom_id": request["custom_id"],
                "response": response, "error": None}  # fmt: skip

    def _result_file(
        self, batch: dict[str, Any], job: _Job, kind: str, lines: list[Any], at: float
    ) -> str | None:
        if not lines:
            return None
        content = "".join(json.dumps(line) + "\n" for line in lines).encode()
        filename = f"{batch['id']}_{kind}.jsonl"
        expires = job.output_expires or _THIRTY_DAYS
        return str(self._store_file(content, filename, "batch_output", int(at), expires)["id"])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: FakeAPI


class _Handler(BaseHTTPRequestHandler):
    """Transport for FakeAPI: reads requests, applies armed faults, writes responses."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _serve(self) -> None:
        api = self.server.api
        body = self._read_body()
        path, _, query = self.path.partition("?")
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Recorded(self.command, path, dict(pairs), headers, body or b"")
        request_id, fault = api._receive(request)
        action = fault.action if fault else "none"
        if body is None or action in ("drop", "reset"):
            return self._hang_up(reset=action == "reset")
        response = _injected(fault) if fault and action == "respond" else api._handle(request)
        response.headers["x-request-id"] = request_id
        if fault and action == "lose_response":
            return self._hang_up(reset=False)
        if fault and action == "slow":
            time.sleep(fault.delay)
        self._send(response, fault.fraction if fault and action == "cut_body" else 1.0)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

    def _read_body(self) -> bytes | None:
        """The request body, or None when the client sent less than it announced."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("content-length", "0")
        if not length.isdigit():
            return None
        body = self.rfile.read(int(length))
        return body if len(body) == int(length) else None

    def _read_chunked(self) -> bytes | None:
        chunks = []
        while True:
            size_line = self.rfile.readline().split(b";")[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]+", size_line):
                return None
            if int(size_line, 16) == 0:
                break
            chunks.append(self.rfile.read(int(size_line, 16)))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailer fields
            pass
        return b"".join(chunks)

    def _hang_up(self, reset: bool) -> None:
        self.close_connection = True
        if reset:  # linger 0: close() sends RST instead of FIN
            linger = struct.pack("ii", 1, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.connection.close()

    def _send(self, response: _Response, fraction: float) -> None:
        self.send_response(response.status)
        headers = {"Content-Type": response.content_type,
                   "Content-Length": str(len(response.body)), **response.headers}  # fmt: skip
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body[: int(len(response.body) * fraction)])
        if fraction < 1:
            self.close_connection = True


def _injected(fault: Fault) -> _Response:
    body = fault.body
    if body is None:
        body = _error_json(fault.status, f"Injected {fault.status}")
    return _Response(fault.status, body, fault.content_type, dict(fault.headers))


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    """A fresh FakeAPI served on a free local port; its own bugs fail the test."""
    with FakeAPI().serve() as fake:
        yield fake
    if fake.errors:
        raise fake.errors[0]
