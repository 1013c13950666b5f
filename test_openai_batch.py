"""Tests for openai_batch, run against a fake OpenAI Batch and Files API.

The fake server (first section) is a small, stateful model of the real service: it checks the API
key, validates uploads and batch requests, runs batches on a fake clock, writes shuffled output and
error files, and can be armed with faults (error replies, dropped and reset connections, lost
responses, cut bodies, slow replies). Its self-tests talk to it with `http.client` only.

Map: the sections, in order. Between the fakes (first) and the README (last) they are the
module's sections, by their names, in the module's order, and a test keeps them so.

- Fakes                             FakeAPI, clocks, Fault, ChatServer, proxies, fixtures, helpers
- Fakes: self-tests                 the fake servers checked with http.client alone
- Public surface and import         __all__, what an import costs, the version
- Exceptions                        errors, their fields, status -> class
- Text and JSON lines               one JSON line read strictly: NaN, huge numbers, lone surrogates
- Enums and API objects             Batch, FileObject, BatchResult, pages, model_dump & co.
- HTTP transport                    timeouts, retries, proxies, TLS, redirects, scrubbing, faults
- Downloads and atomic files        file content, write_to_file, _AtomicFile, a full disk
- Resources                         client.batches, .files, .models: create, list, upload, wait
- Webhooks                          unwrap, verify_signature, events
- Prices and costs                  prices by model, token and cost estimates
- JSONL helpers                     read/write_jsonl, validate_input, split, results, retry files
- Jobs                              client.run and `run`: the engine, its record, resume, kills
- Direct rounds                     run --direct against ChatServer
- The client                        OpenAI/Client: construction, environment, with_options
- Azure OpenAI                      AzureOpenAI: paths, api-version, keys and token providers
- Async                             AsyncOpenAI and AsyncAzureOpenAI
- The module client                 openai_batch.api_key = ..., then openai_batch.batches
- Command line: output helpers      tables, widths, terminal and piped output, hints
- Command line: commands            each command: list, get, create, validate, wait, results...
- Command line: arguments and main  argparse, global options, exit codes, real processes
- The README runs                   README.md's Python and shell examples, run against the fake
"""

from __future__ import annotations

import ast
import base64
import bisect
import dataclasses
import email
import errno
import hashlib
import hmac
import http.client
import io
import json
import random
import re
import shlex
import socket
import sqlite3
import struct
import sys
import tempfile
import threading
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator

import pytest

# ---------------------------------------------------------------- Fakes

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
# fmt: off
#: every field of the spec's Batch object, in the spec's order
_BATCH_FIELDS = (
    "id", "object", "endpoint", "model", "errors", "input_file_id", "completion_window", "status",
    "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at",
    "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at",
    "request_counts", "usage", "metadata",
)
# fmt: on
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
    ("GET", r"/v1/models", "_list_models"),
    ("GET", r"/v1/models/([^/]+)", "_retrieve_model"),
    ("DELETE", r"/v1/models/([^/]+)", "_delete_model"),
    ("POST", r"/v1/webhook_endpoints", "_create_endpoint"),
    ("GET", r"/v1/webhook_endpoints", "_list_endpoints"),
    ("GET", r"/v1/webhook_endpoints/([^/]+)", "_retrieve_endpoint"),
    ("POST", r"/v1/webhook_endpoints/([^/]+)", "_update_endpoint"),
    ("DELETE", r"/v1/webhook_endpoints/([^/]+)", "_delete_endpoint"),
    ("POST", r"/v1/webhook_endpoints/([^/]+)/rotate_secret", "_rotate_endpoint_secret"),
    ("POST", r"/v1/webhook_endpoints/([^/]+)/test", "_test_endpoint"),
    ("GET", r"/v1/webhook_event_types", "_list_event_types"),
)
#: the event types an endpoint may subscribe to, as GET /v1/webhook_event_types lists them
_EVENT_TYPES = (
    *("batch.completed", "batch.failed", "batch.expired", "batch.cancelled"),
    *("response.completed", "response.failed", "response.cancelled", "response.incomplete"),
    *("eval.run.succeeded", "eval.run.failed", "eval.run.canceled"),
    *("fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"),
    "realtime.call.incoming",
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

    # "respond" | "drop" | "reset" | "lose_response" | "cut_body" | "slow" | "late" | "stall"
    # | "pass" | "gather"
    action: str
    status: int = 500
    body: bytes | None = None  # None: an OpenAI-shaped error body saying "Injected <status>"
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # real seconds, for "slow"
    fraction: float = 0.5  # share of the body sent, for "cut_body"
    then: Callable[[], Any] | None = None  # run once the request is processed
    barrier: threading.Barrier | None = None  # for "gather"

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
    def lose_response(cls, then: Callable[[], Any] | None = None) -> Fault:
        """Process the request (state changes), then close without a reply.

        `then`, if given, runs after processing: another client's request landing just after.
        """
        return cls("lose_response", then=then)

    @classmethod
    def cut_body(cls, fraction: float = 0.5) -> Fault:
        """Process the request, send the full Content-Length but only `fraction` of the body."""
        return cls("cut_body", fraction=fraction)

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Process the request, then wait `delay` real seconds before replying."""
        return cls("slow", delay=delay)

    @classmethod
    def stall(cls, delay: float, fraction: float = 0.5) -> Fault:
        """Process the request, send `fraction` of the body, then hang for `delay` real
        seconds before closing: a download that stops in the middle."""
        return cls("stall", delay=delay, fraction=fraction)

    @classmethod
    def passes(cls) -> Fault:
        """Let the request by as if nothing were armed: to reach the next ones."""
        return cls("pass")

    @classmethod
    def gather(cls, barrier: threading.Barrier) -> Fault:
        """Wait at `barrier` until its parties are all in, then process the request: proof
        that that many requests are in flight at once (a broken barrier fails the test)."""
        return cls("gather", barrier=barrier)

    @classmethod
    def late(cls, delay: float) -> Fault:
        """Wait `delay` real seconds, then process the request and reply: a request that
        reaches the service after the client has given up on it."""
        return cls("late", delay=delay)


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

    def response(self, azure: bool = False) -> _Response:
        if azure:  # Azure's shape: a code (often the status, as a string) and a message
            error = {"code": self.code or str(self.status), "message": self.message}
            return _Response(self.status, json.dumps({"error": error}).encode())
        return _Response(self.status, _error_json(self.status, self.message, self.param, self.code))


@dataclass
class _Job:
    """What the server keeps about a running batch beyond its JSON."""

    content: bytes  # the input file as it was when the batch was created
    output_expires: int | None  # output_expires_after.seconds
    requests: list[dict[str, Any]] = field(default_factory=list)  # input lines, once validated
    failed: list[bool] = field(default_factory=list)  # fail_rule or flaky_rule, per request
    statuses: list[int] = field(default_factory=list)  # the status each request answers with
    tokens: int = 0  # the batch's prompt tokens, as the enqueued-token limit counts them
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
    kinds: list[tuple[type, str]] = [(bool, "a boolean"), (int, "an integer"), (str, "a string")]
    kinds += [(float, "a decimal"), (list, "an array"), (dict, "an object")]
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


def _json_object(body: bytes) -> dict[str, Any]:
    """A request's JSON body, refused as the API refuses one that is not an object."""
    try:
        params = json.loads(body)
    except ValueError:
        raise _ApiError(400, _BAD_JSON) from None
    if not isinstance(params, dict):
        message = f"Invalid body: expected an object, but got {_json_type(params)} instead."
        raise _ApiError(400, message, None, "invalid_type")
    return params


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
    if not low <= value <= high:
        side, bound = ("below min", f">= {low}") if value < low else ("above max", f"<= {high}")
        message = f"Invalid '{name}': integer {side}imum value. Expected a value {bound}"
        message += f", but got {value} instead."
        raise _ApiError(400, message, name, f"integer_{side.replace(' ', '_')}_value")
    return value


def _check_choice(value: Any, choices: tuple[str, ...], param: str) -> None:
    if value not in choices:
        supported = ", ".join(f"'{choice}'" for choice in choices)
        shown = f"'{value}'" if isinstance(value, str) else json.dumps(value)
        message = f"Invalid value: {shown}. Supported values are: {supported}."
        raise _ApiError(400, message, param, "invalid_value")


def _missing(name: str) -> _ApiError:
    message = f"Missing required parameter: '{name}'."
    return _ApiError(400, message, name, "missing_required_parameter")


def _require_string(params: dict[str, Any], name: str) -> str:
    if name not in params:
        raise _missing(name)
    value = params[name]
    if not isinstance(value, str):
        message = f"Invalid type for '{name}': expected a string, but got {_json_type(value)}"
        raise _ApiError(400, message + " instead.", name, "invalid_type")
    return value


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
            message += f" {_json_type(value)} instead."
            raise _ApiError(400, message, f"metadata.{key}", "invalid_type")
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
    unknown = sorted(value.keys() - {"anchor", "seconds"})
    if unknown:
        name = f"{param}.{unknown[0]}"
        raise _ApiError(400, f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    _check_choice(value.get("anchor"), ("created_at",), f"{param}.anchor")
    seconds = value.get("seconds")
    if type(seconds) is not int or not 3600 <= seconds <= _THIRTY_DAYS:
        message = f"Invalid '{param}.seconds': expected an integer between 3600 and {_THIRTY_DAYS}"
        message += f", but got {json.dumps(seconds)} instead."
        raise _ApiError(400, message, f"{param}.seconds", "invalid_value")
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
        field_name, _, value = line.decode("utf-8", "replace").partition(":")
        if field_name.strip().lower() == "content-disposition":
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
        message = "This line is not parseable as valid JSON."
        raise _ApiError(400, message, None, "invalid_json_line") from None
    if not isinstance(line, dict):
        raise _ApiError(400, "This line is not a JSON object.", None, "invalid_json_line")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        message = "The custom_id for this request must be a non-empty string."
        raise _ApiError(400, message, None, "missing_custom_id")
    if custom_id in seen:
        message = f"The custom_id '{custom_id}' is a duplicate of another request's; it must"
        raise _ApiError(400, message + " be unique in a batch.", None, "duplicate_custom_id")
    seen.add(custom_id)
    if line.get("method") != "POST":
        raise _ApiError(400, "The method for this request must be 'POST'.", None, "invalid_method")
    if line.get("url") != endpoint:
        message = f"The url for this request does not match the batch endpoint '{endpoint}'."
        raise _ApiError(400, message, None, "mismatched_endpoint")
    if not isinstance(line.get("body"), dict):
        message = "The body for this request must be a JSON object."
        raise _ApiError(400, message, None, "invalid_body")
    if not isinstance(line["body"].get("model"), str):
        raise _ApiError(400, "The body for this request must name a model.", None, "missing_model")
    return line


def _check_lines(
    content: bytes, endpoint: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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
        message = "The input file has no requests."
        errors.append({"code": "empty_file", "message": message, "param": None, "line": None})
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


def _prompt(body: dict[str, Any]) -> Any:
    """What a request body asks about: its last message, or its input."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        return messages[-1]
    return body.get("input", body.get("prompt"))


def _chat_reply(body: dict[str, Any], created: int, serial: str) -> dict[str, Any]:
    messages = body.get("messages")
    prompt = _as_text(messages[-1] if isinstance(messages, list) and messages else messages)
    answer = f"echo: {prompt}"
    usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(answer)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    message = {"role": "assistant", "content": answer}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {
        "id": f"chatcmpl-{serial}",
        "object": "chat.completion",
        "created": created,
        "model": body["model"],
        "choices": [choice],
        "usage": usage,
    }


def _embeddings_reply(body: dict[str, Any], created: int, serial: str) -> dict[str, Any]:
    inputs = body.get("input")
    texts = [_as_text(text) for text in (inputs if isinstance(inputs, list) else [inputs])]
    data = [
        {"object": "embedding", "index": k, "embedding": _vector(text)}
        for k, text in enumerate(texts)
    ]
    tokens = sum(_tokens(text) for text in texts)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": body["model"], "usage": usage}


def _responses_reply(body: dict[str, Any], created: int, serial: str) -> dict[str, Any]:
    prompt = _as_text(body.get("input"))
    answer = f"echo: {prompt}"
    content = [{"type": "output_text", "text": answer}]
    output = [{"type": "message", "role": "assistant", "content": content}]
    usage = {"input_tokens": _tokens(prompt), "output_tokens": _tokens(answer)}
    usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    return {
        "id": f"resp_{serial}",
        "object": "response",
        "created_at": created,
        "status": "completed",
        "model": body["model"],
        "output": output,
        "usage": usage,
    }


def _reply(endpoint: str, body: dict[str, Any], created: int, serial: str) -> dict[str, Any]:
    """The deterministic response body of one successful request."""
    replies = {
        "/v1/chat/completions": _chat_reply,
        "/v1/embeddings": _embeddings_reply,
        "/v1/responses": _responses_reply,
    }
    endpoint = endpoint if endpoint.startswith("/v1/") else "/v1" + endpoint  # Azure's
    if endpoint in replies:
        return replies[endpoint](body, created, serial)
    return {"echo": body}


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(byte / 127.5 - 1, 6) for byte in digest[:3]]


def _usage(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch's usage: the sums over its successful responses."""
    usages = [body.get("usage") or {} for body in bodies]
    tokens_in = sum(usage.get("prompt_tokens", usage.get("input_tokens", 0)) for usage in usages)
    tokens_out = sum(
        usage.get("completion_tokens", usage.get("output_tokens", 0)) for usage in usages
    )
    return {
        "input_tokens": tokens_in,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": tokens_out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": tokens_in + tokens_out,
    }


def _oldest_first(items: Any) -> list[dict[str, Any]]:
    # sorted() is stable, so equal created_at keep their creation order.
    return sorted(items, key=lambda item: item["created_at"])


def _page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            message = f"Invalid 'after': no object with id '{after}' in this list."
            raise _ApiError(400, message, "after", "invalid_value")
        items = items[ids.index(after) + 1 :]
    data = items[:limit]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return {
        "object": "list",
        "data": data,
        "first_id": first,
        "last_id": last,
        "has_more": len(items) > limit,
    }


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
        #: decides, when a batch validates, which lines answer 500 the first time they run
        self.flaky_rule: Callable[[dict[str, Any]], bool] = lambda line: False
        self._flaked: set[str] = set()
        #: the most prompt tokens that batches in progress may hold per model; a batch that
        #: would pass it fails validation with token_limit_exceeded, as the real service does
        self.enqueued_token_limit: int | None = None
        #: how many times each custom_id ran, across every batch
        self.ran: dict[str, int] = {}
        #: False: an ended batch carries no usage, as llama-stack's do (its lines still do)
        self.batch_usage = True
        #: exceptions raised inside the fake while handling requests (bugs in the fake, or in
        #: fail_rule); the `api` fixture raises the first one at teardown
        self.errors: list[BaseException] = []
        self.lock = threading.RLock()
        self._faults: list[tuple[str, re.Pattern[str], list[Fault]]] = []
        self._jobs: dict[str, _Job] = {}
        self._made_at: dict[str, float] = {}  # batch id -> exact time it was made
        #: seconds a new batch takes to appear in the batch list, as a real list can lag
        self.list_lag = 0.0
        #: a Date header to send instead of the clock's (a broken server's or proxy's)
        self.date_header: str | None = None
        self._serial = 0
        self._received = 0
        #: Azure mode, when set: the api-version every request must carry; paths under
        #: /openai/, the key in an api-key header (or a token of azure_tokens as Bearer), and
        #: Azure's error bodies
        self.azure_version: str | None = None
        self.azure_tokens: set[str] = set()
        self.endpoint = ""  # Azure's azure_endpoint: the server's origin
        #: the models GET /v1/models lists
        self.models: dict[str, dict[str, Any]] = {
            name: {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": owner}
            for name, owner in (
                ("gpt-4o-mini", "system"),
                ("text-embedding-3-small", "system"),
                ("ft:gpt-4o-mini:acme::abc123", "acme"),
            )
        }
        #: webhook endpoints as the API answers them, and each one's signing secret
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, str] = {}
        #: the sample events sent (endpoint id, event type), and what endpoints answer them
        self.deliveries: list[tuple[str, str]] = []
        self.endpoint_status = 200

    # -- public helpers for tests

    @contextmanager
    def serve(self, tls: Any = None) -> Iterator[FakeAPI]:
        """Serve this fake on 127.0.0.1 in a daemon thread while the block runs.

        With `tls`, an ssl.SSLContext for the server side, it serves HTTPS.
        """
        server = _Server(("127.0.0.1", 0), _Handler)
        server.api = self
        scheme = "http"
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        self.endpoint = f"{scheme}://127.0.0.1:{server.server_port}"
        self.base_url = f"{self.endpoint}/v1"
        with _serving(server):
            yield self

    def arm(self, method: str, path: str, *faults: Fault) -> None:
        """Make the next requests whose path full-matches `path` meet `faults`, in order."""
        with self.lock:
            self._faults.append((method.upper(), re.compile(path), list(faults)))

    def disarm(self) -> None:
        """Forget the faults armed and not met yet."""
        with self.lock:
            self._faults.clear()

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
            expires = fields.pop("output_expires_after", None)
            output_expires = _check_expires_after(expires, "output_expires_after")
            unknown = fields.keys() - set(_BATCH_FIELDS)
            if unknown:
                raise TypeError(f"add_batch() got unknown Batch fields: {sorted(unknown)}")
            batch: dict[str, Any] = dict.fromkeys(_BATCH_FIELDS)
            created = int(fields.get("created_at", self.clock.now))
            batch.update(
                id=self._new_id("batch_", 32),
                object="batch",
                status="validating",
                endpoint="/v1/chat/completions",
                completion_window="24h",
                input_file_id=self._new_id("file-", 24),
                created_at=created,
                expires_at=created + int(self.completion_window_seconds),
                request_counts={"total": 0, "completed": 0, "failed": 0},
            )
            batch.update(fields)
            self.batches[batch["id"]] = batch
            self._made_at[batch["id"]] = min(self.clock.now, batch["created_at"])
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
                if self.azure_version is not None:
                    request = self._from_azure(request)
                else:
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
                return exc.response(azure=self.azure_version is not None)

    def _from_azure(self, request: Recorded) -> Recorded:
        """An Azure request checked as Azure checks it, and routed as the OpenAI one."""
        if not request.path.startswith("/openai/"):
            raise _ApiError(404, "Resource not found")
        if not request.query.get("api-version"):
            message = "Missing API version parameter: the api-version query parameter is required"
            raise _ApiError(400, message, code="MissingApiVersionParameter")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        bearer = scheme.lower() == "bearer" and token in self.azure_tokens
        if not bearer and request.headers.get("api-key") != self.api_key:
            raise _ApiError(
                401,
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
                "to provide a valid key for an active subscription and use a correct regional "
                "API endpoint for your resource.",
            )
        query = {k: v for k, v in request.query.items() if k != "api-version"}
        path = "/v1/" + request.path[len("/openai/") :]
        return Recorded(request.method, path, query, request.headers, request.body)

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
        file: dict[str, Any] = {
            "id": self._new_id("file-", 24),
            "object": "file",
            "bytes": len(content),
            "created_at": created,
            "expires_at": None if expires is None else created + expires,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }
        self.files[file["id"]] = file
        self.contents[file["id"]] = content
        return file

    def _file(self, file_id: str) -> dict[str, Any]:
        if file_id not in self.files:
            raise _ApiError(404, f"No such File object: {file_id}", "id")
        return self.files[file_id]

    def _create_file(self, request: Recorded) -> dict[str, Any]:
        parts = _parse_multipart(request.headers.get("content-type", ""), request.body)
        allowed = {"purpose", "file", "expires_after[anchor]", "expires_after[seconds]"}
        unknown = sorted({name for name, _, _ in parts} - allowed)
        if unknown:
            raise _ApiError(400, f"Unrecognized request argument supplied: {unknown[0]}")
        fields = {name: data.decode("utf-8", "replace") for name, file, data in parts if not file}
        purpose = _require_string(fields, "purpose")
        _check_choice(purpose, _FILE_PURPOSES, "purpose")
        uploads = [(filename, data) for name, filename, data in parts if name == "file"]
        if not uploads or uploads[-1][0] is None:  # a file part needs a filename
            raise _missing("file")
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

    def _list_models(self, request: Recorded) -> dict[str, Any]:
        return {"object": "list", "data": list(self.models.values())}

    def _retrieve_model(self, request: Recorded, model: str) -> dict[str, Any]:
        if model not in self.models:
            message = f"The model '{model}' does not exist or you do not have access to it."
            raise _ApiError(404, message, None, "model_not_found")
        return self.models[model]

    def _delete_model(self, request: Recorded, model: str) -> dict[str, Any]:
        self._retrieve_model(request, model)
        if self.models[model]["owned_by"] in ("system", "openai"):
            message = "You have insufficient permissions for this operation."
            raise _ApiError(403, message, None, "model_not_deletable")
        del self.models[model]
        return {"id": model, "object": "model", "deleted": True}

    # -- webhook endpoints: the secret is answered at creation and rotation, never after

    def _endpoint(self, endpoint_id: str) -> dict[str, Any]:
        if endpoint_id not in self.endpoints:
            raise _ApiError(404, f"No webhook endpoint found with id '{endpoint_id}'.")
        return self.endpoints[endpoint_id]

    def _endpoint_params(self, request: Recorded, known: set[str]) -> dict[str, Any]:
        params = _json_object(request.body) if request.body else {}
        unknown = sorted(params.keys() - known)
        if unknown:
            raise _ApiError(400, f"Unrecognized request argument supplied: {unknown[0]}")
        if "url" in params and not _require_string(params, "url").startswith("https://"):
            raise _ApiError(400, "Invalid 'url': the URL must use https.", "url", "invalid_url")
        if "name" in params:
            _require_string(params, "name")
        kinds = params.get("event_types", ["batch.completed"])
        if not isinstance(kinds, list) or not kinds:
            message = "Invalid 'event_types': expected a non-empty array of event types."
            raise _ApiError(400, message, "event_types", "invalid_type")
        for kind in kinds:
            _check_choice(kind, _EVENT_TYPES, "event_types")
        return params

    def _new_secret(self, endpoint: dict[str, Any]) -> dict[str, Any]:
        secret = "whsec_" + base64.b64encode(self._new_id("", 32).encode()[:24]).decode()
        self.secrets[endpoint["id"]] = secret
        endpoint.update(
            signing_secret_hint=f"whsec_...{secret[-4:]}", updated_at=int(self.clock.now)
        )
        return {**endpoint, "signing_secret": secret}

    def _create_endpoint(self, request: Recorded) -> dict[str, Any]:
        params = self._endpoint_params(request, {"url", "name", "event_types"})
        for name in ("event_types", "name", "url"):
            if name not in params:
                raise _missing(name)
        endpoint = {
            "id": self._new_id("we_", 24),
            "object": "webhook_endpoint",
            "created_at": int(self.clock.now),
            "event_types": params["event_types"],
            "name": params["name"],
            "url": params["url"],
        }
        self.endpoints[endpoint["id"]] = endpoint
        return self._new_secret(endpoint)

    def _list_endpoints(self, request: Recorded) -> dict[str, Any]:
        limit = _int_param(request.query, "limit", 20, 1, 100)
        newest = _oldest_first(self.endpoints.values())[::-1]
        return _page(newest, request.query.get("after"), limit)

    def _retrieve_endpoint(self, request: Recorded, endpoint_id: str) -> dict[str, Any]:
        return self._endpoint(endpoint_id)

    def _update_endpoint(self, request: Recorded, endpoint_id: str) -> dict[str, Any]:
        endpoint = self._endpoint(endpoint_id)
        params = self._endpoint_params(request, {"url", "name", "event_types"})
        if any(endpoint[name] != value for name, value in params.items()):
            endpoint.update(params, updated_at=int(self.clock.now))
        return endpoint

    def _delete_endpoint(self, request: Recorded, endpoint_id: str) -> dict[str, Any]:
        self._endpoint(endpoint_id)
        del self.endpoints[endpoint_id], self.secrets[endpoint_id]
        return {"id": endpoint_id, "object": "webhook_endpoint.deleted", "deleted": True}

    def _rotate_endpoint_secret(self, request: Recorded, endpoint_id: str) -> dict[str, Any]:
        endpoint = self._endpoint(endpoint_id)
        params = _json_object(request.body)
        unknown = sorted(params.keys() - {"keep_old_secret_active_for_24_hours"})
        if unknown:
            raise _ApiError(400, f"Unrecognized request argument supplied: {unknown[0]}")
        keep = params.get("keep_old_secret_active_for_24_hours", False)
        if not isinstance(keep, bool):
            message = "Invalid type for 'keep_old_secret_active_for_24_hours': expected a "
            message += f"boolean, but got {_json_type(keep)} instead."
            raise _ApiError(400, message, "keep_old_secret_active_for_24_hours", "invalid_type")
        return self._new_secret(endpoint)

    def _test_endpoint(self, request: Recorded, endpoint_id: str) -> dict[str, Any]:
        self._endpoint(endpoint_id)
        params = _json_object(request.body)
        kind = _require_string(params, "event_type")
        _check_choice(kind, _EVENT_TYPES, "event_type")
        self.deliveries.append((endpoint_id, kind))
        return {
            "object": "webhook_endpoint.test",
            "webhook_endpoint_id": endpoint_id,
            "event_type": kind,
            "status_code": self.endpoint_status,
            "success": True,
        }

    def _list_event_types(self, request: Recorded) -> dict[str, Any]:
        return {"object": "list", "data": list(_EVENT_TYPES)}

    def _list_files(self, request: Recorded) -> dict[str, Any]:
        query = request.query
        order = query.get("order", "desc")
        _check_choice(order, ("asc", "desc"), "order")
        limit = _int_param(query, "limit", 10_000, 1, 10_000)
        purpose = query.get("purpose")
        files = [
            file
            for file in _oldest_first(self.files.values())
            if purpose is None or file["purpose"] == purpose
        ]
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
        unknown = sorted(params.keys() - known - {"output_expires_after"})
        if unknown:
            raise _ApiError(400, f"Unrecognized request argument supplied: {unknown[0]}")
        file_id = _require_string(params, "input_file_id")
        endpoint = _require_string(params, "endpoint")
        if self.azure_version is not None and not endpoint.startswith("/v1/"):
            endpoint = "/v1" + endpoint  # Azure takes the endpoint with or without /v1
        _check_choice(endpoint, _ENDPOINTS, "endpoint")
        _check_choice(_require_string(params, "completion_window"), ("24h",), "completion_window")
        _check_metadata(params.get("metadata"))
        expires = params.get("output_expires_after")
        _check_expires_after(expires, "output_expires_after")
        if file_id not in self.files:
            raise _ApiError(400, f"Could not find file {file_id}.", "input_file_id")
        if self.files[file_id]["purpose"] != "batch":
            message = f"File {file_id} has purpose '{self.files[file_id]['purpose']}'; the"
            raise _ApiError(400, message + " Batch API needs purpose 'batch'.", "input_file_id")
        fields = {name: params[name] for name in known if name in params}
        return self.add_batch(**fields, output_expires_after=expires)

    def _list_batches(self, request: Recorded) -> dict[str, Any]:
        limit = _int_param(request.query, "limit", 20, 1, 100)
        shown = [  # a list that lags: a batch appears `list_lag` seconds after it is made
            batch
            for batch in self.batches.values()
            if self._made_at[batch["id"]] <= self.clock.now - self.list_lag
        ]
        return _page(_oldest_first(shown)[::-1], request.query.get("after"), limit)

    def _retrieve_batch(self, request: Recorded, batch_id: str) -> dict[str, Any]:
        return self._batch(batch_id)

    def _cancel_batch(self, request: Recorded, batch_id: str) -> dict[str, Any]:
        batch = self._batch(batch_id)
        if batch["status"] in _TERMINAL:
            raise _ApiError(409, f"Cannot cancel a batch with status '{batch['status']}'.")
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
        job.tokens = sum(_tokens(_as_text(_prompt(request["body"]))) for request in requests)
        model = requests[0]["body"]["model"]
        if self._over_token_limit(model, job.tokens):
            message = f"Enqueued token limit reached for {model} in organization org-fake."
            message += f" Limit: {self.enqueued_token_limit:,} enqueued tokens. Please try"
            message += " submitting fewer tasks or wait for other batch jobs to complete."
            error = {"code": "token_limit_exceeded", "message": message, "param": None}
            batch["errors"] = {"object": "list", "data": [{**error, "line": None}]}
            self._enter(batch, job, "failed", at)
            return
        job.requests = requests
        job.statuses = [self._status_of(request) for request in requests]
        job.failed = [status != 200 for status in job.statuses]
        batch["model"] = model
        self._enter(batch, job, "in_progress", at)

    def _status_of(self, request: dict[str, Any]) -> int:
        """400 for a line the fail_rule fails; 500 the first time a flaky line runs; else 200."""
        if self.fail_rule(request):
            return 400
        if self.flaky_rule(request) and request["custom_id"] not in self._flaked:
            self._flaked.add(request["custom_id"])
            return 500
        return 200

    def _over_token_limit(self, model: str, tokens: int) -> bool:
        """Whether a batch of `tokens` would pass the limit, with what is enqueued already."""
        if self.enqueued_token_limit is None:
            return False
        active = ("in_progress", "finalizing")
        enqueued = sum(
            job.tokens
            for batch_id, job in self._jobs.items()
            if self.batches[batch_id]["status"] in active
            and self.batches[batch_id]["model"] == model
        )
        return enqueued + tokens > self.enqueued_token_limit

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

    def _close(
        self, batch: dict[str, Any], job: _Job, status: str, at: float, cutoff: float
    ) -> None:
        """End a batch, writing the results of the requests that finished by `cutoff`."""
        self._count(batch, job, cutoff)
        results = [self._result(batch, job, index) for index in self._done(job, cutoff)]
        random.Random(batch["id"]).shuffle(results)  # the service writes lines out of order
        good = [line for line in results if line["response"]["status_code"] == 200]
        bad = [line for line in results if line["response"]["status_code"] != 200]
        batch["output_file_id"] = self._result_file(batch, job, "output", good, at)
        batch["error_file_id"] = self._result_file(batch, job, "error", bad, at)
        usage = _usage([line["response"]["body"] for line in good])
        batch["usage"] = usage if self.batch_usage else None
        self._enter(batch, job, status, at)

    def _result(self, batch: dict[str, Any], job: _Job, index: int) -> dict[str, Any]:
        request = job.requests[index]
        self.ran[request["custom_id"]] = self.ran.get(request["custom_id"], 0) + 1
        status = job.statuses[index]
        if status == 400:
            body = json.loads(_error_json(400, "Request failed by fail_rule"))
        elif status == 500:
            body = json.loads(_error_json(500, "The server had an error processing this request"))
        else:
            created = int(self._finish_time(job, index))
            serial = self._new_id("", 24)
            status, body = 200, _reply(batch["endpoint"], request["body"], created, serial)
        response = {"status_code": status, "request_id": self._new_id("req_", 32), "body": body}
        return {
            "id": self._new_id("batch_req_", 32),
            "custom_id": request["custom_id"],
            "response": response,
            "error": None,
        }

    def _result_file(
        self, batch: dict[str, Any], job: _Job, kind: str, lines: list[Any], at: float
    ) -> str | None:
        if not lines:
            return None
        content = "".join(json.dumps(line) + "\n" for line in lines).encode()
        filename = f"{batch['id']}_{kind}.jsonl"
        expires = job.output_expires or _THIRTY_DAYS
        return str(self._store_file(content, filename, "batch_output", int(at), expires)["id"])


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[None]:
    """Serve in a daemon thread while the block runs."""
    # A short poll interval keeps shutdown() at teardown quick.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a backlog of 5 drops connections, which wait a second to retry
    api: FakeAPI

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep an exception from the fake for the fixture to raise; the client sees a drop."""
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, OSError):  # OSError: the client left
            self.api.errors.append(error)


class _Handler(BaseHTTPRequestHandler):
    """Transport for FakeAPI: reads requests, applies armed faults, writes responses."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header on the fake's clock, as the real API's is on the real one."""
        import email.utils

        api = self.server.api
        if api.date_header is not None:
            return api.date_header
        now = api.clock.now if timestamp is None else timestamp
        return email.utils.formatdate(now, usegmt=True)

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
        if fault and action == "late":
            time.sleep(fault.delay)
        if fault and fault.barrier is not None:
            fault.barrier.wait()
        response = _injected(fault) if fault and action == "respond" else api._handle(request)
        if fault and fault.then is not None:
            with api.lock:
                fault.then()
        response.headers["x-request-id"] = request_id
        if fault and action == "lose_response":
            return self._hang_up(reset=False)
        if fault and action == "slow":
            time.sleep(fault.delay)
        self._send(response, fault.fraction if fault and action in ("cut_body", "stall") else 1.0)
        if fault and action == "stall":
            time.sleep(fault.delay)

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
        headers = {
            "Content-Type": response.content_type,
            "Content-Length": str(len(response.body)),
            **response.headers,
        }
        for name, value in headers.items():
            self.send_header(name, value)
        try:
            self.end_headers()
            self.wfile.write(response.body[: int(len(response.body) * fraction)])
        except OSError:  # the client gave up, e.g. timed out during a slow fault
            self.close_connection = True
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


_T0 = 1_700_000_000  # FakeClock's default start, as the API's integer timestamps


def _http(
    api: FakeAPI,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    key: str | None = API_KEY,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request to the fake on a fresh connection; `path` is relative to /v1."""
    url = urllib.parse.urlsplit(api.base_url)
    connection = http.client.HTTPConnection(str(url.hostname), url.port, timeout=timeout)
    sent = {} if key is None else {"Authorization": f"Bearer {key}"}
    try:
        connection.request(method, url.path + path, body, {**sent, **(headers or {})})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _http_json(api: FakeAPI, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
    body = None if payload is None else json.dumps(payload).encode()
    status, _, data = _http(api, method, path, body, {"Content-Type": "application/json"})
    return status, json.loads(data)


import os  # noqa: E402
import subprocess  # noqa: E402
import warnings  # noqa: E402

import openai_batch as ob  # noqa: E402
from openai_batch import BatchRequest, Client  # noqa: E402

#: Every message, repr and output a test produced; scanned for the key when the test ends.
_SEEN: list[str] = []
_ENV_NAMES = (
    "OPENAI_API_KEY",
    "OPENAI_WEBHOOK_SECRET",
    "OPENAI_API_VERSION",
    "OPENAI_API_TYPE",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "AZURE_OPENAI_ENDPOINT",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "OPENAI_BASE_URL",
    "OPENAI_CUSTOM_HEADERS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NO_COLOR",
    "OPENAI_BATCH_FORCE_TTY",
    "COLUMNS",
)


def _leaks(texts: list[str], key: str = API_KEY) -> list[str]:
    """The texts that carry the key, or enough of it to matter (its secret half)."""
    return [text for text in texts if key in text or key[len(key) // 2 :] in text]


@pytest.fixture(autouse=True)
def _hermetic_and_scanned(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[None]:
    """No proxy, key or terminal settings leak in from the machine; nothing leaks the key out."""
    for name in _ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    _SEEN.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    out, err = capsys.readouterr()
    produced = [*_SEEN, out, err, *(str(warning.message) for warning in caught)]
    assert not _leaks(produced), "the API key appeared in output, an error or a warning"


def _official() -> Any:
    """The official ``openai`` package, for a side-by-side check: without it, the test skips,
    and ``pytest -q`` says why in one line for all of them."""
    reason = "side by side with the official package, which is not installed (pip install openai)"
    return pytest.importorskip("openai", reason=reason)


@contextmanager
def raises(kind: type[BaseException], match: str | None = None) -> Iterator[Any]:
    """pytest.raises that also hands the error's text and repr to the key scan."""
    with pytest.raises(kind, match=match) as info:
        yield info
    error = info.value
    _SEEN.extend([str(error), repr(error), str(getattr(error, "body", ""))])


def make_client(api: FakeAPI, **options: Any) -> Client:
    """A client of the fake on its clock: retries and polling sleep on it, never for real."""
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "base_url": api.base_url,
        "clock": api.clock.time,
        "sleep": api.clock.sleep,
        "random": lambda: 0.0,
    }
    settings.update(options)
    client = Client(**settings)
    _SEEN.append(repr(client))
    return client


@pytest.fixture
def client(api: FakeAPI) -> Iterator[Client]:
    with make_client(api) as made:
        yield made


def chat_requests(count: int, fail: tuple[int, ...] = ()) -> list[BatchRequest]:
    """Chat requests q0..; those numbered in `fail` meet the fake's fail_rule."""
    return [
        BatchRequest.chat(f"fail-{i}" if i in fail else f"q{i}", "gpt-4o-mini", f"question {i}")
        for i in range(count)
    ]


def write_lines(path: Any, lines: list[Any]) -> str:
    """Write raw lines (dicts become JSON) to a file; return its path."""
    text = "".join((json.dumps(line) if isinstance(line, dict) else line) + "\n" for line in lines)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    return str(path)


def request_line(custom_id: str = "a", **changes: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    }
    line.update(changes)
    return line


def requests_to(api: FakeAPI, method: str, pattern: str) -> list[Recorded]:
    return [r for r in api.requests if r.method == method and re.fullmatch(pattern, r.path)]


class _Proxy(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[tuple[str, str, str]]  # (method, target, Proxy-Authorization)
    refuse = False  # answer CONNECT with 407, as a proxy wanting other credentials does


class _ProxyHandler(BaseHTTPRequestHandler):
    """A forward proxy: absolute-URI requests are relayed, CONNECT opens a tunnel."""

    server: _Proxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _relay(self) -> None:
        self.server.seen.append(
            (self.command, self.path, self.headers.get("Proxy-Authorization", ""))
        )
        target = urllib.parse.urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        upstream = http.client.HTTPConnection(str(target.hostname), target.port, timeout=5)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-authorization"}
        upstream.request(self.command, target.path + "?" + target.query, body, headers)
        reply = upstream.getresponse()
        data = reply.read()
        self.send_response(reply.status)
        for name, value in reply.getheaders():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _relay

    def do_CONNECT(self) -> None:
        self.server.seen.append(("CONNECT", self.path, self.headers.get("Proxy-Authorization", "")))
        if self.server.refuse:
            self.send_response(407, "Proxy Authentication Required")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=5)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        _pipe(self.connection, upstream)


def _pipe(one: socket.socket, other: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(one, selectors.EVENT_READ, other)
        selector.register(other, selectors.EVENT_READ, one)
        while True:
            for key, _ in selector.select(timeout=5):
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not data:
                    other.close()
                    return
                key.data.sendall(data)


@contextmanager
def _proxy() -> Iterator[_Proxy]:
    server = _Proxy(("127.0.0.1", 0), _ProxyHandler)
    server.seen = []
    with _serving(server):
        yield server


_TOO_MANY = (
    "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, "
    "but got an object with 17 properties instead."
)

KEY_FIELD = ob.IDEMPOTENCY_METADATA_KEY


def _key_of(batch: ob.Batch | dict[str, Any]) -> str:
    """The idempotency key a batch (or the fake's record of one) carries."""
    if isinstance(batch, ob.Batch):
        assert batch.idempotency_key is not None
        return batch.idempotency_key
    return str(batch["metadata"][KEY_FIELD])


def _live(api: FakeAPI) -> list[str]:
    """The batches that are running or done, not cancelled: those the account pays for."""
    return [b["id"] for b in api.batches.values() if b["status"] not in ("cancelling", "cancelled")]


def _seeded_file(api: FakeAPI) -> str:
    """An input file put straight into the fake, so that the client has seen no Date header."""
    return str(api.add_file(b"".join(r.to_json().encode() + b"\n" for r in chat_requests(2)))["id"])


def _problems(tmp_path: Any, lines: list[Any], **options: Any) -> list[tuple[int | None, str]]:
    path = write_lines(tmp_path / "in.jsonl", lines)
    with raises(ob.InputFileError) as info:
        ob.validate_input(path, **options)
    return list(info.value.problems)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


class _Phases:
    """A timeout as httpx.Timeout is one to the client: four attributes and nothing more."""

    def __init__(self, connect: Any, read: Any, write: Any = 5.0, pool: Any = 5.0) -> None:
        self.connect, self.read, self.write, self.pool = connect, read, write, pool


@dataclass
class Ran:
    code: int
    out: str
    err: str


def cli(
    client: Client,
    *argv: str,
    tty: bool = False,
    color: bool = False,
    width: int = 100,
) -> Ran:
    """Run `main` in-process against the fake, as a terminal (tty) or a pipe would see it."""
    patch = pytest.MonkeyPatch()
    patch.setenv("OPENAI_BATCH_FORCE_TTY", "1" if tty else "0")
    patch.setenv("COLUMNS", str(width))
    if not color:
        patch.setenv("NO_COLOR", "1")
    capture = _CAPTURE[0]
    capture.readouterr()
    try:
        code = ob.main(list(argv), client=client)
    finally:
        patch.undo()
    out, err = capture.readouterr()
    _SEEN.extend([out, err])
    return Ran(code, out, err)


_CAPTURE: list[Any] = [None]


@pytest.fixture(autouse=True)
def _capture_for_cli(capsys: pytest.CaptureFixture[str]) -> None:
    _CAPTURE[0] = capsys


def _seed_list(api: FakeAPI) -> None:
    """Three batches of different ages and states, with fixed ids."""
    now = int(api.clock.now)
    api.add_batch(
        id="batch_failed",
        status="failed",
        created_at=now - 40 * 86400,
        failed_at=now - 40 * 86400 + 30,
        errors={"object": "list", "data": [{"code": "x", "message": "bad line", "line": 3}]},
    )
    api.add_batch(
        id="batch_embed",
        status="completed",
        endpoint="/v1/embeddings",
        model="text-embedding-3-small",
        created_at=now - 2 * 86400,
        completed_at=now - 2 * 86400 + 600,
        input_file_id="file-in",
        output_file_id="file-out",
        request_counts={"total": 100, "completed": 100, "failed": 0},
        metadata={"team": "search"},
    )
    api.add_batch(
        id="batch_chat",
        status="in_progress",
        model="gpt-4o-mini",
        created_at=now - 3 * 3600,
        in_progress_at=now - 3 * 3600 + 20,
        request_counts={"total": 20, "completed": 7, "failed": 1},
        metadata={"team": "evals", "run": "7"},
    )


def _finished(client: Client, api: FakeAPI, tmp_path: Any, fail: tuple[int, ...] = (1, 3)) -> str:
    path = tmp_path / "in.jsonl"
    ob.write_jsonl(path, chat_requests(5, fail=fail))
    batch = client.submit(path)
    client.batches.wait(batch.id)
    return batch.id


def _module_env(**extra: str) -> dict[str, str]:
    """This interpreter's environment, cleaned by the autouse fixture, finding this checkout."""
    folder = os.path.dirname(os.path.abspath(ob.__file__))
    return {**os.environ, "PYTHONPATH": folder, "PYTHONIOENCODING": "utf-8", **extra}


def _module(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openai_batch", *args],
        env=_module_env(**extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _part_types(api: FakeAPI) -> list[str]:
    """The Content-Type of each upload's file part, as sent."""
    import re

    bodies = [r.body for r in api.requests if r.path.endswith("/files") and r.method == "POST"]
    return [
        re.findall(rb'name="file".*?\r\nContent-Type: ([^\r]*)', b, re.S)[0].decode()
        for b in bodies
    ]


# Every Python block of README.md runs against the fake, and every `$ openai-batch ...` line of
# its console blocks is run in order, in one session, its output compared with what the README
# shows. After a change of output: `python test_openai_batch.py --update-readme`.

_README = os.path.join(os.path.dirname(os.path.abspath(ob.__file__)), "README.md")
# Standalone 32-hex idempotency keys are random, and request ids count every request made.


def _readme_text() -> str:
    with open(_README, encoding="utf-8") as handle:
        return handle.read()


def _readme_blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```", _readme_text(), re.MULTILINE | re.DOTALL)


def _screen(text: str) -> list[str]:
    """What a terminal shows after `text`: lines, carriage returns, and the erase and
    cursor-up escapes the live display uses (any other escape fails the test)."""
    rows, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[\d*[A-Za-z]|[\r\n]|[^\x1b\r\n]+", text):
        if token == "\n":
            row, col = row + 1, 0
            rows += [""] * (row + 1 - len(rows))
        elif token == "\r":
            col = 0
        elif token == "\x1b[2K":
            rows[row] = ""
        elif token == "\x1b[J":
            rows[row] = rows[row][:col]
            del rows[row + 1 :]
        elif token.startswith("\x1b[") and token.endswith("F"):
            row, col = row - int(token[2:-1] or 1), 0
        else:
            assert not token.startswith("\x1b"), token
            rows[row] = rows[row][:col] + token + rows[row][col + len(token) :]
            col += len(token)
    return rows


def _job_input(tmp_path: Any, count: int, fail: tuple[int, ...] = ()) -> str:
    path = str(tmp_path / "in.jsonl")
    ob.write_jsonl(path, chat_requests(count, fail=fail))
    return path


def _output_ids(path: Any) -> list[str]:
    return [json.loads(line)["custom_id"] for line in open(path, encoding="utf-8")]


def _json_lines(path: Any) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


class ScaledClock(FakeClock):
    """Real time, `speed` times faster: the fake's clock when a real process polls it."""

    def __init__(self, speed: float, start: float = 1_700_000_000.0) -> None:
        self.speed, self.origin, self.start = speed, time.monotonic(), start
        super().__init__(start)

    @property  # type: ignore[override]
    def now(self) -> float:
        return self.start + (time.monotonic() - self.origin) * self.speed

    @now.setter
    def now(self, value: float) -> None:
        self.start = value - (time.monotonic() - self.origin) * self.speed


AZURE_VERSION = "2024-10-21"


def make_azure(api: FakeAPI, **options: Any) -> ob.AzureOpenAI:
    """An Azure client of the fake in Azure mode, on its clock."""
    api.azure_version = AZURE_VERSION
    settings: dict[str, Any] = {
        "azure_endpoint": api.endpoint,
        "api_version": AZURE_VERSION,
        "clock": api.clock.time,
        "sleep": api.clock.sleep,
        "random": lambda: 0.0,
    }
    settings.update(options)
    if not {"api_key", "azure_ad_token", "azure_ad_token_provider"} & set(options):
        settings["api_key"] = API_KEY
    client = ob.AzureOpenAI(**settings)
    _SEEN.append(repr(client))
    return client


_ENDINGS = [b"", b"a\nb", b"a\rb\r", b"a\r\r\nb\n", b"\n", b"x\r\n\ry", "\u00e9\rz".encode()]


def _text_and_lines(client: Any, file_id: str) -> list[Any]:
    """A file's text pieces and lines, from its content and from a streamed response."""
    with client.files.with_streaming_response.content(file_id) as response:
        streamed_text = list(response.iter_text())
    with client.files.with_streaming_response.content(file_id) as response:
        streamed_lines = list(response.iter_lines())
    content = [list(client.files.content(file_id).iter_text())]
    content.append(list(client.files.content(file_id).iter_lines()))
    return [content, [streamed_text, streamed_lines]]


@pytest.fixture
def module(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """openai_batch's module settings at their defaults, and no module client yet; the
    settings a test makes are undone after it."""
    defaults = {name: None for name in ob._MODULE_SETTINGS}
    defaults.update(timeout=ob.DEFAULT_TIMEOUT, max_retries=ob.DEFAULT_MAX_RETRIES)
    for name, value in defaults.items():
        monkeypatch.setattr(ob, name, value)
    monkeypatch.setattr(ob, "_MODULE_CLIENT", {})
    yield ob


_NOW = 1_750_000_000
_KEY = bytes(range(32))
_SECRET = "whsec_" + base64.b64encode(_KEY).decode()


@contextmanager
def refused(kind: type[BaseException], message: str) -> Iterator[Any]:
    """pytest.raises for exactly this class (not a subclass) and this message."""
    with pytest.raises(kind) as info:
        yield info
    assert (type(info.value), str(info.value)) == (kind, message)


def webhook_client(secret: str | None = _SECRET, now: float = _NOW) -> ob.Client:
    """A client that never connects, its clock stopped at ``now``."""
    return ob.OpenAI(api_key="sk-test", webhook_secret=secret, clock=lambda: now)


def signature(body: str | bytes, timestamp: object, webhook_id: str, key: bytes = _KEY) -> str:
    text = body if isinstance(body, bytes) else body.encode()
    signed = f"{webhook_id}.{timestamp}.".encode() + text
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(
    body: str | bytes, *, timestamp: object = _NOW, webhook_id: str = "wh_1", key: bytes = _KEY
) -> dict[str, str]:
    """The three headers OpenAI sends with an event."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + signature(body, timestamp, webhook_id, key),
    }


def _raise_for_status_and_requests(client: Any, api: FakeAPI, batch_id: str) -> list[Any]:
    """`e.response.raise_for_status()`, `raw.http_request` and event types' raw response."""
    try:
        client.batches.retrieve("batch_nope")
    except Exception as exc:  # NotFoundError, of either package
        error = exc
    try:
        error.response.raise_for_status()  # type: ignore[attr-defined]
    except Exception as exc:
        raised = exc
    url = str(raised.request.url).replace(api.base_url, "URL")  # type: ignore[attr-defined]
    seen = [type(raised).__name__, str(raised).replace(api.base_url, "URL"), url]
    seen.append(raised.response is error.response)  # type: ignore[attr-defined]
    raw = client.batches.with_raw_response.retrieve(batch_id)
    request = raw.http_request
    seen += [request.method, str(request.url).replace(api.base_url, "URL")]
    seen.append(raw.http_response.raise_for_status().status_code)
    with client.batches.with_streaming_response.retrieve(batch_id) as response:
        seen.append(response.http_request.method)
    types = client.webhooks.event_types.with_raw_response.list()
    return [*seen, types.status_code, type(types.parse()).__name__]


def _wire(api: FakeAPI, ids: list[str]) -> list[tuple[str, str, dict[str, str], Any, str]]:
    """The requests since the last call, ids as "ID": method, path, query, body, type."""

    def plain(text: str) -> str:
        for n, made in enumerate(ids):
            text = text.replace(made, f"ID{n}")
        return text

    sent = [
        (r.method, plain(r.path), {k: plain(v) for k, v in r.query.items()},
         json.loads(r.body) if r.body else None,
         r.headers.get("content-type", "") if r.body else "")  # with no body, no matter
        for r in api.requests
    ]  # fmt: skip
    del api.requests[:]
    return sent


def _public_class(exc: BaseException) -> str:
    """The name of an error's first public class: ours refuse an empty id with a ValueError
    of the command line's own (a usage error there), the official package a plain one."""
    return next(kind.__name__ for kind in type(exc).__mro__ if not kind.__name__.startswith("_"))


_MIXED_LINES = b'{"a": 1}\r\n{"b": "\xc3\xa9"}\n\n{"c": 3}\r{"d": 4}'


def _async_client(api: FakeAPI, kind: str, **options: Any) -> ob.AsyncOpenAI:
    """An async client of the fake on its clock: "openai", or "azure" (the fake in Azure mode)."""
    settings: dict[str, Any] = {
        "clock": api.clock.time,
        "sleep": api.clock.sleep,
        "random": lambda: 0.0,
        **options,
    }
    if kind == "openai":
        return ob.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url, **settings)
    api.azure_version = AZURE_VERSION
    if "azure_ad_token_provider" not in options:
        settings["api_key"] = API_KEY
    return ob.AsyncAzureOpenAI(azure_endpoint=api.endpoint, api_version=AZURE_VERSION, **settings)


# A server with no Batch API, as vLLM, llama.cpp or Ollama is: it answers each request itself.


class ChatServer(ThreadingHTTPServer):
    """An OpenAI-compatible server with no Batch API: chat, embeddings and responses.

    It checks the key, the path and the body, and answers after `latency` seconds with the
    endpoint's shapes and an x-request-id. A request is known by its prompt ("question 7"),
    since the body carries no custom_id. It counts the requests in flight (their peak) and
    the answers for each prompt, refuses the prompts in `refuse` with a 400, breaks the
    connection the times `drop` says for a prompt, answers 500 to those in `broken`, and the
    bytes in `garbled` to those, and, with `capacity` set, answers 429 with a Retry-After to
    a request over it.

    A request is in flight from when its body has been read until the last write of its
    answer begins (or its connection is broken): the count drops before the client can have
    the whole answer, so the peak never exceeds what the client really had outstanding, even
    when it sends its next request before this handler's thread has ended.

    Prompts that misbehave the same way every time they are sent:
    - `hang`: never answered; the handler waits until the client gives up and closes the
      connection (its timeout), and counts the request in flight until it sees that;
    - `gateway_504`: a 504 with the HTML page a gateway (nginx) sends when the model behind
      it takes too long;
    - `too_big`: a 429 with `Retry-After: 1`, as a request larger than the tokens-per-minute
      limit is refused however long the client waits;
    - `limited` (prompt -> times): a 429 with the Retry-After of `retry_after` the next times
      the prompt is sent, then answers as usual: a rate limit that passes;
    - `failing` (prompt -> times): a 500 the next times the prompt is sent, then answers as
      usual: a fault that passes, by the next round if the tries of this one run out;
    - `html`: a 200 with `Content-Type: text/html` and a web page, as a proxy may give;
    - `json_error`: a 200 whose JSON body is `{"error": {"message": ..., "type": ...}}`, as
      some compatible servers report a failure.

    Server-wide switches, which a test may change while a run goes on:
    - `expire_key_after`: after this many 200 answers, every request is answered 401
      "Incorrect API key provided" (the key expired or was revoked) until it is None again;
      a request is refused as it would be answered, so no more than that many 200s are sent;
    - `redirect_to`: every POST is answered `redirect_status` (302 or 307) with this Location,
      before anything else is checked, as a proxy in front of the server would;
    - `web_page`: every GET and POST is answered 200 with a web page: a base URL that is a
      web site, not an API.

    `GET /v1/models` lists one model, as vLLM, llama.cpp and Ollama do (the key checked);
    with `lists_models` False it is a 404 too. A request naming a model in `unknown_models` is
    answered 404 "The model `x` does not exist.", as vLLM answers it. A path the server does
    not serve (the Batch API's /v1/files and /v1/batches among them) is answered
    `no_route_status`: 404, or 405 as some gateways answer.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # a backlog of 5 drops connections, which wait a second to retry

    def __init__(self, latency: float = 0.01, capacity: int | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ChatHandler)
        self.latency, self.capacity = latency, capacity
        self.retry_after: str | None = "1"  # on a 429; None: a 429 that says nothing of when
        self.missing: set[str] = set()  # prompts answered 404 at once
        self.unknown_models: set[str] = set()
        self.lists_models = True
        self.no_route_status = 404
        self.lock = threading.Lock()
        self.in_flight = self.peak = self.refused_429 = 0
        self.answers: dict[str, int] = {}  # prompt -> 200s sent
        self.seen: dict[str, int] = {}  # prompt -> requests received, whatever their answer
        self.arrivals: list[float] = []  # when each request came, on `clock`
        self.clock: Callable[[], float] = time.monotonic
        self.refuse: set[str] = set()
        self.drop: dict[str, int] = {}
        self.broken: set[str] = set()
        self.garbled: dict[str, bytes] = {}
        self.usage = (5, 4)  # prompt and completion tokens of each answer
        self.says_usage = True  # False: answers with no usage at all, as some servers give
        self.hang: set[str] = set()
        self.gateway_504: set[str] = set()
        self.too_big: set[str] = set()
        self.html: set[str] = set()
        self.web_page = False  # every GET and POST answered 200 with a web page
        self.slow: dict[str, float] = {}  # prompt -> seconds more, admitted as it arrives
        self.quota = False  # every POST refused 429 insufficient_quota
        # Down from when `down_after` answers have gone until `down_for` seconds later on
        # `clock`: every GET and POST then gets no answer ("drop") or a gateway's 502.
        self.down_after: int | None = None
        self.down_for, self.down_kind = 0.0, "drop"
        self.down_since: float | None = None
        self.json_error: set[str] = set()
        self.limited: dict[str, int] = {}
        self.failing: dict[str, int] = {}
        self.expire_key_after: int | None = None
        self.redirect_to: str | None = None
        self.redirect_status = 302
        self.ok_answers = 0  # 200s sent with a response, for expire_key_after
        self.redirected = self.refused_401 = 0
        self.stopping = threading.Event()  # set when serve() ends: hanging handlers let go

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # a client killed mid-answer is not

    @contextmanager
    def serve(self) -> Iterator[ChatServer]:
        thread = threading.Thread(target=self.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stopping.set()
            self.shutdown()
            self.server_close()

    def answer(self, path: str, body: dict[str, Any], number: int) -> tuple[int, Any]:
        """The status and JSON body for a valid request to `path` whose prompt is admitted."""
        prompt, model = _prompt(body), body["model"]
        if prompt in self.refuse:
            error = {"message": f"refused: {prompt}", "type": "invalid_request_error"}
            return 400, {"error": {**error, "param": None, "code": None}}
        if prompt in self.broken:
            return 500, {"error": {"message": "The server had an error", "type": "server_error"}}
        if prompt in self.json_error:
            message = f"The model could not answer {prompt}"
            return 200, {"error": {"message": message, "type": "server_error"}}
        tokens_in, tokens_out = self.usage
        if path == "/v1/chat/completions":
            message = {"role": "assistant", "content": f"answer to {prompt}"}
            completion = {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": tokens_in,
                    "completion_tokens": tokens_out,
                    "total_tokens": tokens_in + tokens_out,
                },
            }
            if not self.says_usage:
                del completion["usage"]
            return 200, completion
        if path == "/v1/embeddings":
            vector = [round(0.001 * (number % 97) + 0.1 * i, 6) for i in range(8)]
            return 200, {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                "model": model,
                "usage": {"prompt_tokens": tokens_in, "total_tokens": tokens_in},
            }
        text = {"type": "output_text", "text": f"answer to {prompt}", "annotations": []}
        return 200, {
            "id": f"resp_{number}",
            "object": "response",
            "status": "completed",
            "model": model,
            "output": [{"type": "message", "role": "assistant", "content": [text]}],
            "usage": {
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
                "output_tokens_details": {"reasoning_tokens": 1},
            },
        }

    def is_down(self) -> bool:
        """Whether the server is down now (and, the first time it is due, goes down)."""
        with self.lock:
            due = self.down_after is not None and self.down_since is None
            if due and sum(self.answers.values()) >= (self.down_after or 0):
                self.down_since = self.clock()
            return self.down_since is not None and (self.clock() - self.down_since < self.down_for)

    def key_holds(self, good: bool = False) -> bool:
        """Whether the key is still good (with `good`, for a 200 with a response: counted).

        Decided and counted under the lock as the answer leaves, so that no more than
        `expire_key_after` answers are 200s with a response, however many are in flight.
        """
        with self.lock:
            if self.expire_key_after is not None and self.ok_answers >= self.expire_key_after:
                self.refused_401 += 1
                return False
            self.ok_answers += good
            return True


_GATEWAY_504 = (
    b"<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    b"<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_WEB_PAGE = (
    b'<!doctype html>\n<html lang="en"><head><title>Welcome</title></head>\n'
    b"<body><h1>It works!</h1><p>This is the web page at this address.</p></body></html>\n"
)


def _prompt(body: dict[str, Any]) -> str:
    """What a request asks, which names it: its last message, or its input."""
    if "messages" in body:
        return str(body["messages"][-1]["content"])
    return str(body["input"])


class _ChatHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept-alive connections, as the client's pool expects
    server: ChatServer
    counted = False  # whether this handler's request is in the server's in-flight count

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without this, Nagle's algorithm holds the
        # body for the client's delayed ACK, 40 ms an answer. Servers in use set it too.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: Any) -> None:
        pass

    def leave(self) -> None:
        """No longer in flight: called before the answer's last write, or a hang-up."""
        if self.counted:
            self.counted = False
            with self.server.lock:
                self.server.in_flight -= 1

    def send(
        self,
        status: int,
        data: bytes,
        headers: dict[str, str] | None = None,
        content_type: str | None = "application/json",
    ) -> None:
        """Send a whole answer. The headers go first, then the count drops, then the body:
        the client cannot have read the answer whole before the count has dropped."""
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if not data:  # the headers are the whole answer
            self.leave()
        self.end_headers()
        self.leave()
        self.wfile.write(data)

    def reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send(status, json.dumps(payload).encode("utf-8"), headers)

    def hang_up(self) -> None:
        """Break the connection with no answer; the count drops first."""
        self.leave()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def wait_for_the_client_to_leave(self) -> None:
        """A request never answered: wait until the client closes the connection."""
        import select

        while not self.server.stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        break  # the client closed it: it gave up on the answer
                except OSError:
                    break
        self.leave()
        self.close_connection = True

    def do_GET(self) -> None:
        """`GET /v1/models`, as vLLM, llama.cpp and Ollama serve it, with the key checked (and
        refused once it has expired); every other GET is a 404. Not counted as a request."""
        server = self.server
        if server.is_down():
            self.down()
            return
        if server.redirect_to is not None:
            self.send(server.redirect_status, b"", {"Location": server.redirect_to}, None)
            return
        if server.web_page:
            self.send(200, _WEB_PAGE, content_type="text/html; charset=utf-8")
            return
        if self.headers.get("Authorization") != f"Bearer {API_KEY}" or not server.key_holds():
            self.reply(401, {"error": {"message": "Incorrect API key provided"}})
            return
        if self.path != "/v1/models" or not server.lists_models:
            self.reply(server.no_route_status, {"error": {"message": f"no route {self.path}"}})
            return
        model = {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "test"}
        self.reply(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        server = self.server
        size = int(self.headers["Content-Length"])
        raw = self.rfile.read(size)
        if len(raw) < size:
            return  # the client was killed while it sent
        if server.redirect_to is not None:
            with server.lock:
                server.redirected += 1
            location = {"Location": server.redirect_to}
            self.send(server.redirect_status, b"", location, content_type=None)
            return
        if server.web_page:
            self.send(200, _WEB_PAGE, content_type="text/html; charset=utf-8")
            return
        if server.is_down():
            self.down()
            return
        served = self.path in ("/v1/chat/completions", "/v1/embeddings", "/v1/responses")
        body = json.loads(raw) if served else {}  # an upload's body is a form, not JSON
        if server.quota:
            error = {"message": "You exceeded your current quota, please check your plan and "}
            error["message"] += "billing details."
            error.update(type="insufficient_quota", param=None, code="insufficient_quota")
            self.reply(429, {"error": error})
            return
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            self.reply(401, {"error": {"message": "Incorrect API key provided"}})
            return
        if not served:
            self.reply(server.no_route_status, {"error": {"message": f"no route {self.path}"}})
            return
        assert self.headers["Content-Type"] == "application/json" and body["model"]
        prompt = _prompt(body)
        with server.lock:
            server.in_flight += 1
            self.counted = True
            server.peak = max(server.peak, server.in_flight)
            server.seen[prompt] = server.seen.get(prompt, 0) + 1
            server.arrivals.append(server.clock())
            number = sum(server.seen.values())
            full = server.capacity is not None and server.in_flight > server.capacity
            dropped = server.drop.get(prompt, 0) > 0
            server.drop[prompt] = server.drop.get(prompt, 0) - 1
            limited = server.limited.get(prompt, 0) > 0
            server.limited[prompt] = server.limited.get(prompt, 0) - 1
            full = full or limited
            server.refused_429 += full
        try:
            self.respond(prompt, body, number, full, dropped)
        finally:
            self.leave()  # if an error came before the answer's last write

    def respond(
        self, prompt: str, body: dict[str, Any], number: int, full: bool, dropped: bool
    ) -> None:
        server = self.server
        if prompt in server.missing:  # at once, before the others' latency
            self.reply(404, {"error": {"message": f"no such thing: {prompt}"}})
            return
        if body["model"] in server.unknown_models:
            message = f"The model `{body['model']}` does not exist."
            error = {"message": message, "type": "NotFoundError", "param": None, "code": 404}
            self.reply(404, {"error": error})
            return
        if prompt in server.hang:
            self.wait_for_the_client_to_leave()
            return
        if prompt in server.slow and server.key_holds(good=True):  # admitted, then slow
            time.sleep(server.slow[prompt])
            status, payload = server.answer(self.path, body, number)
            with server.lock:
                server.answers[prompt] = server.answers.get(prompt, 0) + 1
            self.reply(status, payload, {"x-request-id": f"req_{number}"})
            return
        time.sleep(server.latency)
        if dropped:  # no answer at all: the connection breaks
            self.hang_up()
            return
        if not server.key_holds():
            self.expired(number)
            return
        with server.lock:
            failing = not full and server.failing.get(prompt, 0) > 0
            server.failing[prompt] = server.failing.get(prompt, 0) - failing
        if failing:
            error = {"message": "The server had an error", "type": "server_error"}
            self.reply(500, {"error": error}, {"x-request-id": f"req_{number}"})
            return
        if full or prompt in server.too_big:
            self.refuse_429(prompt, body["model"], too_big=not full)
            return
        if prompt in server.gateway_504:
            self.send(504, _GATEWAY_504, content_type="text/html")
            return
        if prompt in server.html:
            self.send(200, _WEB_PAGE, content_type="text/html; charset=utf-8")
            return
        if prompt in server.garbled:
            self.send(200, server.garbled[prompt], content_type=None)
            return
        status, payload = server.answer(self.path, body, number)
        if not server.key_holds(good=status == 200 and "error" not in payload):
            self.expired(number)
            return
        if status == 200 and "error" not in payload:
            with server.lock:
                server.answers[prompt] = server.answers.get(prompt, 0) + 1
        self.reply(status, payload, {"x-request-id": f"req_{number}"})

    def down(self) -> None:
        """What a server that is down gives: no answer, or its gateway's 502."""
        if self.server.down_kind == "drop":
            self.hang_up()
        else:
            self.send(502, b"<html><body>502 Bad Gateway</body></html>", content_type="text/html")

    def expired(self, number: int) -> None:
        message = f"Incorrect API key provided: {_mask(API_KEY)}. You can find your API key at"
        error = {"message": f"{message} https://platform.openai.com/account/api-keys."}
        error.update(type="invalid_request_error", param=None, code="invalid_api_key")
        self.reply(401, {"error": error}, {"x-request-id": f"req_{number}"})

    def refuse_429(self, prompt: str, model: str, too_big: bool) -> None:
        """Over the capacity (a request rate limit), or `too_big` for the tokens-per-minute
        limit: then with a Retry-After of 1 s, which waiting never satisfies."""
        if too_big:
            message = f"Request too large for {model} on tokens per min (TPM): Limit 30000,"
            message += " Requested 52000. The input or output tokens must be reduced in order"
            message += " to run successfully."
            error = {"message": message, "type": "tokens", "param": None}
            self.reply(
                429, {"error": {**error, "code": "rate_limit_exceeded"}}, {"Retry-After": "1"}
            )
            return
        error = {"message": "Rate limit reached", "type": "requests", "code": None}
        after = self.server.retry_after
        self.reply(429, {"error": error}, {"Retry-After": after} if after else {})


def _direct_client(server: ChatServer, speed: float = 50.0, **options: Any) -> Client:
    """A client of the chat server on a clock `speed` times faster than real time, so that
    retry waits and Retry-After pauses pass in milliseconds; the server shares that clock."""
    clock = ScaledClock(speed)
    server.clock = clock.time
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "base_url": server.base_url,
        "clock": clock.time,
        "sleep": lambda seconds: time.sleep(seconds / speed),
        "random": lambda: 0.0,
    }
    settings.update(options)
    client = Client(**settings)
    _SEEN.append(repr(client))
    return client


def _within(seconds: float, call: Callable[[], Any], what: str = "the job") -> Any:
    """What `call` returns (or raises), or a failure if it has not ended within `seconds` real
    seconds: a job that hangs fails its test and never stops the suite. The call runs in a
    daemon thread, left behind if it hangs."""
    outcome: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the test's thread, KeyboardInterrupt too
            outcome.append((False, exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        pytest.fail(f"{what} did not end within {seconds:g} s: it hangs", pytrace=False)
    ended, value = outcome[0]
    if not ended:
        raise value
    return value


PRICES = "OpenAI batch prices of 2026-12 (LiteLLM 1.110.2)"


# ---------------------------------------------------------------- Fakes: self-tests


def test_fake_clock_records_sleeps_without_sleeping() -> None:
    clock = FakeClock(100.0)
    clock.sleep(2.5)
    clock.advance(1)
    assert (clock.time(), clock.sleeps) == (103.5, [2.5])
    with pytest.raises(ValueError):
        clock.sleep(-1)


def test_fake_rejects_requests_without_the_right_key(api: FakeAPI) -> None:
    status, headers, body = _http(api, "GET", "/batches", key=None)
    error = {"message": _NO_KEY, "type": "invalid_request_error", "param": None, "code": None}
    assert (status, json.loads(body)) == (401, {"error": error})
    assert headers["x-request-id"] == "req_1"
    status, headers, body = _http(api, "GET", "/batches", key=API_KEY + "x")
    assert (status, headers["x-request-id"]) == (401, "req_2")
    assert json.loads(body)["error"] == {
        "message": "Incorrect API key provided: sk-te...cD1x.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert API_KEY.encode() not in body
    assert [request.headers.get("authorization") for request in api.requests] == [
        None,
        f"Bearer {API_KEY}x",
    ]


def test_fake_answers_unknown_urls_and_ids_with_404(api: FakeAPI) -> None:
    cases = {
        ("GET", "/xyz"): "Invalid URL (GET /v1/xyz)",
        ("PUT", "/files"): "Invalid URL (PUT /v1/files)",
        ("GET", "/files/file-a%2Fb"): "No such File object: file-a/b",
        ("DELETE", "/files/file-x"): "No such File object: file-x",
        ("GET", "/batches/batch%20x"): "No batch found with id 'batch x'.",
        ("POST", "/batches/batch_x/cancel"): "No batch found with id 'batch_x'.",
    }
    for (method, path), message in cases.items():
        status, body = _http_json(api, method, path)
        assert (status, body["error"]["message"]) == (404, message)


def _multipart_form(filename: str, content: bytes, purpose: str) -> tuple[str, bytes]:
    boundary = "fake-boundary-7f3a"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{purpose}\r\n'
    head += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
    head += "\r\nContent-Type: application/octet-stream\r\n\r\n"
    body = head.encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def _http_upload(
    api: FakeAPI, content: bytes, filename: str = "input.jsonl", purpose: str = "batch"
) -> tuple[int, Any]:
    content_type, body = _multipart_form(filename, content, purpose)
    status, _, data = _http(api, "POST", "/files", body, {"Content-Type": content_type})
    return status, json.loads(data)


def test_fake_upload_round_trips_bytes(api: FakeAPI) -> None:
    content = b'{"a": 1}\r\n\x00\xff\rtail\r\n--fake-boundary\r\n\r\n'
    status, file = _http_upload(api, content, "in.jsonl")
    assert status == 200
    assert file == {
        "id": file["id"],
        "object": "file",
        "bytes": len(content),
        "created_at": _T0,
        "expires_at": _T0 + 30 * 86400,
        "filename": "in.jsonl",
        "purpose": "batch",
        "status": "processed",
        "status_details": None,
    }
    assert re.fullmatch(r"file-[0-9a-f]{24}", file["id"])
    status, headers, body = _http(api, "GET", f"/files/{file['id']}/content")
    assert (status, body, api.contents[file["id"]]) == (200, content, content)
    assert (headers["content-type"], headers["content-length"]) == (
        "application/octet-stream",
        str(len(content)),
    )
    assert _http_json(api, "GET", f"/files/{file['id']}") == (200, file)
    assert _http_json(api, "GET", "/files?purpose=batch")[1]["data"] == [file]
    deleted = {"id": file["id"], "object": "file", "deleted": True}
    assert _http_json(api, "DELETE", f"/files/{file['id']}") == (200, deleted)
    assert (api.files, _http(api, "GET", f"/files/{file['id']}/content")[0]) == ({}, 404)


def test_fake_upload_validates_the_form(api: FakeAPI) -> None:
    status, body = _http_upload(api, b"{}\n", "in.txt")
    assert (status, body["error"]["param"]) == (400, "file")
    assert body["error"]["message"] == "Invalid file format for Batch API. Must be .jsonl"
    assert _http_upload(api, b"x", "in.jsonl", "nope")[1]["error"]["param"] == "purpose"
    api.max_upload_bytes = 3
    assert _http_upload(api, b"1234")[1]["error"]["param"] == "file"
    status, _, body = _http(api, "POST", "/files", b"{}", {"Content-Type": "application/json"})
    assert (status, api.files) == (400, {})


def test_fake_lists_batches_newest_first_with_a_cursor(api: FakeAPI) -> None:
    ids = [api.add_batch(created_at=_T0 + t)["id"] for t in (0, 1, 1, 2, 3)]
    newest = ids[::-1]  # equal created_at: the later one comes first

    def page(query: str) -> tuple[list[str], Any]:
        status, body = _http_json(api, "GET", f"/batches{query}")
        assert status == 200, body
        return [batch["id"] for batch in body["data"]], body

    data, body = page("?limit=2")
    assert (data, body["first_id"], body["last_id"], body["has_more"]) == (
        newest[:2],
        newest[0],
        newest[1],
        True,
    )
    assert page(f"?limit=2&after={newest[1]}")[0] == newest[2:4]
    data, body = page(f"?limit=2&after={newest[3]}")
    assert (data, body["has_more"]) == ([newest[4]], False)
    data, body = page(f"?after={newest[4]}")
    assert (data, body["first_id"], body["last_id"]) == ([], None, None)
    assert page("")[0] == newest
    for query in ("?limit=0", "?limit=101", "?limit=x", "?after=batch_nope"):
        assert _http_json(api, "GET", f"/batches{query}")[0] == 400


def test_fake_lists_files_in_either_order(api: FakeAPI) -> None:
    ids = [api.add_file(b"{}\n", filename=f"{n}.jsonl")["id"] for n in range(3)]
    api.add_file(b"x", filename="x.txt", purpose="user_data")
    body = _http_json(api, "GET", f"/files?purpose=batch&order=asc&after={ids[0]}")[1]
    assert [file["id"] for file in body["data"]] == ids[1:]
    assert len(_http_json(api, "GET", "/files?limit=1")[1]["data"]) == 1
    assert _http_json(api, "GET", "/files?order=up")[1]["error"]["param"] == "order"


def _chat_jsonl(count: int, fail: tuple[int, ...] = ()) -> bytes:
    """A chat completions input file; the requests numbered in `fail` meet fail_rule."""
    lines = []
    for i in range(count):
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"question {i}"}]}
        custom_id = f"fail-{i}" if i in fail else f"req-{i}"
        line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions"}
        lines.append(json.dumps({**line, "body": body}) + "\n")
    return "".join(lines).encode()


def _http_start(api: FakeAPI, content: bytes) -> str:
    """Upload `content` and create a chat completions batch from it; return the batch id."""
    file_id = _http_upload(api, content)[1]["id"]
    payload = {"input_file_id": file_id, "endpoint": "/v1/chat/completions"}
    status, batch = _http_json(api, "POST", "/batches", {**payload, "completion_window": "24h"})
    assert status == 200, batch
    return str(batch["id"])


def _http_batch(api: FakeAPI, batch_id: str) -> Any:
    status, batch = _http_json(api, "GET", f"/batches/{batch_id}")
    assert status == 200, batch
    return batch


def _http_lines(api: FakeAPI, file_id: str) -> list[Any]:
    status, _, data = _http(api, "GET", f"/files/{file_id}/content")
    assert status == 200 and data.endswith(b"\n")
    return [json.loads(line) for line in data.split(b"\n")[:-1]]


def _check_results_of_8(api: FakeAPI, batch: Any) -> None:
    output = _http_lines(api, batch["output_file_id"])
    custom_ids = [line["custom_id"] for line in output]
    assert sorted(custom_ids) == [f"req-{i}" for i in (0, 1, 2, 3, 4, 6, 7)] != custom_ids
    line = next(line for line in output if line["custom_id"] == "req-3")
    assert set(line) == {"id", "custom_id", "response", "error"} and line["error"] is None
    assert line["response"]["status_code"] == 200
    message = line["response"]["body"]["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "echo: question 3"}
    [failed] = _http_lines(api, batch["error_file_id"])
    assert (failed["custom_id"], failed["response"]["status_code"]) == ("fail-5", 400)
    assert failed["response"]["body"]["error"]["message"] == "Request failed by fail_rule"
    file = api.files[batch["output_file_id"]]
    assert (file["filename"], file["purpose"]) == (f"{batch['id']}_output.jsonl", "batch_output")


def test_fake_runs_a_batch_to_completion(api: FakeAPI) -> None:
    batch_id = _http_start(api, _chat_jsonl(8, fail=(5,)))
    batch = _http_batch(api, batch_id)
    assert list(batch) == list(_BATCH_FIELDS)
    assert (batch["status"], batch["model"], batch["created_at"]) == ("validating", None, _T0)
    assert batch["expires_at"] == _T0 + 86400
    api.clock.advance(10)
    batch = _http_batch(api, batch_id)
    assert (batch["status"], batch["in_progress_at"], batch["model"]) == (
        "in_progress",
        _T0 + 10,
        "gpt-4o-mini",
    )
    assert batch["request_counts"] == {"total": 8, "completed": 0, "failed": 0}
    api.clock.advance(6.5)  # requests 0-5 are done, 5 of them failed
    assert _http_batch(api, batch_id)["request_counts"] == {"total": 8, "completed": 5, "failed": 1}
    api.clock.advance(1.5)
    batch = _http_batch(api, batch_id)
    assert (batch["status"], batch["finalizing_at"]) == ("finalizing", _T0 + 18)
    api.clock.advance(5)
    batch = _http_batch(api, batch_id)
    assert (batch["status"], batch["completed_at"]) == ("completed", _T0 + 23)
    assert batch["request_counts"] == {"total": 8, "completed": 7, "failed": 1}
    assert batch["usage"]["total_tokens"] == 7 * (2 + 3)
    _check_results_of_8(api, batch)


def test_fake_cancel_keeps_partial_results(api: FakeAPI) -> None:
    batch_id = _http_start(api, _chat_jsonl(5))
    api.clock.advance(12.5)
    status, batch = _http_json(api, "POST", f"/batches/{batch_id}/cancel")
    assert (status, batch["status"], batch["cancelling_at"]) == (200, "cancelling", _T0 + 12)
    assert batch["request_counts"] == {"total": 5, "completed": 2, "failed": 0}
    assert _http_json(api, "POST", f"/batches/{batch_id}/cancel")[1] == batch
    api.clock.advance(60)
    batch = _http_batch(api, batch_id)
    assert (batch["status"], batch["cancelled_at"]) == ("cancelled", _T0 + 17)
    assert batch["request_counts"] == {"total": 5, "completed": 2, "failed": 0}
    assert sorted(line["custom_id"] for line in _http_lines(api, batch["output_file_id"])) == [
        "req-0",
        "req-1",
    ]
    assert batch["error_file_id"] is None
    status, body = _http_json(api, "POST", f"/batches/{batch_id}/cancel")
    assert (status, body["error"]["message"]) == (
        409,
        "Cannot cancel a batch with status 'cancelled'.",
    )


def test_fake_expiry_keeps_partial_results(api: FakeAPI) -> None:
    api.completion_window_seconds = 13  # requests finish at +11 ... +15
    batch_id = _http_start(api, _chat_jsonl(5, fail=(1,)))
    api.clock.advance(60)
    batch = _http_batch(api, batch_id)
    assert (batch["status"], batch["expired_at"]) == ("expired", _T0 + 13)
    assert (batch["completed_at"], batch["finalizing_at"]) == (None, None)
    assert batch["request_counts"] == {"total": 5, "completed": 2, "failed": 1}
    output = _http_lines(api, batch["output_file_id"])
    assert sorted(line["custom_id"] for line in output) == ["req-0", "req-2"]
    assert [line["custom_id"] for line in _http_lines(api, batch["error_file_id"])] == ["fail-1"]


def test_fake_keeps_an_enqueued_token_limit_per_model(api: FakeAPI) -> None:
    api.enqueued_token_limit = 100  # each request of _chat_jsonl is 2 tokens ("question N")
    first = _http_start(api, _chat_jsonl(40))
    api.clock.advance(10)
    assert _http_batch(api, first)["status"] == "in_progress"  # 80 tokens enqueued
    second = _http_start(api, _chat_jsonl(20))  # 40 more: over the limit while the first runs
    api.clock.advance(10)
    batch = _http_batch(api, second)
    assert batch["status"] == "failed"
    assert batch["errors"]["data"][0]["code"] == "token_limit_exceeded"
    api.clock.advance(100)  # the first is done: the same work fits now
    third = _http_start(api, _chat_jsonl(20))
    api.clock.advance(10)
    assert _http_batch(api, third)["status"] == "in_progress"


def test_fake_flaky_lines_answer_500_once_and_every_run_is_counted(api: FakeAPI) -> None:
    api.flaky_rule = lambda line: line["custom_id"] == "req-1"
    for _ in range(2):
        batch_id = _http_start(api, _chat_jsonl(3))
        api.clock.advance(60)
        batch = _http_batch(api, batch_id)
        assert batch["status"] == "completed"
        lines = _http_lines(api, batch["error_file_id"]) if batch["error_file_id"] else []
        statuses = [line["response"]["status_code"] for line in lines]
        assert statuses == ([500] if _ == 0 else [])
    assert api.ran == {"req-0": 2, "req-1": 2, "req-2": 2}


def test_fake_fails_a_batch_with_bad_input_lines(api: FakeAPI) -> None:
    good = _chat_jsonl(1)
    other_url = good.replace(b"/v1/chat/completions", b"/v1/embeddings").replace(b"req-0", b"e")
    no_model = good.replace(b'"model": "gpt-4o-mini", ', b"").replace(b"req-0", b"m")
    batch_id = _http_start(api, good + b"not json\n" + good + other_url + no_model)
    api.clock.advance(10)
    batch = _http_batch(api, batch_id)
    assert (batch["status"], batch["failed_at"], batch["output_file_id"]) == (
        "failed",
        _T0 + 10,
        None,
    )
    errors = [(error["code"], error["line"]) for error in batch["errors"]["data"]]
    assert errors == [
        ("invalid_json_line", 2),
        ("duplicate_custom_id", 3),
        ("mismatched_endpoint", 4),
        ("missing_model", 5),
    ]


def test_fake_validates_batch_creation(api: FakeAPI) -> None:
    file_id = api.add_file(_chat_jsonl(1))["id"]
    valid = {"input_file_id": file_id, "endpoint": "/v1/embeddings", "completion_window": "24h"}
    cases = {
        "input_file_id": "file-nope",
        "endpoint": "/v1/nope",
        "completion_window": "1h",
        "metadata": {str(n): "v" for n in range(17)},
        "metadata.k": {"k": "v" * 513},
        "output_expires_after.seconds": {"anchor": "created_at", "seconds": 60},
    }
    for param, value in cases.items():
        payload = {**valid, param.split(".")[0]: value}
        status, body = _http_json(api, "POST", "/batches", payload)
        assert (status, body["error"]["param"]) == (400, param), payload
    status, _, body = _http(api, "POST", "/batches", b"{", {"Content-Type": "application/json"})
    assert (status, json.loads(body)["error"]["message"]) == (400, _BAD_JSON)
    assert api.batches == {}


def test_fake_respond_faults_answer_without_processing(api: FakeAPI) -> None:
    api.arm("GET", r"/v1/batches", Fault.error(429, headers={"Retry-After": "2"}))
    api.arm("GET", r"/v1/batches", Fault.html(502, "<html>bad gateway</html>"))
    status, headers, body = _http(api, "GET", "/batches")
    assert (status, headers["retry-after"], headers["x-request-id"]) == (429, "2", "req_1")
    assert json.loads(body)["error"] == {
        "message": "Injected 429",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    status, headers, body = _http(api, "GET", "/batches")
    assert (status, headers["content-type"], body) == (
        502,
        "text/html; charset=utf-8",
        b"<html>bad gateway</html>",
    )
    assert _http(api, "GET", "/batches")[0] == 200


def test_fake_drop_and_reset_leave_the_state_alone(api: FakeAPI) -> None:
    file_id = api.add_file(_chat_jsonl(1))["id"]
    payload = {"input_file_id": file_id, "endpoint": "/v1/chat/completions"}
    payload["completion_window"] = "24h"
    api.arm("POST", r"/v1/batches", Fault.drop(), Fault.reset())
    with pytest.raises(http.client.RemoteDisconnected):
        _http_json(api, "POST", "/batches", payload)
    with pytest.raises(ConnectionResetError) as caught:
        _http_json(api, "POST", "/batches", payload)
    assert caught.type is ConnectionResetError  # not RemoteDisconnected, its subclass
    assert (api.batches, len(api.requests)) == ({}, 2)
    assert _http_json(api, "POST", "/batches", payload)[0] == 200


def test_fake_lost_response_still_changes_the_state(api: FakeAPI) -> None:
    file_id = api.add_file(_chat_jsonl(1))["id"]
    api.arm("DELETE", r"/v1/files/[^/]+", Fault.lose_response())
    with pytest.raises(http.client.RemoteDisconnected):
        _http(api, "DELETE", f"/files/{file_id}")
    assert api.files == {}


def test_fake_cut_body_sends_less_than_content_length(api: FakeAPI) -> None:
    file_id = api.add_file(b"x" * 1000)["id"]
    api.arm("GET", r"/v1/files/[^/]+/content", Fault.cut_body(0.25))
    assert _http(api, "GET", f"/files/{file_id}")[0] == 200  # another path: not armed
    url = urllib.parse.urlsplit(api.base_url)
    connection = http.client.HTTPConnection(str(url.hostname), url.port, timeout=5)
    connection.request(
        "GET", f"/v1/files/{file_id}/content", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    response = connection.getresponse()
    assert (response.status, response.getheader("Content-Length")) == (200, "1000")
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    assert len(caught.value.partial) == 250
    connection.close()


def test_fake_slow_fault_delays_the_response(api: FakeAPI) -> None:
    api.arm("GET", r"/v1/batches", Fault.slow(0.2), Fault.slow(0.2))
    started = time.monotonic()
    assert _http(api, "GET", "/batches")[0] == 200
    assert time.monotonic() - started >= 0.2
    with pytest.raises(socket.timeout):
        _http(api, "GET", "/batches", timeout=0.05)


def test_fake_keeps_connections_alive(api: FakeAPI) -> None:
    url = urllib.parse.urlsplit(api.base_url)
    connection = http.client.HTTPConnection(str(url.hostname), url.port, timeout=5)
    for _ in range(2):
        connection.request("GET", "/v1/batches", headers={"Authorization": f"Bearer {API_KEY}"})
        response = connection.getresponse()
        assert (response.status, response.will_close) == (200, False)
        response.read()
    connection.close()


# ---------------------------------------------------------------- Public surface and import


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(ob).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "openai_batch") == "openai_batch"
        and not isinstance(value, type(ob))
        and name not in {"annotations", "TYPE_CHECKING"}
    }
    # The module client's settings are public and, as in the official package, not in
    # __all__: `from openai import *` brings no `api_key`.
    settings = set(ob._MODULE_SETTINGS)
    assert settings <= public and not settings & set(ob.__all__)
    assert sorted(ob.__all__) == sorted(public - settings)
    assert len(ob.__all__) == len(set(ob.__all__))
    for name in ob.__all__:
        assert getattr(ob, name) is not None


_IMPORT_PROBE = """
import sys, sysconfig
sys.path.insert(0, FOLDER)
before = set(sys.modules)
import openai_batch
after = set(sys.modules)
stdlib = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
for name in sorted(after - before):
    path = getattr(sys.modules[name], "__file__", None) or ""
    where = "stdlib" if not path or any(path.startswith(p) for p in stdlib) else path
    print(name, where)
"""


def test_import_loads_only_the_standard_library_and_nothing_costly() -> None:
    folder = os.path.dirname(os.path.abspath(ob.__file__))
    probe = _IMPORT_PROBE.replace("FOLDER", repr(folder))
    out = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    loaded = dict(line.split(" ", 1) for line in out.splitlines())
    outside = {name: where for name, where in loaded.items() if where != "stdlib"}
    assert list(outside) == ["openai_batch"]  # every other new module is the standard library's
    roots = {name.split(".")[0] for name in loaded}
    if hasattr(sys, "stdlib_module_names"):  # 3.10+ can also say so by name
        assert roots - set(sys.stdlib_module_names) == {"openai_batch"}
    assert not roots & {"ssl", "http", "argparse", "urllib", "email", "typing", "random"}
    # dataclasses imports inspect, ast, dis and tokenize: only introspection needs them
    assert not roots & {"dataclasses", "inspect", "ast", "dis", "tokenize"}
    assert not roots & {"sqlite3", "hashlib"}  # a cache's, and a job's: when first used


_DATACLASS_PROBE = """
import sys
sys.path.insert(0, FOLDER)
import openai_batch as ob
assert "dataclasses" not in sys.modules
import dataclasses
event = ob.BatchCompletedWebhookEvent.from_dict({"id": "e", "created_at": 1, "data": {"id": "b"}})
print(dataclasses.is_dataclass(event), dataclasses.is_dataclass(ob.WebhookEventData))
print([f.name for f in dataclasses.fields(event)])
last = [f for f in dataclasses.fields(ob.InputSummary) if f.name == "warnings"][0]
print(dataclasses.fields(ob.JobReport)[-1].name, last.name, last.default_factory.__name__)
print(dataclasses.asdict(ob.BatchRequest("a", {"model": "m"})))
print(dataclasses.replace(ob.Batch(id="x", status="completed"), id="y"))
print(dataclasses.is_dataclass(ob._Model), ob.Batch.__match_args__[:3])
"""


def test_api_objects_are_dataclasses_made_when_first_asked() -> None:
    """Issue 18, item 8: ``import openai_batch`` imports no ``dataclasses`` (nor ``inspect``,
    which it imports); fields(), asdict(), replace() and is_dataclass() work all the same."""
    folder = os.path.dirname(os.path.abspath(ob.__file__))
    probe = _DATACLASS_PROBE.replace("FOLDER", repr(folder))
    done = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = dataclasses.fields(ob.JobReport)[-1]
    (summary,) = [f for f in dataclasses.fields(ob.InputSummary) if f.name == "warnings"]
    assert done.stdout.splitlines() == [
        "True True",
        "['id', 'created_at', 'data', 'type', 'object']",
        f"{report.name} {summary.name} list",
        "{'custom_id': 'a', 'body': {'model': 'm'}, 'url': <BatchEndpoint.CHAT_COMPLETIONS:"
        " '/v1/chat/completions'>, 'method': 'POST'}",
        repr(ob.Batch(id="y", status="completed")),
        "False ('id', 'object', 'endpoint')",
    ]
    assert summary.name == "warnings" and summary.default_factory is list


def test_api_objects_take_their_fields_as_a_dataclass_init_does() -> None:
    request = ob.BatchRequest("a", {"model": "m"}, method="POST")
    assert (request.custom_id, request.url, request.method) == ("a", "/v1/chat/completions", "POST")
    assert ob.JobReport(output="o").failures == {}
    assert ob.JobReport(output="o").failures is not ob.JobReport(output="o").failures
    for call, message in [
        (
            lambda: ob.BatchRequest(),
            "BatchRequest.__init__() missing 1 required argument: 'custom_id'",
        ),
        (lambda: ob.Batch(nope=1), "Batch.__init__() got an unexpected keyword argument 'nope'"),
        (
            lambda: ob.BatchError("c", code="d"),
            "BatchError.__init__() got multiple values for argument 'code'",
        ),
        (
            lambda: ob.BatchErrors(1, 2, 3),
            "BatchErrors.__init__() takes 3 positional arguments but 4 were given",
        ),
    ]:
        with raises(TypeError) as info:
            call()
        assert str(info.value) == message
    assert hash(ob.BatchRequest) and ob.BatchRequest.__hash__ is None


def _module_sections() -> tuple[list[str], dict[str, int], ast.Module, list[int]]:
    """The module's section titles, the section each top-level name is defined in, its tree,
    and the line each section starts on."""
    with open(ob.__file__, encoding="utf-8") as file:
        source = file.read()
    starts = [n for n, line in enumerate(source.splitlines(), 1) if line.startswith("# ")]
    titles = [line[2:] for line in source.splitlines() if line.startswith("# ")]
    tree = ast.parse(source)
    where: dict[str, int] = {}
    for node in tree.body:
        section = bisect.bisect(starts, node.lineno)  # 0: above the first section
        for sub in ast.walk(node):
            named = (
                getattr(sub, "name", None)
                if isinstance(sub, (ast.FunctionDef, ast.ClassDef))
                else None
            )
            stored = (
                sub.id if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store) else None
            )
            for name in (named, stored):
                if name and (sub is node or not isinstance(node, (ast.FunctionDef, ast.ClassDef))):
                    where.setdefault(name, section)
    return titles, where, tree, starts


def test_the_docstring_map_names_the_sections_in_order_and_where_their_names_live() -> None:
    """Issue 18, item 1: ``grep -n '^# ' openai_batch.py`` prints the map's titles, in order."""
    titles, where, _, _ = _module_sections()
    doc = (ob.__doc__ or "").split("\nMap:", 1)[1]
    mapped = [line[4:] for line in doc.splitlines() if line.startswith("    ") and line[4] != " "]
    assert mapped == titles and len(titles) >= 15
    lists = [line.strip() for line in doc.splitlines() if line.startswith("        ")]
    for number, line in enumerate(lists, 1):
        names = line.split(" -- ")[0].split(", ")
        assert {name: where.get(name) for name in names} == dict.fromkeys(names, number)


def _local_names(function: ast.AST) -> set[str]:
    """The names a function binds: its arguments, assignments, imports and inner definitions."""
    bound = {arg.arg for arg in ast.walk(function) if isinstance(arg, ast.arg)}
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or (
            isinstance(node, ast.ExceptHandler) and node.name
        ):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return bound


def _run_time_names(node: ast.AST, shadowed: frozenset[str] = frozenset()) -> Iterator[ast.Name]:
    """The global names a top-level statement reads when it runs or is called: not those in
    annotations (strings here), nor under ``if TYPE_CHECKING:``, nor a function's own."""
    if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
        children: list[ast.AST] = list(node.orelse)
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        shadowed = shadowed | _local_names(node)
        defaults = node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
        decorators = [] if isinstance(node, ast.Lambda) else node.decorator_list
        body = [node.body] if isinstance(node, ast.Lambda) else node.body
        children = [*defaults, *decorators, *body]
    elif isinstance(node, ast.AnnAssign):
        children = [node.target] + ([node.value] if node.value else [])
    elif isinstance(node, ast.arg):
        children = []
    else:
        children = list(ast.iter_child_nodes(node))
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in shadowed:
        yield node
    for child in children:
        yield from _run_time_names(child, shadowed)


def test_each_section_uses_only_the_sections_above_it() -> None:
    """Issue 18, item 2: the library never reaches down (nor into the command line)."""
    titles, where, tree, starts = _module_sections()
    backward = []
    for node in tree.body:
        here = bisect.bisect(starts, node.lineno)
        for name in _run_time_names(node):
            if where.get(name.id, 0) > here:
                backward.append(f"line {name.lineno}: {name.id} ({titles[where[name.id] - 1]})")
    assert backward == []


def test_the_tests_follow_the_modules_map() -> None:
    """Issue 18, item 7: between the fakes and the README, this file's banners are the
    module's section names (the part before a colon), in the module's order."""
    titles, _, _, _ = _module_sections()
    names = [title.split(":")[0] if title.count(":") and not title.startswith("Command line")
             else title for title in titles]  # fmt: skip
    with open(__file__, encoding="utf-8") as file:
        banners = [line.rstrip("\n").split("- ")[-1] for line in file if line.startswith("# ---")]
    own = ["Fakes", "Fakes: self-tests", "Public surface and import", "The README runs"]
    assert banners[:3] == own[:3] and banners[-1] == own[-1]
    middle = banners[3:-1]
    assert middle == [name for name in names if name in middle] and set(middle) <= set(names)
    assert len(middle) >= len(names) - 1  # every section has tests (Constants may have none)


def test_version_is_a_plain_version_string() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", ob.__version__)


# ---------------------------------------------------------------- Exceptions


def test_status_errors_carry_status_request_id_code_and_param(client: Client, api: FakeAPI) -> None:
    with raises(ob.BadRequestError) as info:
        client.batches.create(input_file_id="file-missing", endpoint="/v1/chat/completions")
    error = info.value
    assert error.status_code == 400
    assert error.request_id == "req_1"
    assert error.param == "input_file_id"
    assert error.type == "invalid_request_error"
    assert isinstance(error.body, dict) and error.body["param"] == "input_file_id"
    assert str(error) == f"{error.message} (request id req_1)"
    assert error.message.startswith("Error code: 400 - ")
    assert error.request is not None
    assert (error.request.method, error.request.url) == ("POST", api.base_url + "/batches")
    assert repr(error.request) == f"_RequestInfo('POST', '{api.base_url}/batches')"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ob.BadRequestError),
        (401, ob.AuthenticationError),
        (403, ob.PermissionDeniedError),
        (404, ob.NotFoundError),
        (409, ob.ConflictError),
        (422, ob.UnprocessableEntityError),
        (429, ob.RateLimitError),
        (418, ob.APIStatusError),
        (500, ob.InternalServerError),
        (503, ob.InternalServerError),
    ],
)
def test_each_status_maps_to_the_official_exception_class(
    api: FakeAPI, status: int, kind: type[ob.APIStatusError]
) -> None:
    client = make_client(api, max_retries=0)
    api.arm("GET", r"/v1/batches/b", Fault.error(status, message=f"it says {status}"))
    with raises(kind) as info:
        client.batches.retrieve("b")
    assert type(info.value) is kind
    assert info.value.status_code == status
    assert info.value.message == f"Error code: {status} - it says {status}"


def test_an_html_error_page_gives_the_right_class_and_its_title(api: FakeAPI) -> None:
    client = make_client(api, max_retries=0)
    page = "<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>"
    api.arm("GET", r"/v1/batches/b", Fault.html(502, page))
    with raises(ob.InternalServerError) as info:
        client.batches.retrieve("b")
    assert info.value.message == "Error code: 502 - 502 Bad Gateway"
    assert info.value.body == page
    assert (info.value.code, info.value.param, info.value.type) == (None, None, None)


def test_an_empty_error_body_is_named_by_its_status(api: FakeAPI) -> None:
    client = make_client(api, max_retries=0)
    api.arm("GET", r"/v1/batches/b", Fault.raw(503, b"", "text/plain"))
    with raises(ob.InternalServerError) as info:
        client.batches.retrieve("b")
    assert str(info.value) == "Error code: 503 - Service Unavailable (request id req_1)"


def test_an_error_response_reads_as_the_official_packages_httpx_response(api: FakeAPI) -> None:
    """Issue 17, item 3: the rate-limit handler people write for the official package."""
    client = make_client(api, max_retries=0)
    headers = {"Retry-After": "7", "X-RateLimit-Remaining-Requests": "0"}
    api.arm("GET", r"/v1/batches/b", Fault.error(429, headers=headers, message="Slow down."))
    with raises(ob.RateLimitError) as info:
        client.batches.retrieve("b")
    response = info.value.response
    assert response.headers.get("retry-after") == response.headers.get("Retry-After") == "7"
    assert response.headers["RETRY-AFTER"] == "7" and "Retry-After" in response.headers
    assert response.headers.get("x-missing") is None and "x-missing" not in response.headers
    assert dict(response.headers)["x-ratelimit-remaining-requests"] == "0"
    assert ("retry-after", "7") in response.headers.items()
    assert {"retry-after", "x-request-id"} <= set(response.headers.keys())
    assert response.headers == dict(response.headers)
    assert response.content == _error_json(429, "Slow down.")
    assert isinstance(response.content, bytes) and response.text == response.content.decode()
    assert response.json()["error"]["message"] == "Slow down."
    assert response.url == api.base_url + "/batches/b"
    assert (response.status_code, response.reason_phrase) == (429, "Too Many Requests")
    assert (response.request.method, response.request.url) == ("GET", response.url)
    assert response.http_version == "HTTP/1.1"
    assert repr(response) == "<Response [429 Too Many Requests]>"
    assert not hasattr(response.request, "headers")  # what was sent carries the key
    seen = [response.text, repr(response), repr(dict(response.headers)), repr(response.request)]
    _SEEN.extend(seen)
    assert not _leaks(seen)


def test_error_classes_keep_the_official_hierarchy() -> None:
    assert issubclass(ob.APITimeoutError, ob.APIConnectionError)
    assert issubclass(ob.APIConnectionError, ob.APIError)
    assert issubclass(ob.NotFoundError, ob.APIStatusError)
    assert issubclass(ob.APIStatusError, ob.APIError)
    assert issubclass(ob.APIError, ob.OpenAIError)
    assert issubclass(ob.InputFileError, ValueError)
    made = ob.NotFoundError("gone")
    assert (made.status_code, made.request_id, str(made)) == (404, None, "gone")
    assert str(ob.APIConnectionError()) == "Connection error."
    assert str(ob.APITimeoutError()) == "Request timed out."


def test_error_response_is_there_for_code_written_for_the_official_package(
    client: Client, api: FakeAPI
) -> None:
    with raises(ob.NotFoundError) as info:
        client.batches.retrieve("batch_nope")
    response = info.value.response
    assert (response.status_code, response.headers["x-request-id"]) == (404, "req_1")
    assert response.json()["error"]["message"] == "No batch found with id 'batch_nope'."
    assert repr(response) == "<Response [404 Not Found]>"  # as httpx writes it
    assert ob.NotFoundError("gone").response.status_code == 404


def test_an_error_code_is_text_as_the_official_package_types_it() -> None:
    assert ob.APIError("m", body={"code": 429}).code == "429"
    assert ob.APIError("m", body={"code": None}).code is None
    assert ob.APIError("m", body="not an object").code is None


def test_raise_for_status_agrees_with_the_official_package(api: FakeAPI) -> None:
    openai = _official()
    batch_id = str(api.add_batch(status="completed")["id"])
    theirs = openai.OpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    ours = _raise_for_status_and_requests(make_client(api), api, batch_id)
    assert ours == _raise_for_status_and_requests(theirs, api, batch_id)


# ---------------------------------------------------------------- Text and JSON lines

# An unpaired surrogate (json.dumps writes one as an escape, as below) reads into a str that no
# UTF-8 file can hold: a request with one could never be written again, nor its results.
_UNPAIRED = "is an unpaired surrogate, which UTF-8 cannot encode"


def test_validate_input_refuses_an_unpaired_surrogate_in_any_string(tmp_path: Any) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi \udc00"}]}
    key = request_line("c", body={"model": "gpt-4o-mini", "messages": [], "user\udfff": "x"})
    lines = [
        request_line("a\ud800"),  # in custom_id, the high half alone
        request_line("b", body=body),  # deep in the body, the low half alone
        json.dumps(key).replace("\\udfff", "\\uDFFF"),  # in a key, in capitals
        request_line("dd\ud800\ud800"),  # two high halves are no pair either
    ]
    assert json.dumps(lines[0]).startswith('{"custom_id": "a\\ud800"')
    assert _problems(tmp_path, lines) == [
        (1, f"not valid JSON: \\ud800 {_UNPAIRED} (column 17)"),
        (2, f"not valid JSON: \\udc00 {_UNPAIRED} (column 147)"),
        (3, f"not valid JSON: \\uDFFF {_UNPAIRED} (column 123)"),
        (4, f"not valid JSON: \\ud800 {_UNPAIRED} (column 18)"),
    ]


def test_validate_input_takes_a_surrogate_pair_and_an_escaped_backslash(tmp_path: Any) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "smile \U0001f600"}]}
    lines = [
        request_line("a", body=body),  # written as \ud83d\ude00
        request_line("b\\ud800"),  # a backslash, then text
        r'{"custom_id": "c\\\ud83d\uDE00", "method": "POST", "url": "/v1/chat/completions", '
        r'"body": {"model": "gpt-4o-mini"}}',
    ]
    path = write_lines(tmp_path / "in.jsonl", lines)
    assert "\\ud83d\\ude00" in (tmp_path / "in.jsonl").read_text()
    assert ob.validate_input(path).requests == 3
    rows = list(ob.read_jsonl(path))
    assert rows[0]["body"] == body and [row["custom_id"] for row in rows[1:]] == [
        "b\\ud800",
        "c\\\U0001f600",
    ]


def test_read_jsonl_refuses_an_unpaired_surrogate_and_results_pass_it_on(tmp_path: Any) -> None:
    requests = write_lines(tmp_path / "in.jsonl", [request_line("a"), request_line("b\udbff")])
    with raises(ob.InputFileError) as info:
        list(ob.read_jsonl(requests))
    assert str(info.value) == f"{requests}: line 2: not valid JSON: \\udbff {_UNPAIRED} (column 17)"
    # A result is the server's, read as written; joining it writes it as an escape again.
    requests = write_lines(tmp_path / "in.jsonl", [request_line("a"), request_line("b")])
    body = {"choices": [{"message": {"content": "cut \ud83d"}}]}
    lines = [{"custom_id": "a", "response": {"status_code": 500, "body": body}}]
    results = write_lines(tmp_path / "out.jsonl", lines)
    [result] = ob.iter_results(results)
    assert result.body == body
    pairs = [
        (request.custom_id, found and found.body)
        for request, found in ob.join_results(requests, results)
    ]
    assert pairs == [("a", body), ("b", None)]
    assert ob.write_failed_requests(requests, results, tmp_path / "retry.jsonl") == 2


def test_write_jsonl_names_the_row_of_an_unpaired_surrogate(tmp_path: Any) -> None:
    target = tmp_path / "out.jsonl"
    with raises(ValueError) as info:
        ob.write_jsonl(target, [request_line("a"), request_line("b\udc00")])
    assert str(info.value) == f"row 2 cannot be written as JSON: \\udc00 {_UNPAIRED}"
    assert os.listdir(tmp_path) == []


# Non-finite numbers: every reader refuses what the validator refuses, naming the line.

_NUMBERS = ",".join(["-0.0123", "1.2e-05"] * 400)  # a line dense with numbers is checked apart


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"a": NaN}', "not valid JSON: NaN is not a JSON number (column 7)"),
        ('{"a": [1, -Infinity]}', "not valid JSON: -Infinity is not a JSON number (column 11)"),
        ('{"a": 1e400}', "not valid JSON: 1e400 is out of range for a float (column 7)"),
        ('{"a": -1E+400}', "not valid JSON: -1E+400 is out of range for a float (column 7)"),
        (
            '{"a": ' + "9" * 309 + ".5}",
            "not valid JSON: 99999999999999999999999… is out of range for a float (column 7)",
        ),
        (
            '{"a": [' + _NUMBERS + ",1e999]}",
            f"not valid JSON: 1e999 is out of range for a float (column {len(_NUMBERS) + 9})",
        ),
        # A line that is not JSON for another reason too keeps the message it had.
        ('{"a": NaN x}', "not valid JSON: Expecting ',' delimiter (column 11)"),
    ],
    ids=["nan", "-infinity", "1e400", "-1E+400", "309 digits", "in an embedding", "and more"],
)
def test_read_jsonl_refuses_numbers_that_json_or_a_float_cannot_hold(
    tmp_path: Any, line: str, message: str
) -> None:
    path = write_lines(tmp_path / "in.jsonl", [{"a": "NaN, Infinity and 1e400 in a string"}, line])
    lines = ob.read_jsonl(path)
    assert next(lines) == {"a": "NaN, Infinity and 1e400 in a string"}
    with raises(ob.InputFileError) as info:
        next(lines)
    assert str(info.value) == f"{path}: line 2: {message}"


def test_validate_input_refuses_nan_infinity_and_numbers_too_large(tmp_path: Any) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    lines = [
        request_line("a", body={"model": "gpt-4o-mini", "temperature": float("nan")}),
        '{"custom_id":"b","method":"POST","url":"/v1/chat/completions",'
        '"body":{"model":"gpt-4o-mini","temperature":1e400}}',
        request_line("c", body={**body, "stop": ["NaN", "Infinity"]}),
    ]
    assert _problems(tmp_path, lines) == [
        (1, "not valid JSON: NaN is not a JSON number (column 117)"),
        (2, "not valid JSON: 1e400 is out of range for a float (column 107)"),
    ]


def test_join_and_retry_files_name_the_line_of_a_non_finite_number(tmp_path: Any) -> None:
    requests = write_lines(tmp_path / "in.jsonl", [request_line("a")])
    result = '{"custom_id": "a", "response": {"status_code": 200, "body": {"x": 1e400}}}'
    results = write_lines(tmp_path / "out.jsonl", [result])
    for call in (
        lambda: list(ob.join_results(requests, results)),
        lambda: ob.write_failed_requests(requests, results, tmp_path / "retry.jsonl"),
    ):
        with raises(ob.InputFileError, match=r"out\.jsonl: line 1: not valid JSON: 1e400 is out"):
            call()
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "out.jsonl"]


# ---------------------------------------------------------------- Enums and API objects

_SPEC_BATCH = {
    "id": "batch_abc123",
    "object": "batch",
    "endpoint": "/v1/completions",
    "model": "gpt-5-2025-08-07",
    "errors": None,
    "input_file_id": "file-abc123",
    "completion_window": "24h",
    "status": "completed",
    "output_file_id": "file-cvaTdG",
    "error_file_id": "file-HOWS94",
    "created_at": 1711471533,
    "in_progress_at": 1711471538,
    "expires_at": 1711557933,
    "finalizing_at": 1711493133,
    "completed_at": 1711493163,
    "failed_at": None,
    "expired_at": None,
    "cancelling_at": None,
    "cancelled_at": None,
    "request_counts": {"total": 100, "completed": 95, "failed": 5},
    "usage": {
        "input_tokens": 1500,
        "input_tokens_details": {"cached_tokens": 1024},
        "output_tokens": 500,
        "output_tokens_details": {"reasoning_tokens": 300},
        "total_tokens": 2000,
    },
    "metadata": {"customer_id": "user_123456789", "batch_description": "Nightly eval job"},
}


def test_batch_parses_the_spec_example_and_gives_it_back_exactly() -> None:
    batch = ob.Batch.from_dict(_SPEC_BATCH)
    assert batch.status is ob.BatchStatus.COMPLETED and batch.status == "completed"
    assert batch.endpoint is ob.BatchEndpoint.COMPLETIONS
    assert batch.request_counts == ob.BatchRequestCounts(total=100, completed=95, failed=5)
    assert isinstance(batch.usage, ob.BatchUsage)
    assert batch.usage.input_tokens_details == ob.InputTokensDetails(cached_tokens=1024)
    assert batch.usage.output_tokens_details == ob.OutputTokensDetails(reasoning_tokens=300)
    assert batch.to_dict() == _SPEC_BATCH
    assert json.loads(batch.to_json()) == _SPEC_BATCH
    assert batch.is_terminal


def test_parsing_survives_what_a_newer_server_may_send() -> None:
    data = {
        "id": "batch_1",
        "status": "paused_for_review",
        "endpoint": "/v1/audio/speech",
        "request_counts": None,
        "errors": {"object": "list", "data": [{"code": "x", "line": 3, "hint": "new"}, "odd"]},
        "usage": "not-an-object",
        "brand_new_field": {"nested": [1, 2]},
    }
    batch = ob.Batch.from_dict(data)
    assert batch.status == "paused_for_review" and not isinstance(batch.status, ob.BatchStatus)
    assert batch.endpoint == "/v1/audio/speech"
    assert batch.created_at is None and batch.request_counts is None
    assert batch.usage == "not-an-object"
    assert isinstance(batch.errors, ob.BatchErrors) and batch.errors.data is not None
    assert batch.errors.data[0] == ob.BatchError(code="x", line=3)
    assert not batch.is_terminal
    assert batch.to_dict() == data


def test_to_dict_follows_changes_and_objects_built_by_hand() -> None:
    batch = ob.Batch.from_dict({"id": "b", "status": "in_progress", "extra": 1})
    batch.status = ob.BatchStatus.CANCELLING
    assert batch.to_dict() == {"id": "b", "status": "cancelling", "extra": 1}
    made = ob.FileDeleted(id="file-1", deleted=True)
    assert made.to_dict() == {"id": "file-1", "object": "file", "deleted": True}
    with raises(TypeError, match=r"^Batch.from_dict\(\) needs a dict, not list$"):
        ob.Batch.from_dict([])  # type: ignore[arg-type]


def test_enums_are_strings_that_print_their_value() -> None:
    assert ob.BatchStatus("expired").is_terminal
    assert not ob.BatchStatus.FINALIZING.is_terminal
    assert {s.value for s in ob.BatchStatus if s.is_terminal} == {
        "completed",
        "failed",
        "expired",
        "cancelled",
    }
    assert f"{ob.BatchEndpoint.EMBEDDINGS}" == "/v1/embeddings"
    assert str(ob.CompletionWindow.HOURS_24) == "24h"
    assert [e.value for e in ob.BatchEndpoint] == list(_ENDPOINTS)


def test_file_objects_parse_with_missing_and_deprecated_fields() -> None:
    data = {"id": "file-1", "object": "file", "bytes": 10, "created_at": 5, "filename": "a.jsonl"}
    file = ob.FileObject.from_dict({**data, "purpose": "batch", "status": "processed"})
    assert (file.bytes, file.purpose, file.expires_at, file.status_details) == (
        10,
        "batch",
        None,
        None,
    )
    assert file.to_dict() == {**data, "purpose": "batch", "status": "processed"}


def test_api_objects_compare_print_and_copy_as_dataclasses_do() -> None:
    import dataclasses

    counts = ob.BatchRequestCounts(total=3, completed=2, failed=1)
    assert repr(counts) == "BatchRequestCounts(total=3, completed=2, failed=1)"
    assert counts == ob.BatchRequestCounts(3, 2, 1) and counts != ob.BatchRequestCounts(3, 2, 0)
    assert counts != ob.InputTokensDetails(3) and counts != (3, 2, 1)
    assert dataclasses.replace(counts, failed=0).to_dict() == {
        "total": 3,
        "completed": 2,
        "failed": 0,
    }
    assert dataclasses.asdict(counts) == {"total": 3, "completed": 2, "failed": 1}
    with raises(TypeError, match="unhashable"):
        hash(counts)


def test_an_absurd_date_is_treated_as_absent(api: FakeAPI) -> None:
    absurd = "Wed, 01 Jan 99999 00:00:00 GMT"
    assert ob._http_date(absurd) is None and ob._http_date("not a date") is None
    assert ob._http_date("Tue, 14 Nov 2023 22:13:20 GMT") == _T0
    client = make_client(api)
    api.arm("GET", r"/v1/batches/b", Fault.error(429, headers={"Retry-After": absurd}))
    api.add_batch(id="b")
    api.date_header = absurd
    assert client.batches.retrieve("b").id == "b"
    assert api.clock.sleeps == [0.5]  # the backoff, as if no Retry-After had come
    file_id = _seeded_file(api)
    api.arm("POST", r"/v1/batches", Fault.lose_response())
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    assert _live(api) == ["b", batch.id]  # no Date to go by: the whole list was read


_OFFICIAL_ORDER = [
    *("id", "completion_window", "created_at", "endpoint", "input_file_id", "object"),
    *("status", "cancelled_at", "cancelling_at", "completed_at", "error_file_id", "errors"),
    *("expired_at", "expires_at", "failed_at", "finalizing_at", "in_progress_at"),
    *("metadata", "model", "output_file_id", "request_counts", "usage"),
]


def test_model_dump_gives_every_field_in_the_official_order(client: Client, api: FakeAPI) -> None:
    sent = api.add_batch(status="completed")
    api.batches[sent["id"]]["novel_field"] = {"kept": ["as", "sent"]}  # newer than this module
    del api.batches[sent["id"]]["usage"]  # a field the server left out
    batch = client.batches.retrieve(sent["id"])
    dumped = batch.model_dump()
    assert list(dumped) == [*_OFFICIAL_ORDER, "novel_field"]
    assert dumped["usage"] is None and dumped["novel_field"] == {"kept": ["as", "sent"]}
    assert list(dumped["request_counts"]) == ["completed", "failed", "total"]
    assert batch.model_dump_json() == json.dumps(dumped, separators=(",", ":"))
    assert json.loads(batch.model_dump_json(indent=2)) == dumped
    assert ob.Batch.model_validate(api.batches[sent["id"]]) == batch
    assert "usage" not in batch.to_dict()
    gone = client.files.delete(_seeded_file(api))
    assert list(gone.model_dump()) == ["id", "deleted", "object"]
    assert "usage" not in batch.model_dump(exclude_unset=True)
    assert None not in batch.model_dump(exclude_none=True).values()
    assert list(batch.model_dump(include={"id", "status"})) == ["id", "status"]
    assert "id" not in batch.model_dump(exclude={"id"}, mode="json", by_alias=True)


def test_model_dump_matches_the_official_package(client: Client, api: FakeAPI) -> None:
    openai = _official()
    sent = api.add_batch(status="failed", errors={"object": "list", "data": [{"code": "x"}]})
    ours = client.batches.retrieve(sent["id"])
    theirs = openai.types.Batch.construct(**sent)  # as the official client builds it
    assert ours.model_dump() == theirs.model_dump()
    assert ours.model_dump_json() == theirs.model_dump_json()


def test_object_helpers_are_the_official_ones(client: Client, api: FakeAPI) -> None:
    """Issue 17, item 7: the request id, the pydantic helpers, and nested include and exclude."""
    sent = api.add_batch(
        status="completed", request_counts={"total": 3, "completed": 2, "failed": 1}
    )
    api.batches[sent["id"]]["novel_field"] = 1  # newer than this module
    batch = client.batches.retrieve(sent["id"])
    assert batch._request_id is not None and batch._request_id.startswith("req_")
    assert client.batches.list()._request_id.startswith("req_")
    assert ob.Batch()._request_id is None  # not from a response
    assert list(ob.Batch.model_fields)[:3] == ["id", "completion_window", "created_at"]
    assert set(ob.FileObject.model_fields) >= {"id", "bytes", "filename", "purpose"}
    assert batch.model_fields_set == set(api.batches[sent["id"]]) - {"novel_field"}
    assert batch.model_extra == {"novel_field": 1}
    copied = batch.model_copy(update={"status": "failed", "x": 2})
    assert (copied.status, batch.status) == ("failed", "completed")
    assert copied.model_extra == {"novel_field": 1, "x": 2} and copied.to_dict()["x"] == 2
    assert {"status", "x"} <= copied.model_fields_set
    assert batch.to_dict() == api.batches[sent["id"]]  # exact, as the server sent it
    text = json.dumps(api.batches[sent["id"]])
    assert ob.Batch.model_validate_json(text) == batch
    built = ob.Batch(**{k: v for k, v in api.batches[sent["id"]].items() if k != "novel_field"})
    assert (
        isinstance(built.request_counts, ob.BatchRequestCounts) and built.request_counts.failed == 1
    )
    constructed = ob.Batch.construct(
        id="b", request_counts={"total": 1, "completed": 1, "failed": 0}
    )
    assert isinstance(constructed.request_counts, ob.BatchRequestCounts)
    assert constructed.model_fields_set == {"id", "request_counts"}
    assert ob.BatchCompletedWebhookEvent(data={"id": "b"}).data == ob.BatchWebhookEventData(id="b")
    dropped = batch.model_dump(exclude={"request_counts": {"failed"}})
    assert dropped["request_counts"] == {"completed": 2, "total": 3}
    picked = batch.model_dump(include={"id": True, "request_counts": {"total"}})
    assert picked == {"id": sent["id"], "request_counts": {"total": 3}}
    assert batch.model_dump_json(include={"id"}) == f'{{"id":"{sent["id"]}"}}'


def test_pages_give_next_page_info_and_dump_as_the_official_ones(
    client: Client, api: FakeAPI
) -> None:
    """Issue 17, item 9: PageInfo with the next cursor, and a page's dumps as the server sent."""
    import asyncio

    for _ in range(3):
        api.add_batch(status="completed")
    newest_first = list(api.batches)[::-1]
    page = client.batches.list(limit=2)
    info = page.next_page_info()
    assert isinstance(info, ob.PageInfo) and info.params == {"after": newest_first[1]}
    assert repr(info) == f"PageInfo(params={{'after': '{newest_first[1]}'}})"
    dumped = page.model_dump()
    assert list(dumped) == ["data", "has_more", "object", "first_id", "last_id"]
    assert [item["id"] for item in dumped["data"]] == newest_first[:2]
    assert dumped["data"][0] == page.data[0].model_dump()
    assert (dumped["has_more"], dumped["object"]) == (True, "list")
    assert (dumped["first_id"], dumped["last_id"]) == tuple(newest_first[:2])
    assert page.to_dict() == {**dumped, "data": [api.batches[i] for i in newest_first[:2]]}
    assert page.model_dump_json() == json.dumps(dumped, separators=(",", ":"))
    assert page._request_id is not None and page._request_id.startswith("req_")
    last = page.get_next_page()
    assert last.has_more is False and not last.has_next_page()
    assert last.next_page_info().params == {"after": newest_first[2]}  # as the official gives
    assert client.batches.list(after=newest_first[2]).next_page_info() is None  # empty page

    async def async_page() -> Any:
        async with ob.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url) as aclient:
            return await aclient.batches.list(limit=2)

    apage = asyncio.run(async_page())
    assert apage.next_page_info().params == info.params
    assert apage.model_dump() == dumped and apage.to_dict() == page.to_dict()
    assert apage.model_dump_json(indent=2) == json.dumps(dumped, indent=2)


def test_metadata_dumps_as_the_official_package_gives_it(api: FakeAPI) -> None:
    """Issue 17, item 2: the same create on both packages dumps the same metadata."""
    openai = _official()
    official = openai.OpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    ours = make_client(api)
    file_id = _seeded_file(api)
    for given in ({"job": "x"}, None):
        options: dict[str, Any] = {"completion_window": "24h"}
        options.update({} if given is None else {"metadata": given})
        made = [
            package.batches.create(
                input_file_id=file_id, endpoint="/v1/chat/completions", **options
            )
            for package in (official, ours)
        ]
        theirs, mine = [
            package.batches.retrieve(batch.id) for package, batch in zip((official, ours), made)
        ]
        assert mine.model_dump(exclude={"id"}) == theirs.model_dump(exclude={"id"})
        assert mine.metadata == theirs.metadata == given
        assert mine.model_dump_json().replace(mine.id, "") == theirs.model_dump_json().replace(
            theirs.id, ""
        )


def test_object_helpers_agree_with_the_official_package(api: FakeAPI) -> None:
    """Issue 17, item 7: the same helpers on the same batch, on both packages."""
    openai = _official()
    sent = api.add_batch(
        status="completed", request_counts={"total": 3, "completed": 2, "failed": 1}
    )
    api.batches[sent["id"]]["novel_field"] = {"kept": 1}
    official = openai.OpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    ours = make_client(api)

    def script(package: Any, client: Any) -> list[Any]:
        batch = client.batches.retrieve(sent["id"])
        copied = batch.model_copy(update={"status": "failed", "x": 2})
        raw = api.batches[sent["id"]]
        known = {k: v for k, v in raw.items() if k != "novel_field"}
        return [
            batch._request_id.startswith("req_"),
            list(package.Batch.model_fields),
            sorted(batch.model_fields_set),
            batch.model_extra,
            (copied.status, copied.model_extra, sorted(copied.model_fields_set), copied.to_dict()),
            package.Batch.model_validate_json(json.dumps(raw)).model_dump(),
            package.Batch(**known).model_dump(),
            package.Batch.construct(**raw).model_dump(),
            batch.model_dump(exclude={"request_counts": {"failed"}}),
            batch.model_dump(include={"id": True, "request_counts": {"total"}}),
            batch.model_dump_json(include={"id", "usage"}, exclude={"usage"}),
            batch.to_dict(),
        ]

    assert script(ob, ours) == script(openai.types, official)


def test_pages_agree_with_the_official_package(api: FakeAPI) -> None:
    """Issue 17, item 9: next_page_info and a page's dumps, sync and async, on both packages."""
    openai = _official()
    import asyncio

    for _ in range(3):
        api.add_batch(status="completed")
    api.add_file(b"{}\n", filename="in.jsonl")

    def seen(page: Any) -> list[Any]:
        info = page.next_page_info()
        return [
            None if info is None else (repr(info), info.params),
            page.model_dump(),
            page.to_dict(),
            page.model_dump_json(),
            page.model_dump(exclude={"first_id"}, include={"data", "first_id", "object"}),
        ]

    def script(client: Any) -> list[Any]:
        page = client.batches.list(limit=2)
        last = page.get_next_page()
        return [seen(page), seen(last), seen(client.files.list())]

    async def async_script(client: Any) -> list[Any]:
        page = await client.batches.list(limit=2)
        return seen(page)

    official = openai.OpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    assert script(make_client(api)) == script(official)
    theirs = openai.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    ours = ob.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    assert asyncio.run(async_script(ours)) == asyncio.run(async_script(theirs))


def _helpers(batch: Any) -> list[Any]:
    """The object helpers with the official keywords, pydantic 1's names and iteration."""
    import warnings

    seen = [
        batch.to_dict(mode="json", use_api_names=False, warnings=False),
        batch.to_dict(exclude_unset=False),
        batch.to_dict(exclude_none=True, exclude_unset=False),
        batch.to_dict(exclude_defaults=True, exclude_unset=False),
        batch.to_json(indent=4, exclude_unset=False, exclude_none=True),
        batch.model_dump(round_trip=True, warnings=False),
        batch.model_dump(exclude_defaults=True),
        batch.model_dump_json(exclude_defaults=True),
        [name for name, _ in batch],
        dict(batch)["metadata"],
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seen += [batch.dict(exclude_none=True), batch.json(), batch.__fields_set__]
    warned = [(w.category, str(w.message).split(" Deprecated in")[0]) for w in caught]
    seen.append([(issubclass(kind, DeprecationWarning), message) for kind, message in warned])
    return seen


def test_object_helpers_take_the_official_keywords(client: Client, api: FakeAPI) -> None:
    """Issue 17 review, item 8: `to_dict`/`to_json` take the official keywords (with none,
    `to_dict()` is still what the server sent), `model_dump` takes `round_trip` and
    `warnings`, pydantic 1's `dict()`, `json()` and `__fields_set__` warn, and an object
    iterates over its fields as pydantic's does."""
    sent = api.add_batch(status="completed", metadata={"a": "b"})
    batch = client.batches.retrieve(sent["id"])
    assert batch.to_dict(mode="json", warnings=False) == batch.to_dict() == sent
    seen = _helpers(batch)
    assert seen[0] == sent and seen[5] == batch.model_dump() == seen[1]
    assert seen[2] == seen[3] == seen[6] == {k: v for k, v in seen[1].items() if v is not None}
    assert json.loads(seen[4]) == seen[2] and seen[4].startswith('{\n    "id"')
    assert json.loads(seen[7]) == seen[6] and ", " not in seen[7]
    assert seen[8] == list(batch.model_dump()) and seen[9] == {"a": "b"}
    assert seen[10] == seen[2] and json.loads(seen[11]) == seen[1]
    assert seen[12] == batch.model_fields_set
    assert seen[13] == [
        (True, "The `dict` method is deprecated; use `model_dump` instead."),
        (True, "The `json` method is deprecated; use `model_dump_json` instead."),
        (True, "The `__fields_set__` attribute is deprecated, use `model_fields_set` instead."),
    ]
    assert batch.to_json(indent=None) == json.dumps(sent, separators=(",", ":"))


def test_object_helper_keywords_agree_with_the_official_package(api: FakeAPI) -> None:
    """Issue 17 review, item 8, side by side (iteration as names: the nested classes differ)."""
    openai = _official()
    sent = api.add_batch(status="completed", metadata={"a": "b"})
    theirs = openai.OpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    mine = _helpers(make_client(api).batches.retrieve(sent["id"]))
    assert mine == _helpers(theirs.batches.retrieve(sent["id"]))


# ---------------------------------------------------------------- HTTP transport


def test_retry_after_seconds_is_obeyed(client: Client, api: FakeAPI) -> None:
    api.add_batch(id="batch_1")
    api.arm("GET", r"/v1/batches/batch_1", Fault.error(429, headers={"Retry-After": "3"}))
    assert client.batches.retrieve("batch_1").id == "batch_1"
    assert api.clock.sleeps == [3.0]


def test_retry_after_ms_is_preferred_to_retry_after(client: Client, api: FakeAPI) -> None:
    api.add_batch(id="batch_1")
    headers = {"retry-after-ms": "1500", "Retry-After": "9"}
    api.arm("GET", r"/v1/batches/batch_1", Fault.error(429, headers=headers))
    client.batches.retrieve("batch_1")
    assert api.clock.sleeps == [1.5]


def test_retry_after_as_an_http_date_is_obeyed(client: Client, api: FakeAPI) -> None:
    import email.utils

    api.add_batch(id="batch_1")
    date = email.utils.formatdate(api.clock.now + 7, usegmt=True)
    api.arm("GET", r"/v1/batches/batch_1", Fault.error(503, headers={"Retry-After": date}))
    client.batches.retrieve("batch_1")
    assert api.clock.sleeps == [7.0]


def test_a_retry_after_beyond_the_cap_is_an_error_at_once(client: Client, api: FakeAPI) -> None:
    api.arm("GET", r"/v1/batches/b", Fault.error(429, headers={"Retry-After": "3600"}))
    with raises(ob.RateLimitError):
        client.batches.retrieve("b")
    assert api.clock.sleeps == [] and len(api.requests) == 1


def test_backoff_doubles_from_half_a_second_to_eight(api: FakeAPI) -> None:
    client = make_client(api, max_retries=6)
    api.arm("GET", r"/v1/batches/b", *[Fault.error(500)] * 7)
    with raises(ob.InternalServerError):
        client.batches.retrieve("b")
    assert api.clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert len(api.requests) == 7


def test_jitter_takes_up_to_a_quarter_off(api: FakeAPI) -> None:
    client = make_client(api, random=lambda: 1.0)
    api.add_batch(id="batch_1")
    api.arm("GET", r"/v1/batches/batch_1", Fault.error(502), Fault.error(502))
    client.batches.retrieve("batch_1")
    assert api.clock.sleeps == [0.375, 0.75]


def test_x_should_retry_overrides_the_status(client: Client, api: FakeAPI) -> None:
    api.add_batch(id="batch_1")
    api.arm("GET", r"/v1/batches/batch_1", Fault.error(400, headers={"x-should-retry": "true"}))
    client.batches.retrieve("batch_1")
    api.arm("GET", r"/v1/batches/batch_1", Fault.error(500, headers={"x-should-retry": "false"}))
    with raises(ob.InternalServerError):
        client.batches.retrieve("batch_1")
    assert len(api.requests) == 3 and api.clock.sleeps == [0.5]


def test_client_errors_are_not_retried(client: Client, api: FakeAPI) -> None:
    with raises(ob.NotFoundError):
        client.batches.retrieve("batch_missing")
    assert len(api.requests) == 1 and api.clock.sleeps == []


def test_retries_stop_at_max_retries(client: Client, api: FakeAPI) -> None:
    api.arm("GET", r"/v1/batches/b", *[Fault.error(409)] * 5)
    with raises(ob.ConflictError):
        client.batches.retrieve("b")
    assert len(api.requests) == 3 and api.clock.sleeps == [0.5, 1.0]


def test_a_refused_connection_is_retried_then_named(api: FakeAPI) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = make_client(api, base_url=f"http://127.0.0.1:{port}/v1")
    with raises(ob.APIConnectionError) as info:
        client.batches.retrieve("b")
    assert str(info.value).startswith(
        f"Connection error (GET http://127.0.0.1:{port}/v1/batches/b): "
    )
    assert "refused" in str(info.value).lower()
    assert api.clock.sleeps == [0.5, 1.0]


@pytest.mark.parametrize("fault", [Fault.drop(), Fault.reset(), Fault.cut_body()])
def test_a_broken_exchange_is_retried(client: Client, api: FakeAPI, fault: Fault) -> None:
    api.add_batch(id="batch_1")
    api.arm("GET", r"/v1/batches/batch_1", fault)
    assert client.batches.retrieve("batch_1").id == "batch_1"
    assert len(api.requests) == 2


def test_a_slow_response_times_out_and_is_retried(api: FakeAPI) -> None:
    client = make_client(api, timeout=0.1)
    api.add_batch(id="batch_1")
    api.arm("GET", r"/v1/batches/batch_1", Fault.slow(0.4))
    assert client.batches.retrieve("batch_1").id == "batch_1"
    assert api.clock.sleeps == [0.5]
    api.arm("GET", r"/v1/batches/batch_1", Fault.slow(0.4))
    with raises(ob.APITimeoutError) as info:
        client.with_options(max_retries=0).batches.retrieve("batch_1")
    assert str(info.value) == f"Request timed out (GET {api.base_url}/batches/batch_1)."


def test_a_success_that_is_not_json_is_a_validation_error(client: Client, api: FakeAPI) -> None:
    api.arm("GET", r"/v1/batches/b", Fault.raw(200, b"OK", "text/plain"))
    with raises(ob.APIResponseValidationError) as info:
        client.batches.retrieve("b")
    expected = f"Expected JSON from GET {api.base_url}/batches/b but got text/plain: OK"
    assert str(info.value) == expected + " (request id req_1)"
    assert (info.value.status_code, info.value.request_id, info.value.body) == (200, "req_1", "OK")
    assert len(api.requests) == 1


def test_a_proxy_login_page_is_named_as_such(client: Client, api: FakeAPI) -> None:
    page = "<html><title>Sign in - Corporate Web Gateway</title><form>...</form></html>"
    api.arm("GET", r"/v1/batches", Fault.html(200, page))
    with raises(ob.APIResponseValidationError) as info:
        client.batches.list()
    assert str(info.value) == (
        f"Expected JSON from GET {api.base_url}/batches but got text/html; charset=utf-8: "
        "Sign in - Corporate Web Gateway (a proxy or login page may be in the way) "
        "(request id req_1)"
    )


def test_a_json_reply_of_the_wrong_shape_is_a_validation_error(
    client: Client, api: FakeAPI
) -> None:
    api.arm("GET", r"/v1/batches/b", Fault.raw(200, b"[1, 2]", "application/json"))
    with raises(
        ob.APIResponseValidationError, match=r"^Expected a JSON object for a batch, got list\.$"
    ):
        client.batches.retrieve("b")
    api.arm("GET", r"/v1/batches", Fault.raw(200, b'{"data": 5}', "application/json"))
    with raises(ob.APIResponseValidationError, match="got int"):
        client.batches.list()


def test_connections_are_kept_alive_between_requests(client: Client, api: FakeAPI) -> None:
    api.add_batch(id="batch_1")
    for _ in range(3):
        client.batches.retrieve("batch_1")
    idle = client._transport.pool._idle
    assert [len(connections) for connections in idle.values()] == [1]


def test_a_kept_alive_connection_the_server_closed_is_replaced_quietly(
    client: Client, api: FakeAPI
) -> None:
    api.add_batch(id="batch_1")
    client.batches.retrieve("batch_1")
    api.arm("GET", r"/v1/batches/batch_1", Fault.drop())
    client.batches.retrieve("batch_1")
    assert api.clock.sleeps == [] and len(api.requests) == 3


def test_requests_carry_the_documented_headers(api: FakeAPI) -> None:
    client = make_client(api, organization="org-1", project="proj-1", default_headers={"X-A": "b"})
    api.add_batch(id="batch_1")
    client.batches.retrieve("batch_1", extra_headers={"X-Extra": "1", "X-A": None})
    headers = api.requests[0].headers
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["accept"] == "application/json"
    assert headers["openai-organization"] == "org-1" and headers["openai-project"] == "proj-1"
    assert headers["user-agent"].startswith(f"openai-batch/{ob.__version__} (Python ")
    assert headers["x-extra"] == "1" and "x-a" not in headers


def test_http_proxy_from_the_environment_with_credentials(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.add_batch(id="batch_1")
    with _proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://alice:s%40cret@127.0.0.1:{proxy.server_port}")
        assert make_client(api).batches.retrieve("batch_1").id == "batch_1"
    token = "Basic " + __import__("base64").b64encode(b"alice:s@cret").decode()
    assert proxy.seen == [("GET", api.base_url + "/batches/batch_1", token)]
    assert "proxy-authorization" not in api.requests[0].headers


def test_no_proxy_sends_requests_directly(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    api.add_batch(id="batch_1")
    with _proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_port}")
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        make_client(api).batches.retrieve("batch_1")
    assert proxy.seen == [] and len(api.requests) == 1


# A test CA, and a certificate it signed for 127.0.0.1, valid until 2126: the "corporate CA"
# that SSL_CERT_FILE names. Made with openssl for these tests; the key guards nothing else.
_CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBpTCCAUugAwIBAgIURE3cqgfIW2nQT4OrbZJuRygL8ZMwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUb3BlbmFpLWJhdGNoIHRlc3QgQ0EwIBcNMjYxMTIzMTk1NTUx
WhgPMjEyNjEwMzAxOTU1NTFaMB8xHTAbBgNVBAMMFG9wZW5haS1iYXRjaCB0ZXN0
IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEiDJn/YnsnHN/BkPS0f2wiloD
rE5DYpfXwgNCGy1PrlkkfGH6J09vzgDcy0J76VlZEfzH7Xxm9t9MQzfiGJvXxaNj
MGEwHQYDVR0OBBYEFG3fKRPlaFDunL3oSSQmYZoIot6eMB8GA1UdIwQYMBaAFG3f
KRPlaFDunL3oSSQmYZoIot6eMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQD
AgEGMAoGCCqGSM49BAMCA0gAMEUCID0Z9GV/Aew56IdowErllDcfwoR+vFNfDgr4
Pl8EjHXrAiEA4/cijOyIqAGZNK/+U05C/kqXuKta8FYWgg13nXPSIOc=
-----END CERTIFICATE-----
"""
_SERVER_PEM = """-----BEGIN CERTIFICATE-----
MIIByTCCAXCgAwIBAgIUSIizsE4fcq23YlbeH3DS/LUuRZgwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUb3BlbmFpLWJhdGNoIHRlc3QgQ0EwIBcNMjYxMTIzMTk1NTUx
WhgPMjEyNjEwMzAxOTU1NTFaMBQxEjAQBgNVBAMMCTEyNy4wLjAuMTBZMBMGByqG
SM49AgEGCCqGSM49AwEHA0IABN+HhqHkwiLHT9tbBK8XPnnSZd1jxXtmEZc28dNn
OVl+3GMdhUVyEgjJnbL5TMbz0A4WV8sRNdIENP3GdWism2ajgZIwgY8wGgYDVR0R
BBMwEYcEfwAAAYIJbG9jYWxob3N0MAwGA1UdEwEB/wQCMAAwDgYDVR0PAQH/BAQD
AgeAMBMGA1UdJQQMMAoGCCsGAQUFBwMBMB8GA1UdIwQYMBaAFG3fKRPlaFDunL3o
SSQmYZoIot6eMB0GA1UdDgQWBBSTNxNp0AAaezOQo4J3xpYCP13JBjAKBggqhkjO
PQQDAgNHADBEAiA+36xHOfhqKucyx3wafS/dCRoh9w+Zr0hsKiR+UHs7xQIgAshW
HkxnJf3XqDmn7ZijdxAnnwMUJLTA+a88VqSs3T8=
-----END CERTIFICATE-----
"""
_SERVER_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgh7Bp4qvkUCNdO4LJ
RWfkidracIwM7ovz9sKRx8VXxCOhRANCAATfh4ah5MIix0/bWwSvFz550mXdY8V7
ZhGXNvHTZzlZftxjHYVFchIIyZ2y+UzG89AOFlfLETXSBDT9xnVorJtm
-----END PRIVATE KEY-----
"""


@contextmanager
def _https_api(tmp_path: Any) -> Iterator[FakeAPI]:
    """The fake API behind TLS with a certificate from the test CA."""
    import ssl

    (tmp_path / "server.pem").write_text(_SERVER_PEM + _SERVER_KEY)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tmp_path / "server.pem"))
    with FakeAPI().serve(tls=context) as fake:
        yield fake


def test_https_through_a_tunnel_trusting_a_corporate_ca(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ca.pem").write_text(_CA_PEM)
    with _https_api(tmp_path) as fake, _proxy() as proxy:
        fake.add_batch(id="batch_1")
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_port}")
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        client = make_client(fake)
        assert client.batches.retrieve("batch_1").id == "batch_1"
        assert client.batches.retrieve("batch_1").id == "batch_1"  # the same tunnel, kept alive
    port = urllib.parse.urlsplit(fake.base_url).port
    assert proxy.seen == [("CONNECT", f"127.0.0.1:{port}", "")]
    assert len(fake.requests) == 2


def test_an_untrusted_certificate_fails_at_once_with_a_hint(tmp_path: Any) -> None:
    with _https_api(tmp_path) as fake:
        client = make_client(fake)
        with raises(ob.APIConnectionError) as info:
            client.batches.retrieve("batch_1")
    assert str(info.value).startswith(f"Certificate verification failed (GET {fake.base_url}")
    assert str(info.value).endswith("point SSL_CERT_FILE at its CA bundle.")
    assert fake.clock.sleeps == [] and fake.requests == []


def test_an_unreadable_ca_file_is_named(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    client = Client(api_key=API_KEY, base_url="https://127.0.0.1:9/v1", max_retries=0)
    with raises(ob.OpenAIError, match=r"^Cannot load the CA certificates named by SSL_CERT_FILE"):
        client.batches.retrieve("b")


def test_a_socks_proxy_is_refused_clearly(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "socks5://127.0.0.1:1080")
    with raises(ob.APIConnectionError) as info:
        make_client(api).batches.retrieve("b")
    assert str(info.value) == (
        "Unsupported proxy socks5://127.0.0.1: only http:// proxies work here."
    )
    assert api.clock.sleeps == []


def test_a_redirect_to_another_host_drops_the_credentials(api: FakeAPI) -> None:
    with FakeAPI().serve() as other:
        other.add_batch(id="batch_1")
        location = other.base_url + "/batches/batch_1"
        api.arm("GET", r"/v1/batches/batch_1", Fault.error(302, headers={"Location": location}))
        client = make_client(api, organization="org-1")
        with raises(ob.AuthenticationError):
            client.batches.retrieve("batch_1")
    assert api.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    sent = other.requests[0].headers
    assert "authorization" not in sent and "openai-organization" not in sent


def test_a_redirect_on_the_same_host_keeps_them(client: Client, api: FakeAPI) -> None:
    api.add_batch(id="batch_2")
    location = "/v1/batches/batch_2"
    api.arm("GET", r"/v1/batches/batch_1", Fault.error(307, headers={"Location": location}))
    assert client.batches.retrieve("batch_1").id == "batch_2"
    assert [r.headers["authorization"] for r in api.requests] == [f"Bearer {API_KEY}"] * 2


def test_redirect_loops_and_redirected_posts_stop(client: Client, api: FakeAPI) -> None:
    loop = Fault.error(302, headers={"Location": "/v1/batches/b"})
    api.arm("GET", r"/v1/batches/b", *[loop] * 6)
    with raises(ob.APIConnectionError, match=r"^Too many redirects \(GET "):
        client.batches.retrieve("b")
    api.arm("POST", r"/v1/batches/b/cancel", Fault.error(307, headers={"Location": "/v1/x"}))
    with raises(ob.APIStatusError) as info:
        client.batches.cancel("b")
    assert info.value.status_code == 307


def test_a_timeout_objects_read_phase_bounds_the_wait_on_the_wire(api: FakeAPI) -> None:
    api.add_batch(id="batch_1")
    quick = _Phases(connect=5, read=0.1)
    for client, call_timeout in [
        (make_client(api, max_retries=0, timeout=quick), ob.NOT_GIVEN),
        (make_client(api, max_retries=0).with_options(timeout=quick), None),
        (make_client(api, max_retries=0), quick),
    ]:
        api.arm("GET", r"/v1/batches/batch_1", Fault.slow(0.4))
        with raises(ob.APITimeoutError) as info:
            client.batches.retrieve("batch_1", timeout=call_timeout)
        assert str(info.value) == f"Request timed out (GET {api.base_url}/batches/batch_1)."
    patient = make_client(api, max_retries=0, timeout=ob.Timeout(0.1, read=5))
    api.arm("GET", r"/v1/batches/batch_1", Fault.slow(0.3))  # connect's 0.1 s is not the read's
    assert patient.batches.retrieve("batch_1").id == "batch_1"


def test_timeout_is_built_as_httpx_timeout_is() -> None:
    timeout = ob.Timeout(60, connect=5)
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (5, 60, 60, 60)
    assert repr(timeout) == "Timeout(connect=5, read=60, write=60, pool=60)"
    assert repr(ob.Timeout(10.0)) == "Timeout(timeout=10.0)"
    assert ob.Timeout(timeout) == timeout and ob.Timeout(_Phases(1, 2, 3, 4)) == ob.Timeout(
        connect=1, read=2, write=3, pool=4
    )
    assert ob.Timeout(None).read is None
    with raises(ValueError) as info:
        ob.Timeout(connect=5)
    assert str(info.value) == (
        "Timeout must either include a default, or set all four parameters explicitly."
    )


# Every fault the client claims to survive, against every operation of the batch lifecycle.
# A cell passes when the outcome is the expected one (retried and succeeded, or the right
# exception with status, request id and a readable message) and nothing is lost.

_LOGIN_PAGE = "<html><head><title>Sign in to Example Gateway</title></head><body>...</body></html>"
_FAULTS: dict[str, Callable[[], list[Fault]] | None] = {
    "429 with Retry-After": lambda: [Fault.error(429, headers={"Retry-After": "2"})],
    "429 with retry-after-ms": lambda: [Fault.error(429, headers={"retry-after-ms": "1500"})],
    "500": lambda: [Fault.error(500)],
    "502 with an HTML body": lambda: [Fault.html(502, "<html><title>502 Bad Gateway</title>")],
    "503": lambda: [Fault.error(503)],
    "connection refused": None,
    "reset before the response": lambda: [Fault.reset()],
    "closed half-way through the body": lambda: [Fault.cut_body()],
    "slower than the timeout": lambda: [Fault.slow(0.5)],
    "200 that is not JSON": lambda: [Fault.raw(200, b"<<not json>>", "text/plain")],
    "proxy login page": lambda: [Fault.html(200, _LOGIN_PAGE)],
}
_WAITS = {"429 with Retry-After": 2.0, "429 with retry-after-ms": 1.5}


@dataclass
class _Operation:
    """One call of the lifecycle, how to set it up, and what "nothing lost" means for it."""

    method: str
    path: str
    prepare: Callable[[FakeAPI, Any], Any]
    run: Callable[[Client, Any, Callable[[], None]], Any]
    succeeded: Callable[[FakeAPI, Any, Any], None]
    intact: Callable[[FakeAPI, Any], None]


def _prepare_batch(api: FakeAPI, tmp_path: Any) -> str:
    return str(api.add_batch(status="in_progress")["id"])


def _prepare_file(api: FakeAPI, tmp_path: Any) -> str:
    return str(api.add_file(b"".join(r.to_json().encode() + b"\n" for r in chat_requests(3)))["id"])


def _prepare_upload(api: FakeAPI, tmp_path: Any) -> Any:
    path = tmp_path / "upload.jsonl"
    ob.write_jsonl(path, chat_requests(3000))
    return path


def _prepare_download(api: FakeAPI, tmp_path: Any) -> tuple[str, Any, bytes]:
    data = b"".join(b'{"custom_id": "r%d", "response": null}\n' % i for i in range(8000))
    return str(api.add_file(data)["id"]), tmp_path / "out.jsonl", data


def _prepare_list(api: FakeAPI, tmp_path: Any) -> list[str]:
    return [str(api.add_batch(created_at=_T0 - i)["id"]) for i in range(250)]


def _prepare_wait(api: FakeAPI, tmp_path: Any) -> str:
    file_id = _prepare_file(api, tmp_path)
    return str(api.add_batch(input_file_id=file_id, status="validating")["id"])


def _list_all(client: Client, ids: list[str], arm: Callable[[], None]) -> list[str]:
    page = client.batches.list(limit=100)
    arm()  # the fault meets the second page, in the middle of the listing
    return [batch.id for batch in page]


def _armed_first(
    call: Callable[[Client, Any], Any],
) -> Callable[[Client, Any, Callable[[], None]], Any]:
    def run(client: Client, state: Any, arm: Callable[[], None]) -> Any:
        arm()
        return call(client, state)

    return run


def _no_partial_file(api: FakeAPI, state: tuple[str, Any, bytes]) -> None:
    target = state[1]
    assert not target.exists() and os.listdir(target.parent) == []


_OPERATIONS = {
    "retrieve": _Operation(
        "GET",
        r"/v1/batches/[^/]+",
        _prepare_batch,
        _armed_first(lambda client, batch_id: client.batches.retrieve(batch_id)),
        lambda api, batch_id, batch: _check(batch.id == batch_id),
        lambda api, batch_id: None,
    ),
    "list page in the middle": _Operation(
        "GET",
        r"/v1/batches",
        _prepare_list,
        _list_all,
        lambda api, ids, listed: _check(listed == ids),  # no batch skipped, none repeated
        lambda api, ids: None,
    ),
    "create": _Operation(
        "POST",
        r"/v1/batches",
        _prepare_file,
        _armed_first(
            lambda client, file_id: client.batches.create(
                input_file_id=file_id, endpoint="/v1/chat/completions"
            )
        ),
        lambda api, file_id, batch: _check(list(api.batches) == [batch.id]),  # exactly one
        lambda api, file_id: _check(api.batches == {}),
    ),
    "cancel": _Operation(
        "POST",
        r"/v1/batches/[^/]+/cancel",
        _prepare_batch,
        _armed_first(lambda client, batch_id: client.batches.cancel(batch_id)),
        lambda api, batch_id, batch: _check(api.batches[batch_id]["status"] == "cancelling"),
        lambda api, batch_id: _check(api.batches[batch_id]["status"] == "in_progress"),
    ),
    "upload": _Operation(
        "POST",
        r"/v1/files",
        _prepare_upload,
        _armed_first(lambda client, path: client.files.create(file=path)),
        lambda api, path, file: _check(api.contents[file.id] == path.read_bytes()),
        lambda api, path: _check(api.files == {}),
    ),
    "download": _Operation(
        "GET",
        r"/v1/files/[^/]+/content",
        _prepare_download,
        _armed_first(lambda client, state: client.files.content(state[0]).write_to_file(state[1])),
        lambda api, state, written: _check(state[1].read_bytes() == state[2]),
        _no_partial_file,
    ),
    "wait": _Operation(
        "GET",
        r"/v1/batches/[^/]+",
        _prepare_wait,
        _armed_first(lambda client, batch_id: client.batches.wait(batch_id, poll_interval=5)),
        lambda api, batch_id, batch: _check(batch.status == "completed"),
        lambda api, batch_id: None,
    ),
}


def _check(condition: bool) -> None:
    assert condition


def _expected(fault: str, operation: str) -> str:
    if fault == "connection refused":
        return "connection error"
    if fault == "200 that is not JSON" and operation == "download":
        return "saved as sent"  # a file's content may be anything but a web page
    if fault in ("200 that is not JSON", "proxy login page"):
        return "validation error"
    return "retried"


def _closed_port() -> int:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return int(unused.getsockname()[1])


@pytest.mark.parametrize("operation", list(_OPERATIONS))
@pytest.mark.parametrize("fault", list(_FAULTS))
def test_fault_matrix(api: FakeAPI, tmp_path: Any, fault: str, operation: str) -> None:
    spec = _OPERATIONS[operation]
    (tmp_path / "work").mkdir()
    state = spec.prepare(api, tmp_path / "work")
    api.requests.clear()
    client = make_client(api, timeout=0.25)
    faults = _FAULTS[fault]
    if faults is None:
        client = make_client(api, base_url=f"http://127.0.0.1:{_closed_port()}/v1")

    armed_at = [0]

    def arm() -> None:
        armed_at[0] = len(api.requests)
        if faults is not None:
            api.arm(spec.method, spec.path, *faults())

    expected = _expected(fault, operation)
    if expected in ("retried", "saved as sent"):
        result = spec.run(client, state, arm)
        if expected == "retried":
            spec.succeeded(api, state, result)
        else:
            assert state[1].read_bytes() == b"<<not json>>"
        if fault in _WAITS:
            assert api.clock.sleeps[0] == _WAITS[fault]
        return
    kind = (
        ob.APIConnectionError if expected == "connection error" else ob.APIResponseValidationError
    )
    with raises(kind) as info:
        spec.run(client, state, arm)
    error = info.value
    if kind is ob.APIResponseValidationError:
        assert (error.status_code, error.request_id) == (200, f"req_{api._received}")
        what = "file content" if operation == "download" else "JSON"
        assert str(error).startswith(f"Expected {what} from ")
        since_armed = api.requests[armed_at[0] :]
        assert sum(1 for r in since_armed if re.fullmatch(spec.path, r.path)) == 1  # not retried
    else:
        assert str(error).startswith("Connection error (") and "refused" in str(error).lower()
    spec.intact(api, state)


def test_the_key_scan_catches_the_key_whole_or_in_part() -> None:
    assert _leaks([f"header Bearer {API_KEY}", "nothing here"]) == [f"header Bearer {API_KEY}"]
    secret_half = API_KEY[len(API_KEY) // 2 :]
    assert _leaks([f"...{secret_half}"]) == [f"...{secret_half}"]
    assert _leaks(["Incorrect API key provided: sk-te...cD1."]) == []


def test_no_repr_or_error_shows_the_key(api: FakeAPI) -> None:
    client = make_client(api, max_retries=0)
    shown = [repr(client), repr(client.batches.list()), str(vars(client.batches))]
    for fault in (Fault.error(401), Fault.drop(), Fault.html(502, "<title>x</title>")):
        api.arm("GET", r"/v1/batches/b", fault)
        with raises(ob.APIError) as info:
            client.batches.retrieve("b")
        shown += [
            str(info.value),
            repr(info.value),
            repr(info.value.request),
            str(vars(info.value)),
        ]
    _SEEN.extend(shown)
    assert not _leaks(shown)


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"slept {seconds} s")


def test_a_proxy_that_refuses_the_tunnel_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with _proxy() as proxy:
        proxy.refuse = True
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_port}")
        client = Client(api_key=API_KEY, base_url="https://127.0.0.1:9/v1", sleep=_no_sleep)
        with raises(ob.APIConnectionError) as info:
            client.batches.retrieve("b")
    assert "Tunnel connection failed: 407 Proxy Authentication Required" in str(info.value)
    assert str(info.value).endswith("(check HTTPS_PROXY and its credentials)")
    assert len(proxy.seen) == 1


def test_a_key_echoed_by_a_server_is_scrubbed(client: Client, api: FakeAPI) -> None:
    api.arm("GET", r"/v1/batches/b", Fault.error(400, message=f"bad header: Bearer {API_KEY}"))
    with raises(ob.BadRequestError) as info:
        client.batches.retrieve("b")
    assert info.value.message == "Error code: 400 - bad header: Bearer [redacted]"
    assert API_KEY not in json.dumps(info.value.body)
    assert API_KEY not in info.value.response.text
    api.arm("GET", r"/v1/batches/b", Fault.raw(200, f"<p>{API_KEY}</p>".encode(), "text/html"))
    with raises(ob.APIResponseValidationError) as validation:
        client.batches.retrieve("b")
    assert "[redacted]" in str(validation.value) and API_KEY not in str(validation.value.body)


def test_a_client_without_a_timeout_waits_as_long_as_it_takes(api: FakeAPI) -> None:
    api.add_batch(id="batch_1")
    client = make_client(api, timeout=None)
    assert client.timeout is None and client.batches.retrieve("batch_1").id == "batch_1"


def test_a_redirect_to_another_host_sends_no_credential_header(api: FakeAPI) -> None:
    secrets = {"api-key": "azure-key-0123456789", "X-Api-Key": "gw-key-0123456789"}
    secrets["Cookie"] = "session=0123456789abcdef"
    with FakeAPI().serve() as other:
        other.add_batch(id="batch_1")
        location = other.base_url + "/batches/batch_1"
        api.arm("GET", r"/v1/batches/batch_1", Fault.error(302, headers={"Location": location}))
        client = make_client(api, organization="org-1", default_headers=secrets)
        with raises(ob.AuthenticationError):
            client.batches.retrieve("batch_1", extra_headers={"X-Trace-Token": "t-0123456789"})
    assert api.requests[0].headers["api-key"] == "azure-key-0123456789"
    sent = other.requests[0].headers
    assert sorted(sent) == ["accept", "accept-encoding", "host", "user-agent"]


def test_no_error_attribute_keeps_a_credential(api: FakeAPI) -> None:
    azure = "azure-key-0123456789abcdef"
    client = make_client(api, default_headers={"api-key": azure})
    echoed = [f"Bearer {API_KEY}", {"api-key": azure}]
    api.arm(
        "GET", r"/v1/batches/b", Fault.raw(200, json.dumps(echoed).encode(), "application/json")
    )
    with raises(ob.APIResponseValidationError) as shape:
        client.batches.retrieve("b")
    assert shape.value.body == ["Bearer [redacted]", {"api-key": "[redacted]"}]
    header = {"x-echo-authorization": f"Bearer {API_KEY}", "x-echo-api-key": azure}
    api.arm("GET", r"/v1/batches/b", Fault.error(400, headers=header, message=f"got {azure}"))
    with raises(ob.BadRequestError) as status:
        client.batches.retrieve("b")
    error = status.value
    assert error.headers["x-echo-authorization"] == "Bearer [redacted]"
    assert error.response.headers["x-echo-api-key"] == "[redacted]"
    assert error.message == "Error code: 400 - got [redacted]"
    texts = [json.dumps(error.body), json.dumps(error.headers), error.response.text]
    texts += [json.dumps(dict(error.response.headers)), str(error), repr(error)]
    texts += [error.response.content.decode(), repr(error.response.request), error.response.url]
    assert not _leaks(texts) and not _leaks(texts, azure)


def test_per_call_credentials_and_cookie_values_are_scrubbed(api: FakeAPI) -> None:
    client = make_client(api, default_headers={"Cookie": "theme=dark; sid=s3cr3t-session-0123"})
    azure = "azure-per-call-0123456789"
    echo = f"api-key {azure}, sid s3cr3t-session-0123"
    api.arm("GET", r"/v1/batches/b", Fault.raw(200, echo.encode(), "text/plain"))
    with raises(ob.APIResponseValidationError) as info:
        client.batches.retrieve("b", extra_headers={"api-key": azure})
    error = info.value
    assert "[redacted]" in str(error.body) and azure not in str(error.body)
    assert "s3cr3t-session-0123" not in str(error.body)
    assert error.__context__ is None and error.__cause__ is None  # no JSONDecodeError holds it


# ---------------------------------------------------------------- Downloads and atomic files


def test_content_reads_in_every_documented_way(client: Client, api: FakeAPI) -> None:
    data = "line one\r\nline two ü\nlast".encode()
    file_id = api.add_file(data)["id"]
    with client.files.content(file_id) as content:
        assert (content.status_code, content.request_id) == (200, "req_1")
        assert content.read() == data and content.content == data
        assert content.text == data.decode()
        assert list(content.iter_lines()) == ["line one", "line two ü", "last"]
        assert b"".join(content.iter_bytes(4)) == data
    assert b"".join(client.files.content(file_id).iter_bytes(3)) == data
    streamed = client.files.content(file_id)
    next(streamed.iter_bytes(2))
    with raises(ob.OpenAIError, match="already been read"):
        streamed.read()
    streamed.close()
    assert "BinaryContent" in repr(streamed)


def test_write_to_file_is_atomic_and_retries_a_broken_download(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    data = b"".join(b'{"n": %d}\n' % i for i in range(20000))
    file_id = api.add_file(data)["id"]
    api.arm("GET", r"/v1/files/[^/]+/content", Fault.cut_body(0.3))
    target = tmp_path / "out.jsonl"
    assert client.files.content(file_id).write_to_file(target) == len(data)
    assert target.read_bytes() == data
    assert api.clock.sleeps == [0.5] and os.listdir(tmp_path) == ["out.jsonl"]


def test_a_download_that_keeps_breaking_leaves_the_target_alone(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    file_id = api.add_file(b"x" * 100_000)["id"]
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"previous")
    api.arm("GET", r"/v1/files/[^/]+/content", *[Fault.cut_body(0.5)] * 3)
    with raises(ob.APIConnectionError) as info:
        client.files.content(file_id).write_to_file(target)
    assert str(info.value) == (
        "Download broke off after 50,000 of 100,000 bytes "
        f"(GET {api.base_url}/files/{file_id}/content)."
    )
    assert target.read_bytes() == b"previous" and os.listdir(tmp_path) == ["out.jsonl"]
    # Every way of reading rides out a break within the retry budget, not write_to_file alone.
    api.arm("GET", r"/v1/files/[^/]+/content", Fault.cut_body(0.5), Fault.cut_body(0.7))
    assert client.files.content(file_id).read() == b"x" * 100_000
    api.arm("GET", r"/v1/files/[^/]+/content", Fault.cut_body(0.3))
    assert sum(map(len, client.files.content(file_id).iter_lines())) == 100_000


def test_content_of_a_missing_file_is_not_found(client: Client, api: FakeAPI) -> None:
    with raises(ob.NotFoundError, match="No such File object: file-nope"):
        client.files.content("file-nope")


# A full disk, for real: code runs in a process of its own, either on a small tmpfs filled to its
# last page (ENOSPC; mounting one takes root on Linux) or with the size of its files limited
# (EFBIG). Whatever fails, no partial file is left and the error names the file written.

_ON_A_FULL_DISK = """
import os, sys
import openai_batch as ob

how, folder, code = sys.argv[1:]
filler = os.path.join(folder, "filler")
if how == "tmpfs":
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(bytes(4096))
        except OSError:
            handle.truncate(handle.tell() - 4096)  # one page left: room for 4 KB at most
else:
    import resource, signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    exec(code)
except OSError as exc:
    print(f"{type(exc).__name__}: {exc}")
else:
    print("no error")
finally:
    if how == "tmpfs":
        os.remove(filler)
"""


@dataclass
class FullDisk:
    """A folder where 4 KB more fit at most, and a way to run code that writes there."""

    folder: Any  # a pathlib.Path
    how: str  # "tmpfs" or "fsize"

    def run(self, code: str) -> str:
        """What ``code`` raised, as "OSError: [Errno 28] ...", run with ``ob`` imported."""
        done = subprocess.run(
            [sys.executable, "-c", _ON_A_FULL_DISK, self.how, str(self.folder), code],
            env=_module_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and not done.stderr, done.stderr
        return done.stdout.strip()

    def error(self, path: Any) -> str:
        """What writing too much to ``path`` raises here."""
        number = errno.ENOSPC if self.how == "tmpfs" else errno.EFBIG
        return f"OSError: [Errno {number}] {os.strerror(number)}: {str(path)!r}"


@pytest.fixture(params=["tmpfs", "fsize"])
def full_disk(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[FullDisk]:
    if sys.platform == "win32":
        pytest.skip("Windows has neither tmpfs nor RLIMIT_FSIZE")
    if request.param == "fsize":
        yield FullDisk(tmp_path, "fsize")
        return
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs takes root on Linux")
    folder = tmp_path / "disk"
    folder.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)]
    try:
        mounted = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except OSError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield FullDisk(folder, "tmpfs")
    finally:
        subprocess.run(["umount", str(folder)], check=True, timeout=60)


@pytest.mark.parametrize(
    "size", [100_000, 6_000], ids=["failing in a write", "failing in the final flush"]
)
def test_atomic_file_on_a_full_disk_leaves_nothing_and_names_the_target(
    full_disk: FullDisk, size: int
) -> None:
    target = full_disk.folder / "out.jsonl"
    target.write_bytes(b"old")
    code = f"""
with ob._AtomicFile({str(target)!r}) as out:
    for _ in range({size // 1000}):
        out.file.write(bytes(1000))  # kept in the buffer until it holds 8 KB
"""
    assert full_disk.run(code) == full_disk.error(target)
    assert os.listdir(full_disk.folder) == ["out.jsonl"] and target.read_bytes() == b"old"


def test_atomic_file_whose_rename_fails_leaves_nothing_and_names_the_target(
    tmp_path: Any,
) -> None:
    target = tmp_path / "out.jsonl"
    out = ob._AtomicFile(target)
    out.file.write(b"new")
    target.mkdir()  # made meanwhile: no file is renamed over a folder
    with raises(IsADirectoryError) as info:
        out.commit()
    assert str(info.value) == f"[Errno {errno.EISDIR}] Is a directory: {str(target)!r}"
    assert os.listdir(tmp_path) == ["out.jsonl"] and not os.listdir(target)


def test_write_jsonl_on_a_full_disk_leaves_nothing(full_disk: FullDisk) -> None:
    target = full_disk.folder / "in.jsonl"
    rows = "[ob.BatchRequest.chat(str(n), 'gpt-4o-mini', 'x' * 100) for n in range(100)]"
    assert full_disk.run(f"ob.write_jsonl({str(target)!r}, {rows})") == full_disk.error(target)
    assert os.listdir(full_disk.folder) == []


def test_split_jsonl_on_a_full_disk_leaves_no_shard(full_disk: FullDisk, tmp_path: Any) -> None:
    path = write_lines(tmp_path / "in.jsonl", [request_line("a"), request_line("b" * 6000)])
    shards = full_disk.folder / "shards"
    shards.mkdir()
    code = f"ob.split_jsonl({path!r}, {str(shards)!r}, max_requests=1)"
    # The first shard fits; the second does not, and the first goes with it.
    assert full_disk.run(code) == full_disk.error(shards / "in.002.jsonl")
    assert os.listdir(shards) == []


def test_a_download_to_a_full_disk_leaves_nothing(full_disk: FullDisk, api: FakeAPI) -> None:
    file_id = api.add_file(b'{"n": 1}\n' * 10_000)["id"]
    target = full_disk.folder / "out.jsonl"
    client = f"ob.OpenAI(api_key={API_KEY!r}, base_url={api.base_url!r})"
    code = f"{client}.files.content({file_id!r}).write_to_file({str(target)!r})"
    assert full_disk.run(code) == full_disk.error(target)
    assert os.listdir(full_disk.folder) == []


def test_an_upload_sends_the_content_type_given_or_guessed(client: Client, api: FakeAPI) -> None:
    """Issue 17 review, item 6: the third item of a (name, content, type) tuple is the file
    part's Content-Type; without one it is guessed from the name, as httpx guesses it."""
    client.files.create(file=("b.jsonl", b"{}\n", "application/jsonl"), purpose="batch")
    client.files.create(file=("b.json", b"{}\n"), purpose="user_data")
    client.files.create(file=("b.jsonl", b"{}\n", None), purpose="batch")  # type: ignore[arg-type]
    assert _part_types(api) == ["application/jsonl", "application/json", "application/octet-stream"]


def test_a_write_into_a_directory_leaves_nothing_behind(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    file_id = api.add_file(b"data\n")["id"]
    folder = tmp_path / "out"
    folder.mkdir()
    with raises(IsADirectoryError, match="Is a directory, not a file name"):
        client.files.content(file_id).write_to_file(folder)
    ran = cli(client, "files", "content", file_id, "-o", str(folder))
    assert (ran.code, ran.err) == (1, f"error: Is a directory, not a file name: {folder}\n")
    ran = cli(client, "files", "content", file_id, "-o", str(folder) + "/")
    assert ran.code == 1
    assert os.listdir(tmp_path) == ["out"] and os.listdir(folder) == []


def test_a_failed_fsync_or_rename_leaves_nothing_behind(
    client: Client, api: FakeAPI, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_id = api.add_file(b"data\n")["id"]
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"old")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ob.os, "fsync", full_disk)
    with raises(OSError, match="No space left on device"):
        client.files.content(file_id).write_to_file(target)
    monkeypatch.undo()

    def no_rename(source: str, target: str) -> None:
        raise PermissionError(13, "Permission denied", target)

    monkeypatch.setattr(ob.os, "replace", no_rename)
    with raises(PermissionError):
        ob.write_jsonl(target, chat_requests(1))
    assert os.listdir(tmp_path) == ["out.jsonl"] and target.read_bytes() == b"old"


def test_file_content_is_asked_for_as_binary(client: Client, api: FakeAPI) -> None:
    file_id = api.add_file(b"data\n")["id"]
    assert client.files.content(file_id).read() == b"data\n"
    assert api.requests[0].headers["accept"] == "application/binary"


def test_an_output_file_in_a_missing_folder_is_named_by_the_folder(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    file_id = api.add_file(b"x\n")["id"]
    target = tmp_path / "nowhere" / "out.jsonl"
    ran = cli(client, "files", "content", file_id, "-o", str(target))
    assert (ran.code, ran.err) == (1, f"error: No such folder: {tmp_path / 'nowhere'}\n")


def test_with_streaming_response_reads_a_file_as_it_arrives(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 17, item 6: the official deprecation warning's advice works as a context manager;
    the request is made on `with`, and a body left unread is closed after it."""
    file_id = str(api.add_file(_MIXED_LINES)["id"])
    streaming = client.files.with_streaming_response.content(file_id)
    assert not any(r.path.endswith("/content") for r in api.requests)
    with streaming as response:
        assert (response.status_code, response.method) == (200, "GET")
        assert response.headers["X-Request-Id"] == response.request_id
        assert response.http_response.url == response.url and not response.is_closed
        assert b"".join(response.iter_bytes(7)) == _MIXED_LINES
    assert response.is_closed
    with client.files.with_streaming_response.content(file_id) as response:
        response.stream_to_file(tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_bytes() == _MIXED_LINES
    with client.files.with_streaming_response.content(file_id) as response:
        lines = list(response.iter_lines())
    assert lines == ['{"a": 1}', '{"b": "\u00e9"}', "", '{"c": 3}', '{"d": 4}']
    with client.files.with_streaming_response.content(file_id) as response:
        assert response.read() == _MIXED_LINES and response.text() == _MIXED_LINES.decode()
    with client.files.with_streaming_response.content(file_id) as response:
        pass  # never read: closed, and the next call still works
    with client.with_streaming_response.files.content(file_id) as response:
        assert "".join(response.iter_text(3)) == _MIXED_LINES.decode()
    sent = api.add_batch(status="completed")
    with client.batches.with_streaming_response.retrieve(sent["id"]) as response:
        assert response.parse().id == sent["id"] == response.json()["id"]
        assert list(response.iter_lines()) == [response.text()] and response.is_closed
        assert b"".join(response.iter_bytes(5)) == response.read()
        response.stream_to_file(tmp_path / "batch.json")
        with pytest.raises(AttributeError):
            response.nope  # noqa: B018
    assert json.loads((tmp_path / "batch.json").read_text())["id"] == sent["id"]
    with raises(ob.NotFoundError), client.files.with_streaming_response.content("file-nope"):
        pass


def test_a_streamed_files_content_parses_to_bytes(client: Client, api: FakeAPI) -> None:
    """Issue 17 review, item 2: the official streamed response parses a binary body to
    `bytes`; a raw response's `parse()` stays the content object, as the official one's."""
    file_id = str(api.add_file(_MIXED_LINES)["id"])
    with client.files.with_streaming_response.content(file_id) as response:
        parsed = response.parse()
        assert type(parsed) is bytes and parsed == _MIXED_LINES == response.read()
    assert isinstance(client.files.with_raw_response.content(file_id).parse(), ob.BinaryContent)


def test_text_and_lines_agree_with_the_official_package(api: FakeAPI) -> None:
    """Issue 17 review, items 4 and 5, side by side."""
    openai = _official()
    ids = [str(api.add_file(body)["id"]) for body in _ENDINGS]
    ours = make_client(api)
    theirs = openai.OpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    assert [_text_and_lines(ours, i) for i in ids] == [_text_and_lines(theirs, i) for i in ids]
    mine = ours.files.with_streaming_response.content(ids[1])
    with mine as mine_read, theirs.files.with_streaming_response.content(ids[1]) as official:
        assert mine_read.parse() == official.parse() == b"a\nb"


def test_retrieve_content_is_deprecated_and_gives_text(client: Client, api: FakeAPI) -> None:
    """Issue 17, item 6: as the official package, a str and its DeprecationWarning."""
    file_id = str(api.add_file(_MIXED_LINES)["id"])
    with pytest.warns(DeprecationWarning, match=r"^The `\.content\(\)` method should be used"):
        text = client.files.retrieve_content(file_id)
    assert text == _MIXED_LINES.decode()
    with pytest.warns(DeprecationWarning):
        raw = client.with_raw_response.files.retrieve_content(file_id)
    assert raw.parse() == text


def test_an_unread_content_dropped_lets_go_of_its_connection(client: Client, api: FakeAPI) -> None:
    """Issue 17, item 15: the official content is read whole, so code drops one unread."""
    import gc

    file_id = str(api.add_file(b"x" * 1_000_000)["id"])
    content = client.files.content(file_id)
    sock = content._connection.conn.sock
    assert sock.fileno() != -1
    del content
    gc.collect()
    assert sock.fileno() == -1


def test_streaming_and_raw_access_agree_with_the_official_package(
    api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 17, item 6: the same streamed, raw and deprecated reads on both packages."""
    openai = _official()
    import warnings

    file_id = str(api.add_file(_MIXED_LINES)["id"])
    sent = api.add_batch(status="completed")

    def run(package: Any) -> dict[str, Any]:
        client = package.OpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
        out = tmp_path / package.__name__
        with client.files.with_streaming_response.content(file_id) as response:
            chunks = b"".join(response.iter_bytes())
        with client.files.with_streaming_response.content(file_id) as response:
            response.stream_to_file(out)
        with client.files.with_streaming_response.content(file_id) as response:
            lines = list(response.iter_lines())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            text = client.files.retrieve_content(file_id)
        raw = client.with_raw_response.batches.retrieve(sent["id"])
        headers = dict(raw.headers)
        return {
            "chunks": chunks,
            "file": out.read_bytes(),
            "lines": lines,
            "text": text,
            "warnings": [(w.category, str(w.message)) for w in caught],
            "raw": (raw.status_code, raw.parse().id, raw.http_response.status_code),
            "headers": {k: headers[k] for k in ("content-type", "x-request-id") if k in headers},
            "get": raw.headers.get("Content-Type"),
        }

    ours, theirs = run(ob), run(openai)
    ours["headers"].pop("x-request-id"), theirs["headers"].pop("x-request-id")
    assert ours == theirs


# ---------------------------------------------------------------- Resources


def _uploaded(client: Client, tmp_path: Any, rows: list[BatchRequest] | None = None) -> str:
    path = tmp_path / "requests.jsonl"
    ob.write_jsonl(path, rows or chat_requests(3))
    return client.files.create(file=path).id


def test_create_retrieve_list_and_cancel(client: Client, api: FakeAPI, tmp_path: Any) -> None:
    file_id = _uploaded(client, tmp_path)
    batch = client.batches.create(
        input_file_id=file_id,
        endpoint=ob.BatchEndpoint.CHAT_COMPLETIONS,
        metadata={"job": "nightly"},
        output_expires_after={"anchor": "created_at", "seconds": 3600},
    )
    sent = json.loads(requests_to(api, "POST", r"/v1/batches")[0].body)
    key = _key_of(batch)
    assert sent == {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "metadata": {"job": "nightly", KEY_FIELD: key},
        "output_expires_after": {"anchor": "created_at", "seconds": 3600},
    }
    assert (batch.status, batch.metadata, batch.input_file_id) == (
        "validating",
        {"job": "nightly"},
        file_id,
    )
    assert client.batches.retrieve(batch.id) == batch
    assert [b.id for b in client.batches.list()] == [batch.id]
    cancelled = client.batches.cancel(batch.id)
    assert cancelled.status is ob.BatchStatus.CANCELLING
    assert cancelled.cancelling_at == int(api.clock.now)


@pytest.mark.parametrize("given", [{"job": "x"}, None])
def test_metadata_reads_back_as_the_caller_gave_it(
    client: Client, api: FakeAPI, given: dict[str, str] | None
) -> None:
    """Issue 17, item 2: the idempotency key is kept apart from the caller's metadata."""
    file_id = _seeded_file(api)
    made = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", metadata=given
    )
    key = made.idempotency_key
    assert isinstance(key, str) and len(key) == 32
    stored = {**(given or {}), KEY_FIELD: key}
    assert api.batches[made.id]["metadata"] == stored
    listed = [b for b in client.batches.list() if b.id == made.id]
    for batch in [made, client.batches.retrieve(made.id), *listed]:
        assert batch.metadata == given and batch.idempotency_key == key
        assert batch.model_dump()["metadata"] == given
        assert json.loads(batch.model_dump_json())["metadata"] == given
        assert KEY_FIELD not in repr(batch) and key not in repr(batch)
        assert batch.to_dict()["metadata"] == stored
        assert batch.to_dict() == api.batches[made.id]  # exactly what the server sent
    assert len(listed) == 1 and made == listed[0]


def test_metadata_compares_equal_to_what_was_given(client: Client, api: FakeAPI) -> None:
    made = client.batches.create(
        input_file_id=_seeded_file(api), endpoint="/v1/chat/completions", metadata={"job": "x"}
    )
    assert made.metadata == {"job": "x"} and made.idempotency_key is not None
    made.metadata = {"job": "y"}  # a change shows in to_dict(), next to the key it was made with
    assert made.to_dict()["metadata"] == {"job": "y", KEY_FIELD: made.idempotency_key}
    made.metadata = None
    assert made.to_dict()["metadata"] == {KEY_FIELD: made.idempotency_key}


def test_empty_metadata_reads_back_empty(client: Client, api: FakeAPI) -> None:
    """Issue 17 review, item 3: `metadata={}` reads back as {} (None only when none was given),
    as the official package reads it; the key stays apart, beside a mark of the {}."""
    file_id = _seeded_file(api)
    made = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", metadata={}
    )
    key = made.idempotency_key
    stored = {"openai_batch_metadata": "{}", KEY_FIELD: key}
    assert isinstance(key, str) and api.batches[made.id]["metadata"] == stored
    listed = [b for b in client.batches.list() if b.id == made.id]
    for batch in [made, client.batches.retrieve(made.id), *listed]:
        assert batch.metadata == {} and batch.model_dump()["metadata"] == {}
        assert batch.idempotency_key == key and batch.to_dict()["metadata"] == stored
        assert "openai_batch_metadata" not in repr(batch)
    made.metadata = None  # a change shows in to_dict()
    assert made.to_dict()["metadata"] == {KEY_FIELD: key}
    plain = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    assert client.batches.retrieve(plain.id).metadata is None


def test_empty_metadata_agrees_with_the_official_package(api: FakeAPI) -> None:
    """Issue 17 review, item 3, side by side: {}, None and some metadata, made and read."""
    openai = _official()
    file_id = _seeded_file(api)

    def script(client: Any) -> list[Any]:
        seen = []
        for given in ({}, None, {"job": "x"}):
            options = {} if given is None else {"metadata": given}
            made = client.batches.create(
                input_file_id=file_id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                **options,
            )
            listed = [b.metadata for b in client.batches.list() if b.id == made.id]
            got = client.batches.retrieve(made.id)
            seen.append([made.metadata, got.metadata, listed, got.model_dump()["metadata"]])
        return seen

    theirs = openai.OpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    assert script(make_client(api)) == script(theirs)


def test_a_batch_without_the_key_keeps_its_metadata_whole(client: Client, api: FakeAPI) -> None:
    plain = api.add_batch(metadata={"job": "x"})
    bare = api.add_batch(metadata={})
    odd = api.add_batch(metadata={KEY_FIELD: 7})  # not a key create stores: the metadata's own
    for sent in (plain, bare, odd):
        batch = client.batches.retrieve(sent["id"])
        assert batch.idempotency_key is None and batch.metadata == sent["metadata"]
        assert batch.to_dict() == sent
    assert ob.Batch(metadata={"job": "x"}).idempotency_key is None
    built = ob.Batch(metadata={"job": "x", KEY_FIELD: "k"})  # by hand: kept as given
    assert built.idempotency_key == "k" and built.metadata == {"job": "x", KEY_FIELD: "k"}


def test_extra_body_query_and_timeout_pass_through(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    file_id = _uploaded(client, tmp_path)
    with raises(ob.BadRequestError, match="Unrecognized request argument supplied: priority"):
        client.batches.create(
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            extra_body={"priority": "high"},
            extra_query={"trace": "1"},
            timeout=30,
        )
    recorded = requests_to(api, "POST", r"/v1/batches")[0]
    assert recorded.query == {"trace": "1"}
    assert json.loads(recorded.body)["priority"] == "high"


def test_empty_ids_are_refused_before_any_request(client: Client, api: FakeAPI) -> None:
    for call in (client.batches.retrieve, client.batches.cancel, client.files.retrieve):
        with raises(ValueError, match=r"^Expected a non-empty value for `\w+_id` but received ''$"):
            call("")
    with raises(ValueError, match="input_file_id"):
        client.batches.create(input_file_id="", endpoint="/v1/embeddings")
    assert api.requests == []


@pytest.mark.parametrize("bad_id", ["batch/../files", "batch with spaces", "b?x=1#y"])
def test_ids_are_quoted_into_paths(client: Client, api: FakeAPI, bad_id: str) -> None:
    with raises(ob.NotFoundError) as info:
        client.batches.retrieve(bad_id)
    assert api.requests[0].path == "/v1/batches/" + urllib.parse.quote(bad_id, safe="")
    assert info.value.message == f"Error code: 404 - No batch found with id '{bad_id}'."


_TOO_LONG = "Invalid 'metadata': {} too long. Expected a string with maximum length {}, but "
_TOO_LONG += "got a string with length {} instead."
#: metadata the API refuses: (metadata, message, param, code)
_BAD_METADATA = [
    ({f"k{i}": "v" for i in range(17)}, _TOO_MANY, "metadata", "object_above_max_properties"),
    ({"k" * 65: "v"}, _TOO_LONG.format("key", 64, 65), "metadata." + "k" * 65, None),
    ({"k": "v" * 513}, _TOO_LONG.format("value", 512, 513), "metadata.k", None),
    (
        {"k": 5},
        "Invalid type for 'metadata.k': expected a string, but got an integer instead.",
        "metadata.k",
        "invalid_type",
    ),
    (
        {"a": "b", "k": None},
        "Invalid type for 'metadata.k': expected a string, but got null instead.",
        "metadata.k",
        "invalid_type",
    ),
]


@pytest.mark.parametrize(("metadata", "message", "param", "code"), _BAD_METADATA)
def test_bad_metadata_is_refused_before_any_request(
    client: Client, api: FakeAPI, metadata: dict[str, Any], message: str, param: str, code: Any
) -> None:
    """Issue 17, item 12: as the server refuses it, so that ``except BadRequestError`` holds."""
    code = code or "string_above_max_length"
    with refused(ob.BadRequestError, f"Error code: 400 - {message}") as info:
        client.batches.create(input_file_id="file-1", endpoint="/v1/embeddings", metadata=metadata)
    assert api.requests == []
    error = info.value
    assert (error.status_code, error.param, error.code, error.type) == (
        400,
        param,
        code,
        "invalid_request_error",
    )
    assert (error.request_id, error.message) == (None, f"Error code: 400 - {message}")
    assert error.body == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": code,
    }
    assert error.response.status_code == 400 and error.response.json() == {"error": error.body}
    # The server, sent the same metadata, answers alike.
    payload = {"input_file_id": _seeded_file(api), "endpoint": "/v1/embeddings"}
    payload.update(completion_window="24h", metadata=metadata)
    assert _http_json(api, "POST", "/batches", payload) == (400, {"error": error.body})


@pytest.mark.parametrize("count", [15, 16])
def test_metadata_the_server_keeps_is_sent_with_or_without_the_key(
    client: Client, api: FakeAPI, count: int
) -> None:
    """Issue 17, item 12: the local refusal leaves the 16-key limit's logic as it was."""
    file_id = _seeded_file(api)
    metadata = {f"k{i}": "v" * 512 for i in range(count)}
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/embeddings", metadata=metadata
    )
    assert batch.metadata == metadata
    assert (batch.idempotency_key is not None) == (count < 16)


@pytest.mark.parametrize(
    "fault", [Fault.lose_response(), Fault.slow(0.4), Fault.cut_body(), Fault.reset()]
)
def test_create_never_makes_a_duplicate(api: FakeAPI, tmp_path: Any, fault: Fault) -> None:
    client = make_client(api, timeout=0.2)
    file_id = _uploaded(client, tmp_path)
    api.arm("POST", r"/v1/batches", fault)
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    assert list(api.batches) == [batch.id]
    posts = requests_to(api, "POST", r"/v1/batches")
    # A reset request made nothing: 30 s of looking (six reads of the list), then a second try.
    assert len(posts) == (1 if fault.action != "reset" else 2)
    assert len(requests_to(api, "GET", r"/v1/batches")) == (1 if fault.action != "reset" else 7)
    keys = {post.headers["idempotency-key"] for post in posts}
    assert keys == {_key_of(batch)} and len(_key_of(batch)) == 32


def test_create_sends_again_when_the_first_try_made_nothing(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    file_id = _uploaded(client, tmp_path)
    old = api.add_batch(input_file_id=file_id, created_at=int(api.clock.now) - 3600)
    api.arm("POST", r"/v1/batches", Fault.drop())
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    assert batch.id != old["id"]
    assert sorted(api.batches) == sorted([old["id"], batch.id])


def test_create_gives_up_when_it_cannot_tell(client: Client, api: FakeAPI, tmp_path: Any) -> None:
    file_id = _uploaded(client, tmp_path)
    api.arm("POST", r"/v1/batches", Fault.lose_response())
    api.arm("GET", r"/v1/batches", *[Fault.error(503)] * 3)
    with raises(ob.OutcomeUnknownError) as info:
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    key = _key_of(next(iter(api.batches.values())))
    assert str(info.value) == (
        "A create call's outcome is unknown, and the batch list could not be read to find its "
        f"batch (idempotency key {key}), so it was not sent again: Error code: 503 - Injected "
        "503 (request id req_5)"
    )
    assert info.value.idempotency_key == key and isinstance(info.value, ob.APIConnectionError)
    assert len(api.batches) == 1 and len(requests_to(api, "POST", r"/v1/batches")) == 1
    # The key on the error finds the batch once the list can be read again.
    found = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", idempotency_key=key
    )
    assert list(api.batches) == [found.id] and len(requests_to(api, "POST", r"/v1/batches")) == 1


# The review's scenarios: each ends with exactly one live batch made by the call, returned by it.


def test_create_finds_its_batch_in_a_list_that_lags(api: FakeAPI) -> None:
    client, file_id = make_client(api), _seeded_file(api)
    api.list_lag = 2.0
    api.arm("POST", r"/v1/batches", Fault.lose_response())
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    assert _live(api) == [batch.id] and len(requests_to(api, "POST", r"/v1/batches")) == 1
    assert api.clock.sleeps == [1.0, 2.0]  # looked at once, after 1 s, then found after 3 s


def test_create_with_a_client_clock_eleven_minutes_fast(api: FakeAPI) -> None:
    file_id = _seeded_file(api)
    client = make_client(api, clock=lambda: api.clock.now + 660)
    api.arm("POST", r"/v1/batches", Fault.lose_response())
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    assert _live(api) == [batch.id] and len(requests_to(api, "POST", r"/v1/batches")) == 1


def test_create_of_a_batch_that_finishes_before_the_lookup(api: FakeAPI) -> None:
    client, file_id = make_client(api), _seeded_file(api)
    api.seconds_validating = api.seconds_per_request = api.seconds_finalizing = 0.0
    api.arm("POST", r"/v1/batches", Fault.lose_response())
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    assert batch.status == "completed"
    assert _live(api) == [batch.id] and len(requests_to(api, "POST", r"/v1/batches")) == 1


def test_a_second_create_minutes_later_with_one_500_makes_its_own_batch(api: FakeAPI) -> None:
    file_id = _seeded_file(api)
    earlier = api.add_batch(
        input_file_id=file_id, status="failed", created_at=int(api.clock.now) - 300
    )
    client = make_client(api)  # a fresh process, as the command line is: no Date seen yet
    api.arm("POST", r"/v1/batches", Fault.error(500))
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    assert batch.id != earlier["id"] and batch.status == "validating"
    assert _live(api) == [earlier["id"], batch.id]
    assert api.batches[earlier["id"]]["status"] == "failed"


def test_a_concurrent_creator_from_the_same_file_keeps_its_own_batch(api: FakeAPI) -> None:
    client, file_id = make_client(api), _seeded_file(api)
    other: list[str] = []

    def worker_b_lands() -> None:
        other.append(api.add_batch(input_file_id=file_id, metadata=None)["id"])

    api.arm("POST", r"/v1/batches", Fault.lose_response(then=worker_b_lands))
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    assert batch.id not in other and sorted(_live(api)) == sorted([batch.id, *other])
    assert _key_of(batch) == requests_to(api, "POST", r"/v1/batches")[0].headers["idempotency-key"]


def test_a_create_that_lands_after_the_timeout_is_found(api: FakeAPI) -> None:
    # Real time: the request reaches the service 0.6 s after the client gave up at 0.2 s.
    client = make_client(api, timeout=0.2, clock=time.time, sleep=time.sleep)
    file_id = _seeded_file(api)
    api.arm("POST", r"/v1/batches", Fault.late(0.6))
    started = time.monotonic()
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    assert _live(api) == [batch.id] and len(requests_to(api, "POST", r"/v1/batches")) == 1
    assert time.monotonic() - started < 5


def test_a_duplicate_that_appears_anyway_is_cancelled(api: FakeAPI) -> None:
    client, file_id = make_client(api), _seeded_file(api)
    api.list_lag = 30.2  # longer than the 30 s of looking: the second try goes
    api.arm("POST", r"/v1/batches", Fault.lose_response())
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    first, second = list(api.batches)
    assert batch.id == first and _live(api) == [first]
    assert api.batches[second]["status"] == "cancelling" and _key_of(api.batches[second]) == (
        _key_of(batch)
    )


def test_create_with_no_room_for_the_key_raises_rather_than_guess(api: FakeAPI) -> None:
    client, file_id = make_client(api), _seeded_file(api)
    full = {f"k{i}": "v" for i in range(16)}
    api.arm("POST", r"/v1/batches", Fault.lose_response())
    with raises(ob.OutcomeUnknownError) as info:
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", metadata=full)
    message = str(info.value)
    assert message.startswith("A create call failed (Connection error (POST ")
    assert message.endswith(
        "and may have made its batch; with 16 metadata keys there was no room for the key that "
        "would tell, so it was not sent again. Check the batch list before creating it again."
    )
    assert info.value.idempotency_key is None
    assert len(api.batches) == 1 and next(iter(api.batches.values()))["metadata"] == full
    assert requests_to(api, "GET", r"/v1/batches") == []
    with raises(ValueError, match="metadata has 16 keys, leaving no room for the idempotency key"):
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/embeddings", metadata=full, idempotency_key="k"
        )


def test_create_after_the_last_try_says_what_is_unknown(api: FakeAPI) -> None:
    client, file_id = make_client(api, max_retries=0), _seeded_file(api)
    api.arm("POST", r"/v1/batches", Fault.error(500))
    with raises(ob.OutcomeUnknownError) as info:
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    key = info.value.idempotency_key
    assert key and api.batches == {}
    assert str(info.value) == (
        "A create call failed (Error code: 500 - Injected 500 (request id req_1)), and no batch "
        f"with its idempotency key {key} appeared in the batch list within 30 s, so it most "
        "likely made none; but a late request may yet make one. Call create again with "
        f"idempotency_key='{key}': it returns that batch if it exists and makes it if not."
    )
    assert isinstance(info.value.__cause__, ob.InternalServerError)
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", idempotency_key=key
    )
    assert _live(api) == [batch.id] and _key_of(batch) == key


def _chat_path(api: FakeAPI) -> str:
    import tempfile

    handle, path = tempfile.mkstemp(suffix=".jsonl")
    os.close(handle)
    ob.write_jsonl(path, chat_requests(2))
    return path


def test_an_idempotency_key_returns_the_batch_it_made_whatever_its_status(api: FakeAPI) -> None:
    file_id = _seeded_file(api)
    first = make_client(api).batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", idempotency_key="nightly-42"
    )
    api.batches[first.id]["status"] = "failed"
    api.clock.advance(86400 * 3)
    rerun = make_client(api)  # another process, after a crash
    again = rerun.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", idempotency_key="nightly-42"
    )
    assert (again.id, again.status) == (first.id, "failed") and len(api.batches) == 1
    assert len(requests_to(api, "POST", r"/v1/batches")) == 1
    submitted = rerun.submit(_chat_path(api), idempotency_key="nightly-42")
    assert submitted.id == first.id and len(api.files) == 1  # nothing uploaded


def test_two_processes_with_one_key_end_with_one_batch(api: FakeAPI) -> None:
    file_id = _seeded_file(api)
    api.list_lag = 1.0  # the second process looks before the first one's batch is listed
    first = api.add_batch(input_file_id=file_id, metadata={KEY_FIELD: "k1"})  # just made
    second = make_client(api).batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", idempotency_key="k1"
    )
    assert second.id == first["id"] and _live(api) == [first["id"]] and len(api.batches) == 2
    assert api.clock.sleeps == [1.0]  # it waited for the list to show a batch of its key


def test_the_recovery_lookup_keeps_the_calls_query_headers_and_key(api: FakeAPI) -> None:
    client, file_id = make_client(api), _seeded_file(api)
    api.arm("POST", r"/v1/batches", Fault.lose_response())
    client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        metadata={"job": "nightly"},
        extra_query={"api-version": "2025-04-01"},
        extra_headers={"X-Gateway": "team-a"},
        timeout=30,
    )
    listed = requests_to(api, "GET", r"/v1/batches")[0]
    assert listed.query == {"limit": "100", "api-version": "2025-04-01"}
    assert listed.headers["x-gateway"] == "team-a"
    (batch,) = api.batches.values()
    assert batch["metadata"] == {"job": "nightly", KEY_FIELD: _key_of(batch)}


def test_list_pages_lazily_newest_first(client: Client, api: FakeAPI) -> None:
    made = [api.add_batch(created_at=_T0 + i)["id"] for i in range(45)]
    page = client.batches.list(limit=20)
    assert (len(page.data), page.has_more, page.last_id) == (20, True, made[-20])
    assert len(api.requests) == 1
    first_five = [batch.id for _, batch in zip(range(5), page)]
    assert first_five == made[::-1][:5] and len(api.requests) == 1
    assert [batch.id for batch in page] == made[::-1]
    assert [r.query for r in api.requests] == [
        {"limit": "20"},
        {"limit": "20", "after": made[-20]},
        {"limit": "20", "after": made[-40]},
    ]
    assert [len(p.data) for p in page.iter_pages()] == [20, 20, 5]


def test_list_of_nothing_and_paging_by_hand(client: Client, api: FakeAPI) -> None:
    page = client.batches.list()
    assert (page.data, page.has_more, list(page), page.has_next_page()) == ([], False, [], False)
    with raises(RuntimeError, match=r"^No next page; check has_next_page\(\) first\.$"):
        page.get_next_page()
    api.add_batch(id="batch_a", created_at=_T0)
    api.add_batch(id="batch_b", created_at=_T0 + 1)
    first = client.batches.list(limit=1)
    assert "CursorPage of 1 items, has_more=True" in repr(first)
    assert [b.id for b in first.get_next_page().data] == ["batch_a"]
    assert [b.id for b in client.batches.list(after="batch_b")] == ["batch_a"]


def test_paging_stops_on_an_empty_page_even_if_has_more_says_otherwise(
    client: Client, api: FakeAPI
) -> None:
    api.add_batch(id="batch_a")
    empty = json.dumps({"object": "list", "data": [], "has_more": True}).encode()
    page = client.batches.list()
    assert [b.id for b in page] == ["batch_a"]
    api.arm("GET", r"/v1/batches", Fault.raw(200, empty, "application/json"))
    assert list(client.batches.list()) == []


def test_paging_refuses_a_cursor_that_does_not_advance(client: Client, api: FakeAPI) -> None:
    api.add_batch(id="batch_a")
    same = {"object": "list", "data": [{"id": "batch_a"}], "has_more": True, "last_id": "batch_a"}
    body = json.dumps(same).encode()
    api.arm("GET", r"/v1/batches", *[Fault.raw(200, body, "application/json")] * 2)
    with raises(
        ob.APIResponseValidationError, match=r"^The server sent the page ending at batch_a again"
    ):
        list(client.batches.list())


def test_paging_refuses_cursors_that_go_round(client: Client, api: FakeAPI) -> None:
    def page(item: str) -> Fault:
        body = {"object": "list", "data": [{"id": item}], "has_more": True, "last_id": item}
        return Fault.raw(200, json.dumps(body).encode(), "application/json")

    api.arm("GET", r"/v1/batches", page("batch_a"), page("batch_b"), page("batch_a"))
    seen: list[str] = []
    with raises(ob.APIResponseValidationError) as info:
        seen.extend(batch.id for batch in client.batches.list())
    assert str(info.value) == (
        "The server sent the page ending at batch_a again; stopping here rather than listing "
        "the same items forever."
    )
    assert seen == ["batch_a", "batch_b"] and len(api.requests) == 3


def test_upload_streams_a_file_byte_for_byte(client: Client, api: FakeAPI, tmp_path: Any) -> None:
    content = os.urandom(5 * 1024 * 1024)
    (tmp_path / "big.jsonl").write_bytes(content)
    file = client.files.create(file=tmp_path / "big.jsonl", purpose="batch")
    assert api.contents[file.id] == content
    assert (file.filename, file.bytes, file.purpose) == ("big.jsonl", len(content), "batch")
    recorded = requests_to(api, "POST", r"/v1/files")[0]
    assert recorded.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert int(recorded.headers["content-length"]) == len(recorded.body)


def test_upload_takes_bytes_file_objects_and_name_pairs(client: Client, api: FakeAPI) -> None:
    import io

    made = [
        client.files.create(file=b'{"a": 1}\n'),
        client.files.create(file=io.BytesIO(b"xx" + b'{"b": 2}\n'[0:0] + b"yy")),
        client.files.create(file=("named.jsonl", b"zz")),
        client.files.create(file=("sub/dir/other.jsonl", io.BytesIO(b"ww"))),
    ]
    assert [f.filename for f in made] == [
        "input.jsonl",
        "input.jsonl",
        "named.jsonl",
        "other.jsonl",
    ]
    assert [api.contents[f.id] for f in made] == [b'{"a": 1}\n', b"xxyy", b"zz", b"ww"]
    partly_read = io.BytesIO(b"skip|keep")
    partly_read.read(5)
    assert api.contents[client.files.create(file=partly_read).id] == b"keep"


def _uploaded_part(api: FakeAPI) -> tuple[str | None, bytes]:
    """The filename and content of the file part of the last upload the fake received."""
    sent = [r for r in api.requests if r.method == "POST" and r.path == "/v1/files"][-1]
    parts = _parse_multipart(sent.headers["content-type"], sent.body)
    return next((filename, data) for name, filename, data in parts if name == "file")


def test_upload_takes_a_str_and_a_pair_without_a_filename(client: Client, api: FakeAPI) -> None:
    """Issue 17, item 13: str content goes as UTF-8, as httpx sends it; no filename is
    "input.jsonl", since the API takes no file part without one."""
    text = '{"custom_id": "é", "n": 1}\n'
    made = client.files.create(file=("batch.jsonl", text))
    assert (made.filename, made.bytes) == ("batch.jsonl", len(text.encode()))
    assert _uploaded_part(api) == ("batch.jsonl", text.encode("utf-8"))
    made = client.files.create(file=("typed.jsonl", text, "application/jsonl"))
    assert api.contents[made.id] == text.encode()
    for content in (text.encode(), text, io.BytesIO(text.encode())):
        made = client.files.create(file=(None, content))
        assert made.filename == "input.jsonl"
        assert _uploaded_part(api) == ("input.jsonl", text.encode())


def test_upload_reads_a_pipe_that_cannot_seek(client: Client, api: FakeAPI) -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as writer:
        writer.write(b'{"piped": true}\n')
    with os.fdopen(read_end, "rb") as reader:
        file = client.files.create(file=reader)
    assert api.contents[file.id] == b'{"piped": true}\n'


def test_upload_refuses_bad_files_before_any_request(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    with raises(FileNotFoundError, match="missing.jsonl"):
        client.files.create(file=tmp_path / "missing.jsonl")
    with raises(IsADirectoryError, match="Is a directory, not a file to upload"):
        client.files.create(file=tmp_path)
    (tmp_path / "t.jsonl").write_text("{}\n")
    text_mode = r"^`file` is open in text mode; open it with 'rb'"
    with open(tmp_path / "t.jsonl") as opened, raises(TypeError, match=text_mode):
        client.files.create(file=opened)
    with raises(TypeError, match="not int"):
        client.files.create(file=5)  # type: ignore[arg-type]
    assert api.requests == []


def test_a_file_that_changes_while_it_is_sent_is_an_error(tmp_path: Any) -> None:
    path = tmp_path / "moving.jsonl"
    path.write_bytes(b"1234")
    _, size, chunks = ob._file_source(str(path))
    path.write_bytes(b"123456")
    with raises(ob.OpenAIError, match="changed while it was being uploaded"):
        b"".join(chunks())
    assert size == 4


def test_upload_is_sent_whole_again_after_a_server_error(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    (tmp_path / "in.jsonl").write_bytes(b'{"x": 1}\n' * 1000)
    api.arm("POST", r"/v1/files", Fault.error(500))
    file = client.files.create(
        file=tmp_path / "in.jsonl", expires_after={"anchor": "created_at", "seconds": 7200}
    )
    assert api.contents[file.id] == b'{"x": 1}\n' * 1000
    assert file.expires_at == file.created_at + 7200
    assert api.clock.sleeps == [0.5]


def test_upload_errors_from_the_server_are_typed(client: Client, api: FakeAPI) -> None:
    with raises(ob.BadRequestError) as info:
        client.files.create(file=("notes.txt", b"hello"))
    assert (
        info.value.message == "Error code: 400 - Invalid file format for Batch API. Must be .jsonl"
    )


def test_retrieve_list_and_delete_files(client: Client, api: FakeAPI) -> None:
    first = api.add_file(b"a", filename="a.jsonl")
    api.clock.advance(1)
    second = api.add_file(b"bb", filename="b.jsonl", purpose="user_data")
    assert client.files.retrieve(first["id"]).filename == "a.jsonl"
    assert [f.id for f in client.files.list()] == [second["id"], first["id"]]
    assert [f.id for f in client.files.list(order="asc")] == [first["id"], second["id"]]
    assert [f.id for f in client.files.list(purpose="batch")] == [first["id"]]
    assert [f.id for f in client.files.list(limit=1)] == [second["id"], first["id"]]
    deleted = client.files.delete(first["id"])
    assert deleted == ob.FileDeleted(id=first["id"], object="file", deleted=True)
    with raises(ob.NotFoundError):
        client.files.retrieve(first["id"])


def _outcomes(pairs: Any) -> list[tuple[str, str]]:
    """(custom_id, "ok" | "failed" | "none") for each joined pair."""
    return [
        (request.custom_id, "none" if result is None else "ok" if result.ok else "failed")
        for request, result in pairs
    ]


def test_submit_wait_results_download_and_join(client: Client, api: FakeAPI, tmp_path: Any) -> None:
    requests_path = tmp_path / "requests.jsonl"
    ob.write_jsonl(requests_path, chat_requests(12, fail=(2, 7)))
    batch = client.submit(requests_path, metadata={"run": "e2e"})
    assert (batch.status, batch.endpoint, batch.metadata) == (
        "validating",
        "/v1/chat/completions",
        {"run": "e2e"},
    )
    seen: list[str] = []
    done = client.batches.wait(batch.id, on_update=lambda b: seen.append(ob._text(b.status)))
    assert (
        done.status is ob.BatchStatus.COMPLETED
        and seen[0] == "validating"
        and seen[-1] == "completed"
    )
    assert done.request_counts == ob.BatchRequestCounts(total=12, completed=10, failed=2)
    results = list(client.results(done))
    assert sorted(r.custom_id for r in results) == sorted(
        r.custom_id for r in chat_requests(12, (2, 7))
    )
    assert [r.ok for r in results] == [True] * 10 + [False] * 2  # output file, then error file
    paths = client.download(done.id, tmp_path / "out")
    assert [os.path.basename(p) for p in paths] == [
        f"{done.id}_output.jsonl",
        f"{done.id}_errors.jsonl",
    ]
    pairs = list(ob.join_results(requests_path, ob.iter_results(paths[0])))
    pairs += [(None, r) for r in ob.iter_results(paths[1])]
    joined = list(ob.join_results(requests_path, client.results(done.id)))
    assert _outcomes(joined) == [
        (f"fail-{i}" if i in (2, 7) else f"q{i}", "failed" if i in (2, 7) else "ok")
        for i in range(12)
    ]
    answer = joined[5][1]
    assert (
        answer is not None and answer.body["choices"][0]["message"]["content"] == "echo: question 5"
    )


def test_submit_takes_requests_and_reads_the_endpoint(client: Client, api: FakeAPI) -> None:
    rows = [
        BatchRequest.embedding(f"e{i}", "text-embedding-3-small", f"text {i}") for i in range(3)
    ]
    batch = client.submit(rows)
    assert batch.endpoint is ob.BatchEndpoint.EMBEDDINGS
    uploaded = api.contents[batch.input_file_id]
    assert uploaded == b"".join(r.to_json().encode() + b"\n" for r in rows)
    done = client.batches.wait(batch.id)
    vectors = [r.body["data"][0]["embedding"] for r in client.results(done)]
    assert len(vectors) == 3 and all(len(v) == 3 for v in vectors)


def test_submit_refuses_bad_input_before_any_request(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    path = write_lines(tmp_path / "in.jsonl", [request_line("a"), request_line("a")])
    with raises(ob.InputFileError, match="repeats line 1"):
        client.submit(path)
    with refused(ob.BadRequestError, f"Error code: 400 - {_TOO_MANY}"):
        client.submit(path, metadata={str(i): "" for i in range(17)})
    assert api.requests == []


def test_wait_polls_less_often_as_time_goes_on(client: Client, api: FakeAPI) -> None:
    api.seconds_validating = 400.0
    batch = client.submit(chat_requests(1))
    client.batches.wait(batch.id)
    sleeps = api.clock.sleeps
    assert sleeps[:5] == [2.0, 3.0, 4.5, 6.75, 10.125]
    assert max(sleeps) == 60.0 and sleeps[-1] == 60.0


def test_wait_with_a_fixed_interval_and_a_timeout(client: Client, api: FakeAPI) -> None:
    batch = client.submit(chat_requests(30))
    updates: list[ob.Batch] = []
    with raises(ob.WaitTimeoutError) as info:
        client.batches.wait(batch.id, poll_interval=5, timeout=22, on_update=updates.append)
    assert api.clock.sleeps == [5, 5, 5, 5, 2]
    assert str(info.value) == f"Batch {batch.id} is still in_progress after 22 s."
    assert info.value.batch.status == "in_progress" and info.value.batch == updates[-1]
    assert [ob._text(b.status) for b in updates] == ["validating"] + ["in_progress"] * 4
    counts = [b.request_counts.completed for b in updates if b.request_counts]
    assert counts == sorted(counts) and counts[-1] == 12


def test_wait_rides_out_a_transient_error(client: Client, api: FakeAPI) -> None:
    batch = client.submit(chat_requests(2))
    api.arm("GET", r"/v1/batches/[^/]+", Fault.error(503), Fault.error(502))
    assert client.batches.wait(batch.id, poll_interval=10).status == "completed"
    assert api.clock.sleeps[:3] == [0.5, 1.0, 10]


def test_a_cancelled_batch_joins_with_none_for_what_did_not_run(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    path = tmp_path / "in.jsonl"
    ob.write_jsonl(path, chat_requests(10, fail=(1,)))
    batch = client.submit(path)
    api.clock.advance(api.seconds_validating + 4.5)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status is ob.BatchStatus.CANCELLING
    done = client.batches.wait(batch.id)
    assert done.status is ob.BatchStatus.CANCELLED
    outcomes = _outcomes(ob.join_results(path, client.results(done)))
    assert outcomes == [("q0", "ok"), ("fail-1", "failed"), ("q2", "ok"), ("q3", "ok")] + [
        (f"q{i}", "none") for i in range(4, 10)
    ]


def test_an_expired_batch_joins_with_none_for_what_did_not_run(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    api.seconds_per_request = 20_000.0
    path = tmp_path / "in.jsonl"
    ob.write_jsonl(path, chat_requests(6))
    batch = client.submit(path)
    done = client.batches.wait(batch.id, poll_interval=3600)
    assert done.status is ob.BatchStatus.EXPIRED and not done.error_file_id
    assert _outcomes(ob.join_results(path, client.results(done))) == [
        ("q0", "ok"),
        ("q1", "ok"),
        ("q2", "ok"),
        ("q3", "ok"),
        ("q4", "none"),
        ("q5", "none"),
    ]
    retry = tmp_path / "retry.jsonl"
    assert ob.write_failed_requests(path, client.results(done), retry) == 2
    assert client.download(done, tmp_path / "dl") == [
        str(tmp_path / "dl" / f"{done.id}_output.jsonl")
    ]


def test_a_batch_the_server_failed_has_nothing_to_download(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    file_id = api.add_file(b'{"custom_id": "a"}\n')["id"]
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    failed = client.batches.wait(batch.id)
    assert failed.status is ob.BatchStatus.FAILED
    assert isinstance(failed.errors, ob.BatchErrors) and failed.errors.data
    assert failed.errors.data[0].line == 1
    assert client.download(failed, tmp_path) == [] and list(client.results(failed)) == []


def test_a_disk_error_during_an_upload_is_not_retried(client: Client, api: FakeAPI) -> None:
    import io

    class FailingDisk(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() >= 10:
                raise OSError(5, "Input/output error")
            return super().read(10)

    with raises(ob.OpenAIError) as info:
        client.files.create(file=("in.jsonl", FailingDisk(b"x" * 100)))
    assert str(info.value) == "Cannot read in.jsonl to upload it: [Errno 5] Input/output error"
    assert api.clock.sleeps == [] and api.files == {}


def test_wait_rides_out_an_outage_but_not_a_long_one(client: Client, api: FakeAPI) -> None:
    def after_first_poll(*faults: Fault) -> Callable[[ob.Batch], None]:
        armed: list[bool] = []

        def arm(batch: ob.Batch) -> None:
            if not armed:
                armed.append(True)
                api.arm("GET", r"/v1/batches/[^/]+", *faults)

        return arm

    batch = client.submit(chat_requests(3))
    outage = after_first_poll(*[Fault.error(503)] * 3, *[Fault.drop()] * 3)
    assert client.batches.wait(batch.id, poll_interval=30, on_update=outage).status == "completed"
    api.clock.sleeps.clear()
    stuck = api.add_batch(status="in_progress")
    endless = after_first_poll(*[Fault.error(502)] * 300)
    with raises(ob.InternalServerError):
        client.batches.wait(stuck["id"], poll_interval=100, on_update=endless)
    waited = sum(s for s in api.clock.sleeps if s == 100)
    assert 600 <= waited <= 700


def test_the_first_poll_of_a_wait_must_succeed(client: Client, api: FakeAPI) -> None:
    api.arm("GET", r"/v1/batches/[^/]+", *[Fault.error(500)] * 3)
    with raises(ob.InternalServerError):
        client.batches.wait("batch_x")


def test_a_file_given_with_its_content_type_and_content_helpers(
    client: Client, api: FakeAPI
) -> None:
    made = client.files.create(file=("typed.jsonl", b'{"k": "\xc3\xa9"}\n', "application/jsonl"))
    assert (made.filename, api.contents[made.id]) == ("typed.jsonl", b'{"k": "\xc3\xa9"}\n')
    assert "".join(client.files.content(made.id).iter_text(3)) == '{"k": "é"}\n'
    assert client.files.content(made.id).stream_to_file is not None


def test_upload_types_agree_with_the_official_package(api: FakeAPI) -> None:
    openai = _official()
    files = [("b.jsonl", b"{}\n", "application/jsonl"), ("b.json", b"{}\n"), ("b.jsonl", b"{}\n")]
    for client in (make_client(api), openai.OpenAI(api_key=API_KEY, base_url=api.base_url)):
        for file in files:
            client.files.create(file=file, purpose="user_data")
    ours = _part_types(api)
    assert (
        ours[:3]
        == ours[3:]
        == ["application/jsonl", "application/json", "application/octet-stream"]
    )


def test_create_after_its_last_try_still_finds_its_batch(api: FakeAPI) -> None:
    client, file_id = make_client(api, max_retries=0), _seeded_file(api)
    api.add_batch(input_file_id=file_id, status="cancelled", created_at=int(api.clock.now))
    api.arm("POST", r"/v1/batches", Fault.lose_response())
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    assert batch.status == "validating" and len(api.batches) == 2


def test_the_lookup_reads_the_list_only_back_to_the_call(api: FakeAPI) -> None:
    client, file_id = make_client(api), _seeded_file(api)
    for _ in range(150):  # two days old: no lost create of this call can be among them
        api.add_batch(input_file_id=file_id, created_at=int(api.clock.now) - 2 * 86400)
    api.arm("POST", r"/v1/batches", Fault.lose_response())
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    assert len(api.batches) == 151 and _key_of(batch)
    assert len(requests_to(api, "GET", r"/v1/batches")) == 1  # one page of 150, not two


def test_a_twin_that_already_ended_is_left_alone_and_one_that_will_not_cancel_is_named(
    api: FakeAPI,
) -> None:
    client, file_id = make_client(api), _seeded_file(api)
    old = api.add_batch(input_file_id=file_id, status="completed", metadata={KEY_FIELD: "k"})
    again = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", idempotency_key="k"
    )
    assert again.id == old["id"]
    twin = api.add_batch(input_file_id=file_id, metadata={KEY_FIELD: "k"})
    chat = "/v1/chat/completions"
    assert (
        client.batches.create(input_file_id=file_id, endpoint=chat, idempotency_key="k").id
        == (old["id"])
    )
    assert api.batches[twin["id"]]["status"] == "cancelling"
    api.add_batch(id="batch_twin", input_file_id=file_id, metadata={KEY_FIELD: "k"})
    api.arm("POST", r"/v1/batches/batch_twin/cancel", *[Fault.error(403)])
    with raises(ob.DuplicateBatchError) as info:
        client.batches.create(input_file_id=file_id, endpoint=chat, idempotency_key="k")
    assert (info.value.batch.id, info.value.duplicate_id) == (old["id"], "batch_twin")
    assert str(info.value).startswith(
        f"Batch batch_twin duplicates {old['id']} (the same idempotency key) and could not be "
        "cancelled: Error code: 403 - Injected 403"
    )
    assert str(info.value).endswith("It is still to be cancelled.")
    api.arm("POST", r"/v1/batches/batch_twin/cancel", Fault.error(403))
    command = ["create", "--input-file-id", file_id, "--endpoint", chat, "--idempotency-key", "k"]
    ran = cli(client, *command)
    assert ran.code == 1 and ran.err.splitlines()[-1] == (
        "hint: cancel the duplicate by hand: openai-batch cancel batch_twin"
    )


def test_a_key_copied_in_metadata_does_not_find_the_batch_it_came_from(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    path = write_lines(tmp_path / "in.jsonl", [request_line("a")])
    first = client.submit(path, metadata={"job": "nightly"})
    again = client.submit(path, metadata=first.metadata)  # the job's tags carried over
    assert again.id != first.id and again.metadata is not None
    assert again.metadata["job"] == "nightly" and _key_of(again) != _key_of(first)


def test_a_key_used_again_for_other_work_is_refused(client: Client, api: FakeAPI) -> None:
    file_id = _seeded_file(api)
    chat = "/v1/chat/completions"
    made = client.batches.create(input_file_id=file_id, endpoint=chat, idempotency_key="job-1")
    other = _seeded_file(api)
    with raises(ValueError) as info:
        client.batches.create(input_file_id=other, endpoint=chat, idempotency_key="job-1")
    assert str(info.value) == (
        f"idempotency key 'job-1' made batch {made.id} from {file_id} for /v1/chat/completions; "
        f"this call asks for {other} for /v1/chat/completions. Use a new key for new work."
    )
    with raises(ValueError, match="give metadata as metadata=, so that the idempotency key joins"):
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/embeddings", extra_body={"metadata": {}}
        )
    assert len(api.batches) == 1


def test_a_server_that_drops_metadata_is_not_guessed_at(api: FakeAPI) -> None:
    client, file_id = make_client(api), _seeded_file(api)
    original = api._create_batch

    def forgetful(request: Recorded) -> dict[str, Any]:
        batch = original(request)
        batch["metadata"] = None
        return batch

    api._create_batch = forgetful  # type: ignore[method-assign]
    first = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    assert first.metadata is None
    api.arm("POST", r"/v1/batches", Fault.lose_response())
    with raises(ob.OutcomeUnknownError, match="this server does not keep metadata"):
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    assert len(api.batches) == 2 and len(requests_to(api, "POST", r"/v1/batches")) == 2


def test_a_key_lookup_that_fails_before_sending_is_the_lists_own_error(
    client: Client, api: FakeAPI
) -> None:
    file_id = _seeded_file(api)
    api.arm("GET", r"/v1/batches", *[Fault.error(503)] * 3)
    with raises(ob.InternalServerError):
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", idempotency_key="k"
        )
    assert requests_to(api, "POST", r"/v1/batches") == []


def test_a_twin_check_that_cannot_read_the_list_returns_the_batch_made(
    client: Client, api: FakeAPI
) -> None:
    file_id = _seeded_file(api)
    api.arm("GET", r"/v1/batches", Fault.slow(0), *[Fault.error(503)] * 3)
    made = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", idempotency_key="k"
    )
    assert list(api.batches) == [made.id]


def test_an_upload_from_a_named_pipe_is_read_whole(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    content = b"".join(r.to_json().encode() + b"\n" for r in chat_requests(2))

    def feed() -> None:
        with open(fifo, "wb") as pipe:
            pipe.write(content)

    feeder = threading.Thread(target=feed)
    feeder.start()
    uploaded = client.files.create(file=fifo, purpose="batch")
    feeder.join()
    assert api.contents[uploaded.id] == content and uploaded.filename == "in.jsonl"


def test_with_raw_response_gives_headers_status_and_the_object(
    client: Client, api: FakeAPI
) -> None:
    sent = api.add_batch(status="completed")
    api.arm("GET", r"/v1/batches/[^/]+", Fault.error(500))
    raw = client.batches.with_raw_response.retrieve(sent["id"])
    assert (raw.status_code, raw.retries_taken, raw.method) == (200, 1, "GET")
    assert raw.headers["X-Request-Id"] == raw.request_id == raw.headers.get("x-request-id")
    assert raw.request_id.startswith("req_") and raw.url.endswith(f"/batches/{sent['id']}")
    assert raw.parse() == client.batches.retrieve(sent["id"]) and raw.parse() is raw.parse()
    assert json.loads(raw.content)["id"] == sent["id"] == json.loads(raw.text)["id"]
    page = client.batches.with_raw_response.list(limit=1).parse()
    assert [b.id for b in page] == list(api.batches)[::-1]
    file_id = _seeded_file(api)
    content = client.files.with_raw_response.content(file_id)
    assert content.content == api.contents[file_id] and content.status_code == 200
    assert client.models.with_raw_response.list().parse().data
    with pytest.raises(AttributeError):
        client.batches.with_raw_response.wait  # noqa: B018
    with raises(ob.NotFoundError):  # an error status raises, as the plain call does
        client.batches.with_raw_response.retrieve("batch_nope")
    assert api.requests[-1].headers.get("x-stainless-raw-response") is None


def test_models_list_and_retrieve(client: Client, api: FakeAPI) -> None:
    models = client.models.list()
    assert [m.id for m in models] == list(api.models) and models.has_more is False
    tuned = client.models.retrieve("ft:gpt-4o-mini:acme::abc123")
    assert (tuned.owned_by, tuned.shutdown_date) == ("acme", None)
    assert api.requests[-1].path == "/v1/models/ft:gpt-4o-mini:acme::abc123"
    assert list(tuned.model_dump()) == ["id", "created", "object", "owned_by", "shutdown_date"]
    with raises(ob.NotFoundError):
        client.models.retrieve("gpt-nope")
    with raises(ValueError):
        client.models.retrieve("")


def test_wait_for_processing_is_bounded(client: Client, api: FakeAPI) -> None:
    file_id = _seeded_file(api)
    assert client.files.wait_for_processing(file_id).status == "processed"
    api.files[file_id]["status"] = "uploaded"  # and it never moves on
    with raises(RuntimeError) as info:
        client.files.wait_for_processing(file_id, poll_interval=60, max_wait_seconds=300)
    assert str(info.value) == (
        f"Giving up on waiting for file {file_id} to finish processing after 300 seconds."
    )
    assert api.clock.sleeps[-5:] == [60] * 5
    api.files[file_id]["status"] = None  # a server that never says: no hang, no poll
    before = len(api.requests)
    assert client.files.wait_for_processing(file_id).status is None
    assert len(api.requests) == before + 1


def test_models_delete_gives_model_deleted(client: Client, api: FakeAPI) -> None:
    """Issue 17, item 16: DELETE /models/{model}, a fine-tuned model's colons as they are."""
    tuned = "ft:gpt-4o-mini:acme::abc123"
    gone = client.models.delete(tuned)
    assert type(gone) is ob.ModelDeleted
    assert (gone.id, gone.deleted, gone.object) == (tuned, True, "model")
    assert repr(gone) == f"ModelDeleted(id='{tuned}', deleted=True, object='model')"
    assert gone.to_dict() == {"id": tuned, "object": "model", "deleted": True}
    assert list(gone.model_dump()) == ["id", "deleted", "object"]
    assert (api.requests[-1].method, api.requests[-1].path) == ("DELETE", f"/v1/models/{tuned}")
    assert tuned not in api.models
    with raises(ob.NotFoundError):
        client.models.delete(tuned)
    with raises(ob.PermissionDeniedError):
        client.models.delete("gpt-4o-mini")
    with raises(ValueError, "Expected a non-empty value for `model` but received ''"):
        client.models.delete("")


@pytest.mark.parametrize(("metadata", "message", "param", "code"), _BAD_METADATA)
def test_bad_metadata_raises_what_the_official_package_raises(
    api: FakeAPI, metadata: dict[str, Any], message: str, param: str, code: Any
) -> None:
    """Issue 17, item 12: it sends, the fake answers 400; we refuse alike without sending."""
    openai = _official()
    official = openai.OpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    file_id = _seeded_file(api)
    caught = []
    for package in (official, make_client(api)):
        with pytest.raises(Exception) as info:  # the class is compared below
            package.batches.create(
                input_file_id=file_id,
                endpoint="/v1/embeddings",
                completion_window="24h",
                metadata=metadata,
            )
        error = info.value
        caught.append((type(error).__name__, error.status_code, error.param, error.code))
        caught[-1] += (error.body, error.response.json())
    assert caught[0] == caught[1]
    assert caught[1][:3] == ("BadRequestError", 400, param)
    assert len([r for r in api.requests if r.path == "/v1/batches"]) == 1  # the official one


def test_a_str_upload_sends_what_the_official_package_sends(api: FakeAPI) -> None:
    """Issue 17, item 13: the same bytes for a str; for no filename, the official package
    sends a part without one, which the API refuses, where we send "input.jsonl"."""
    openai = _official()
    official = openai.OpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    ours = make_client(api)
    text = '{"custom_id": "é"}\n'
    sent = []
    for package in (official, ours):
        made = package.files.create(file=("batch.jsonl", text), purpose="batch")
        sent.append((made.filename, made.bytes, _uploaded_part(api)))
    assert sent[0] == sent[1] == ("batch.jsonl", len(text.encode()), ("batch.jsonl", text.encode()))
    with pytest.raises(openai.BadRequestError):
        official.files.create(file=(None, text.encode()), purpose="batch")
    assert _uploaded_part(api) == (None, text.encode())
    assert ours.files.create(file=(None, text.encode())).filename == "input.jsonl"


def test_models_delete_agrees_with_the_official_package(api: FakeAPI) -> None:
    openai = _official()

    def script(client: Any) -> list[Any]:
        api.models["ft:gpt-4o-mini:acme::abc123"]["owned_by"] = "acme"
        gone = client.models.delete("ft:gpt-4o-mini:acme::abc123")
        seen: list[Any] = [type(gone).__name__, gone.model_dump()]
        api.models["ft:gpt-4o-mini:acme::abc123"] = {"id": "ft:gpt-4o-mini:acme::abc123",
            "object": "model", "created": 1, "owned_by": "acme"}  # fmt: skip
        for model in ("gpt-4o-mini", "nope", ""):
            try:
                client.models.delete(model)
            except Exception as exc:  # the class and message are compared
                seen.append((_public_class(exc), str(exc).split(" (request id")[0]))
        return [seen, _wire(api, [])]

    del api.requests[:]
    official = openai.OpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    assert script(make_client(api, max_retries=0)) == script(official)


# ---------------------------------------------------------------- Webhooks


def test_a_client_refuses_an_http_client_with_what_to_do(api: FakeAPI) -> None:
    """Issue 17 review, item 9: `OpenAI(http_client=...)` (and the Azure, async and copied
    clients) says why and where proxies and CA certificates come from, not a bare TypeError."""
    message = (
        "http_client is not used: this module sends with the standard library (proxies come "
        "from HTTPS_PROXY, CA certificates from SSL_CERT_FILE)"
    )
    azure = {"api_key": "k", "api_version": AZURE_VERSION, "azure_endpoint": api.base_url}
    for make in (
        lambda: ob.OpenAI(api_key="k", http_client=object()),
        lambda: ob.AzureOpenAI(**azure, http_client=object()),
        lambda: ob.AsyncOpenAI(api_key="k", http_client=object()),
        lambda: make_client(api).with_options(http_client=object()),
        lambda: ob.AzureOpenAI(**azure).copy(http_client=object()),
        lambda: ob.AsyncOpenAI(api_key="k").with_options(http_client=object()),
    ):
        with raises(ob.OpenAIError) as caught:
            make()
        assert str(caught.value) == message
    assert ob.OpenAI(api_key="k", http_client=None).api_key == "k"


def batch_event(kind: str = "batch.completed", **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "evt_685343a1381c819085d44c354e1b330e",
        "created_at": _NOW - 5,
        "data": {"id": "batch_abc123"},
        "type": kind,
        "object": "event",
    }
    event.update(changes)
    return event


def test_a_valid_signature_passes_with_a_whsec_secret() -> None:
    body = json.dumps(batch_event())
    webhook_client().webhooks.verify_signature(body, signed_headers(body))  # no error


_WRONG = "The given webhook signature does not match the expected signature"


def test_a_secret_without_whsec_is_used_as_its_utf8_bytes() -> None:
    body = json.dumps(batch_event())
    headers = signed_headers(body, key="plain-sécret".encode())
    webhook_client("plain-sécret").webhooks.verify_signature(body, headers)
    with refused(ob.InvalidWebhookSignatureError, _WRONG):
        webhook_client().webhooks.verify_signature(body, headers)


def test_one_matching_signature_among_several_is_enough() -> None:
    body = '{"type":"batch.failed"}'
    good = signature(body, _NOW, "wh_1")
    other = signature(body, _NOW, "wh_1", key=b"an old secret")
    webhooks = webhook_client().webhooks
    for given in (f"v1,{other} v1,{good}", f"v1,{good}  v1,{other}", good, f"v1a,x\tv1,{good}"):
        headers = {**signed_headers(body), "webhook-signature": given}
        webhooks.verify_signature(body, headers)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-signature": "v1,AAAA"},
        {"webhook-signature": ""},
        {"webhook-id": "wh_2"},
        {"webhook-timestamp": f"+{_NOW}"},  # the signed text is the header as sent
        {"webhook-signature": "v1,ü"},  # not ASCII: compare_digest would raise TypeError
    ],
)
def test_a_wrong_signature_is_refused(change: dict[str, str]) -> None:
    body = json.dumps(batch_event())
    headers = {**signed_headers(body), **change}
    with refused(ob.InvalidWebhookSignatureError, _WRONG) as info:
        webhook_client().webhooks.verify_signature(body, headers)
    assert isinstance(info.value, ValueError)
    assert not isinstance(info.value, ob.OpenAIError)


def test_a_changed_body_or_the_wrong_secret_is_refused() -> None:
    body = json.dumps(batch_event())
    headers = signed_headers(body)
    webhooks = webhook_client().webhooks
    for payload, secret in [(body + " ", None), (body, "whsec_" + "A" * 44), (body, "raw")]:
        with refused(ob.InvalidWebhookSignatureError, _WRONG):
            webhooks.verify_signature(payload, headers, secret=secret)


def test_a_body_that_is_not_utf8_is_a_wrong_signature() -> None:
    body = b'{"type":"batch.completed","id":"\xff"}'
    with refused(ob.InvalidWebhookSignatureError, _WRONG):
        webhook_client().webhooks.unwrap(body, signed_headers(b"{}"))


@pytest.mark.parametrize(
    ("offset", "tolerance", "error"),
    [
        (-300, 300, None),
        (300, 300, None),
        (-301, 300, "Webhook timestamp is too old"),
        (301, 300, "Webhook timestamp is too new"),
        (-10, 10, None),
        (-11, 10, "Webhook timestamp is too old"),
        (0, 0, None),
        (1, 0, "Webhook timestamp is too new"),
    ],
)
def test_the_timestamp_must_be_within_the_tolerance(
    offset: int, tolerance: int, error: str | None
) -> None:
    body = json.dumps(batch_event())
    headers = signed_headers(body, timestamp=_NOW + offset)
    webhooks = webhook_client(now=_NOW + 0.9).webhooks  # now is whole seconds, as officially
    if error is None:
        webhooks.verify_signature(body, headers, tolerance=tolerance)
        return
    with refused(ob.InvalidWebhookSignatureError, error):
        webhooks.verify_signature(body, headers, tolerance=tolerance)


def test_unwrap_keeps_the_default_tolerance_of_five_minutes() -> None:
    body = json.dumps(batch_event())
    webhook_client().webhooks.unwrap(body, signed_headers(body, timestamp=_NOW - 300))
    with refused(ob.InvalidWebhookSignatureError, "Webhook timestamp is too old"):
        webhook_client().webhooks.unwrap(body, signed_headers(body, timestamp=_NOW - 301))


@pytest.mark.parametrize("timestamp", ["1750000000.0", "soon", "", "0x10"])
def test_a_timestamp_that_is_not_a_whole_number_is_refused(timestamp: str) -> None:
    body = "{}"
    headers = {**signed_headers(body), "webhook-timestamp": timestamp}
    with refused(ob.InvalidWebhookSignatureError, "Invalid webhook timestamp format"):
        webhook_client().webhooks.verify_signature(body, headers)


def test_a_timestamp_is_read_as_int_reads_it_and_signed_as_sent() -> None:
    body = "{}"
    headers = signed_headers(body, timestamp=f" {_NOW} ")
    webhook_client().webhooks.verify_signature(body, headers)


def http_message(headers: dict[str, str]) -> http.client.HTTPMessage:
    """Headers as an http.server handler sees them in ``self.headers``."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    return http.client.parse_headers(io.BytesIO(lines.encode("latin-1")))


@pytest.mark.parametrize("missing", ["webhook-signature", "webhook-timestamp", "webhook-id"])
def test_a_missing_header_is_named(missing: str) -> None:
    body = "{}"
    headers = signed_headers(body)
    del headers[missing]
    for given in (headers, http_message(headers)):
        with refused(ValueError, f"Could not find {missing} header"):  # not a signature error
            webhook_client().webhooks.verify_signature(body, given)


def test_headers_are_found_in_any_case_in_a_dict() -> None:
    body = json.dumps(batch_event())
    headers = signed_headers(body)
    webhooks = webhook_client().webhooks
    for spell in (str.upper, str.title, lambda name: name.replace("webhook", "WebHook")):
        webhooks.verify_signature(body, {spell(name): value for name, value in headers.items()})


def test_headers_are_found_in_what_http_server_and_email_give() -> None:
    body = json.dumps(batch_event())
    headers = signed_headers(body)
    webhooks = webhook_client().webhooks
    webhooks.verify_signature(body, http_message({k.upper(): v for k, v in headers.items()}))
    lines = "".join(f"{k.title()}: {v}\n" for k, v in headers.items())
    webhooks.verify_signature(body, email.message_from_string(lines))


def test_an_empty_header_counts_as_missing_only_where_get_finds_it() -> None:
    body = "{}"
    headers = {**signed_headers(body), "webhook-id": ""}
    with refused(ValueError, "Could not find webhook-id header"):
        webhook_client().webhooks.verify_signature(body, http_message(headers))
    with refused(ob.InvalidWebhookSignatureError, _WRONG):
        webhook_client().webhooks.verify_signature(body, headers)  # a dict's "" is a value


def test_bytes_and_str_payloads_are_alike() -> None:
    body = json.dumps(batch_event(data={"id": "batch_é"}), ensure_ascii=False)
    headers = signed_headers(body)
    webhooks = webhook_client().webhooks
    webhooks.verify_signature(body, headers)
    webhooks.verify_signature(body.encode(), headers)
    assert webhooks.unwrap(body.encode(), headers) == webhooks.unwrap(body, headers)


def test_the_secret_comes_from_the_call_the_client_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = "{}"
    headers = signed_headers(body)
    webhook_client(None).webhooks.verify_signature(body, headers, secret=_SECRET)
    webhook_client(_SECRET).webhooks.verify_signature(body, headers)
    with refused(ob.InvalidWebhookSignatureError, _WRONG):
        webhook_client(_SECRET).webhooks.verify_signature(body, headers, secret="whsec_AAAA")
    monkeypatch.setenv("OPENAI_WEBHOOK_SECRET", _SECRET)
    client = webhook_client(None)
    assert client.webhook_secret == _SECRET
    client.webhooks.verify_signature(body, headers)
    client.webhook_secret = "whsec_AAAA"  # read at each call, not kept by client.webhooks
    with refused(ob.InvalidWebhookSignatureError, _WRONG):
        client.webhooks.verify_signature(body, headers)


_NO_SECRET = (
    "The webhook secret must either be set using the env var, OPENAI_WEBHOOK_SECRET, on the "
    "client class, OpenAI(webhook_secret='123'), or passed to this function"
)


def test_without_a_secret_nothing_is_checked() -> None:
    webhooks = webhook_client(None).webhooks
    with refused(ValueError, _NO_SECRET):
        webhooks.verify_signature("{}", {})  # the secret is looked for before the headers
    with refused(ValueError, _NO_SECRET):
        webhooks.unwrap("{}", signed_headers("{}"))


_EMPTY_SECRET = "The webhook secret must not be empty after decoding"


@pytest.mark.parametrize("secret", ["", "whsec_"])
def test_an_empty_secret_is_refused_not_used_as_a_key(
    secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17, item 10: an event signed with an empty key is no proof it came from OpenAI."""
    forged = json.dumps(batch_event())
    headers = signed_headers(forged, key=b"")
    monkeypatch.setenv("OPENAI_WEBHOOK_SECRET", secret)
    for client, given in ((webhook_client(None), None), (webhook_client(), secret)):
        assert given is not None or client.webhook_secret == secret
        with refused(ValueError, _EMPTY_SECRET):
            client.webhooks.unwrap(forged, headers, secret=given)
        with refused(ValueError, _EMPTY_SECRET):
            client.webhooks.verify_signature(forged, headers, secret=given)
    # As in the official package, the headers and the timestamp are checked first.
    with refused(ValueError, "Could not find webhook-signature header"):
        webhook_client(secret).webhooks.verify_signature(forged, {})
    with refused(ob.InvalidWebhookSignatureError, "Webhook timestamp is too old"):
        webhook_client(secret, now=_NOW + 301).webhooks.verify_signature(forged, headers)


_BATCH_EVENTS = [
    ("batch.completed", ob.BatchCompletedWebhookEvent),
    ("batch.failed", ob.BatchFailedWebhookEvent),
    ("batch.expired", ob.BatchExpiredWebhookEvent),
    ("batch.cancelled", ob.BatchCancelledWebhookEvent),
]


@pytest.mark.parametrize(("kind", "event_class"), _BATCH_EVENTS)
def test_unwrap_gives_each_batch_event_its_class(kind: str, event_class: type[Any]) -> None:
    payload = batch_event(kind)
    body = json.dumps(payload)
    event = webhook_client().webhooks.unwrap(body.encode(), signed_headers(body))
    assert type(event) is event_class
    assert isinstance(event, ob.WebhookEvent)
    assert (event.id, event.created_at, event.type, event.object) == (
        payload["id"],
        _NOW - 5,
        kind,
        "event",
    )
    assert event.data == ob.BatchWebhookEventData(id="batch_abc123")
    assert event.data.id == "batch_abc123"
    assert event.to_dict() == payload
    assert list(event.to_dict()) == ["id", "created_at", "data", "type", "object"]
    assert repr(event).startswith(f"{event_class.__name__}(id='evt_")


def test_a_batch_event_keeps_what_a_newer_server_adds() -> None:
    payload = batch_event(data={"id": "batch_1", "status": "completed"}, region="eu")
    del payload["object"]
    body = json.dumps(payload)
    event = webhook_client().webhooks.unwrap(body, signed_headers(body))
    assert event.object is None
    assert event.to_dict() == payload
    assert json.loads(event.to_json()) == payload


def test_an_event_of_another_type_is_kept_as_it_came() -> None:
    payload = {
        "id": "evt_2",
        "created_at": _NOW,
        "data": {"id": "resp_1", "extra": [1, 2]},
        "type": "response.completed",
        "object": "event",
    }
    body = json.dumps(payload)
    event = webhook_client().webhooks.unwrap(body, signed_headers(body))
    assert type(event) is ob.WebhookEvent
    assert (event.type, event.id, event.created_at) == ("response.completed", "evt_2", _NOW)
    assert event.data == ob.WebhookEventData.from_dict({"id": "resp_1", "extra": [1, 2]})
    assert event.to_dict() == payload
    for odd in ({"type": ["batch.completed"]}, {"id": "evt_3"}):
        text = json.dumps(odd)
        assert type(webhook_client().webhooks.unwrap(text, signed_headers(text))) is ob.WebhookEvent


@pytest.mark.parametrize("kind", ["response.completed", "fine_tuning.job.succeeded", "x.new"])
def test_every_event_reads_its_data_by_attribute(kind: str) -> None:
    """Issue 17, item 11: ``event.data.id`` on an event without a class of its own."""
    payload = batch_event(kind, data={"id": "obj_1", "extra": {"n": [1]}})
    body = json.dumps(payload)
    event = webhook_client().webhooks.unwrap(body, signed_headers(body))
    assert type(event.data) is ob.WebhookEventData
    assert (event.data.id, event.data.extra) == ("obj_1", {"n": [1]})
    with refused(AttributeError, "'WebhookEventData' object has no attribute 'status'"):
        event.data.status  # noqa: B018
    assert repr(event.data) == "WebhookEventData(id='obj_1', extra={'n': [1]})"
    assert event.to_dict() == payload and event.data.to_dict() == payload["data"]
    assert event.model_dump() == payload
    assert json.loads(event.model_dump_json()) == payload
    assert event.data != ob.WebhookEventData.from_dict({"id": "obj_2"})
    not_an_object = batch_event(kind, data=[1])
    text = json.dumps(not_an_object)
    assert webhook_client().webhooks.unwrap(text, signed_headers(text)).data == [1]


def test_unwrap_checks_the_signature_before_reading_the_payload() -> None:
    with refused(ob.InvalidWebhookSignatureError, _WRONG):
        webhook_client().webhooks.unwrap("not json", signed_headers("{}"))
    with pytest.raises(json.JSONDecodeError):
        webhook_client().webhooks.unwrap("not json", signed_headers("not json"))


def test_a_signed_payload_that_is_not_an_object_is_refused() -> None:
    body = "[1]"
    with refused(ValueError, "The webhook payload is not a JSON object: list"):
        webhook_client().webhooks.unwrap(body, signed_headers(body))


def test_the_webhook_secret_is_not_shown() -> None:
    client = webhook_client()
    assert _SECRET not in repr(client)
    with pytest.raises(ob.InvalidWebhookSignatureError) as info:
        client.webhooks.verify_signature("{}", {**signed_headers("{}"), "webhook-id": "x"})
    assert _SECRET[6:] not in str(info.value) + repr(info.value)


def _bodies(api: FakeAPI) -> list[tuple[str, str, Any]]:
    """Each request as sent: method, path and JSON body (None for none)."""
    return [(r.method, r.path, json.loads(r.body) if r.body else None) for r in api.requests]


def test_webhook_endpoints_are_made_listed_changed_tested_and_deleted(
    client: Client, api: FakeAPI
) -> None:
    """Issue 17, item 16: the official endpoint calls, their paths, bodies and answers."""
    made = client.webhooks.create(
        url="https://example.com/hook", name="batches", event_types=["batch.completed"]
    )
    assert type(made) is ob.WebhookEndpointWithSecret
    assert made.signing_secret == api.secrets[made.id] and made.signing_secret.startswith("whsec_")
    assert made.to_dict() == {**api.endpoints[made.id], "signing_secret": made.signing_secret}
    assert (made.url, made.name, made.event_types) == (
        "https://example.com/hook",
        "batches",
        ["batch.completed"],
    )
    other = client.webhooks.create(url="https://b.example", name="b", event_types=("batch.failed",))
    got = client.webhooks.retrieve(made.id)
    assert type(got) is ob.WebhookEndpoint and got.signing_secret_hint == made.signing_secret_hint
    with pytest.raises(AttributeError):
        got.signing_secret  # noqa: B018  # not in this answer, nor in the class
    changed = client.webhooks.update(made.id, event_types=["batch.failed", "batch.expired"])
    assert changed.event_types == ["batch.failed", "batch.expired"] and changed.name == "batches"
    assert [e.id for e in client.webhooks.list(limit=1)] == [other.id, made.id]  # newest first
    page = client.webhooks.list(limit=1)
    assert (page.has_more, [e.id for e in page.data]) == (True, [other.id])
    rotated = client.webhooks.rotate_secret(made.id, keep_old_secret_active_for_24_hours=True)
    assert rotated.signing_secret not in (made.signing_secret, None)
    tested = client.webhooks.test(made.id, event_type="batch.completed")
    assert type(tested) is ob.WebhookEndpointTestResult
    assert (tested.webhook_endpoint_id, tested.status_code, tested.success) == (made.id, 200, True)
    assert api.deliveries == [(made.id, "batch.completed")]
    kinds = client.webhooks.event_types.list()
    assert type(kinds) is ob.WebhookEventTypeList and "batch.expired" in kinds.data
    gone = client.webhooks.delete(made.id)
    assert type(gone) is ob.DeletedWebhookEndpoint
    assert (gone.id, gone.deleted, gone.object) == (made.id, True, "webhook_endpoint.deleted")
    with raises(ob.NotFoundError):
        client.webhooks.retrieve(made.id)
    sent = [(method, path.replace(made.id, "ID"), body) for method, path, body in _bodies(api)]
    assert sent[:5] == [
        ("POST", "/v1/webhook_endpoints", {
            "event_types": ["batch.completed"], "name": "batches",
            "url": "https://example.com/hook",
        }),
        ("POST", "/v1/webhook_endpoints", {
            "event_types": ["batch.failed"], "name": "b", "url": "https://b.example",
        }),
        ("GET", "/v1/webhook_endpoints/ID", None),
        ("POST", "/v1/webhook_endpoints/ID", {"event_types": ["batch.failed", "batch.expired"]}),
        ("GET", "/v1/webhook_endpoints", None),
    ]  # fmt: skip
    assert sent[-5:] == [
        ("POST", "/v1/webhook_endpoints/ID/rotate_secret", {
            "keep_old_secret_active_for_24_hours": True,
        }),
        ("POST", "/v1/webhook_endpoints/ID/test", {"event_type": "batch.completed"}),
        ("GET", "/v1/webhook_event_types", None),
        ("DELETE", "/v1/webhook_endpoints/ID", None),
        ("GET", "/v1/webhook_endpoints/ID", None),
    ]  # fmt: skip
    assert [r.query for r in api.requests[4:7]] == [
        {"limit": "1"},
        {"limit": "1", "after": other.id},  # its has_more is false: no third page
        {"limit": "1"},
    ]


def test_a_webhook_endpoint_secret_is_masked_in_repr_only(client: Client, api: FakeAPI) -> None:
    """Issue 17, item 16: `signing_secret` and `to_dict()` give it; repr never does."""
    made = client.webhooks.create(url="https://a.example", name="a", event_types=["batch.failed"])
    secret = made.signing_secret
    assert repr(made) == (
        f"WebhookEndpointWithSecret(id='{made.id}', created_at={_T0}, "
        "event_types=['batch.failed'], name='a', object='webhook_endpoint', "
        f"signing_secret='********', signing_secret_hint='{made.signing_secret_hint}', "
        f"url='https://a.example', updated_at={_T0})"
    )
    assert secret not in repr(made) and secret[6:] not in str(made)
    assert made.to_dict()["signing_secret"] == secret == made.model_dump()["signing_secret"]
    assert list(made.model_dump()) == [
        *("id", "created_at", "event_types", "name", "object", "signing_secret"),
        *("signing_secret_hint", "url", "updated_at"),
    ]
    listed = list(client.webhooks.list())
    assert secret not in repr(listed) and secret not in json.dumps([e.to_dict() for e in listed])
    rotated = client.webhooks.rotate_secret(made.id)
    assert rotated.signing_secret != secret and rotated.signing_secret not in repr(rotated)
    assert json.loads(api.requests[-1].body) == {}  # keep_old_... left out, as officially


def test_webhook_endpoint_objects_have_the_object_helpers(client: Client, api: FakeAPI) -> None:
    """The endpoint answers read, compare, copy and dump as every other API object does."""
    made = client.webhooks.create(url="https://a.example", name="a", event_types=["batch.failed"])
    api.endpoints[made.id]["novel"] = 1  # newer than this module
    got = client.webhooks.retrieve(made.id)
    assert got._request_id.startswith("req_") and got.model_extra == {"novel": 1}
    assert got.model_fields_set == set(api.endpoints[made.id]) - {"novel"}
    assert list(ob.WebhookEndpoint.model_fields) == list(got.model_dump())[:8]
    assert got == ob.WebhookEndpoint.model_validate(api.endpoints[made.id]) != made
    copied = got.model_copy(update={"name": "b"})
    assert (copied.name, got.name, copied.to_dict()["novel"]) == ("b", "a", 1)
    got.url = "https://c.example"  # set on the object: its dict follows, the server's does not
    assert got.to_dict()["url"] == "https://c.example" != api.endpoints[made.id]["url"]
    built = ob.WebhookEndpoint(id="we_1", name="n")
    assert (built.id, built.name, built.url, built.event_types) == ("we_1", "n", "", [])
    assert built.to_dict()["id"] == "we_1" and built.to_dict()["updated_at"] is None
    assert ob.WebhookEndpoint.construct(id="x").model_fields_set == {"id"}
    with pytest.raises(AttributeError):
        built.nope  # noqa: B018
    assert json.loads(made.to_json()) == made.to_dict()


_EMPTY_ID = "Expected a non-empty value for `webhook_endpoint_id` but received ''"


def test_webhook_endpoint_calls_refuse_an_empty_id_and_take_every_option(
    client: Client, api: FakeAPI
) -> None:
    for call in (
        client.webhooks.retrieve,
        client.webhooks.update,
        client.webhooks.delete,
        client.webhooks.rotate_secret,
        lambda endpoint_id: client.webhooks.test(endpoint_id, event_type="batch.failed"),
    ):
        with raises(ValueError, re.escape(_EMPTY_ID)):  # as officially: before any request
            call("")
    assert api.requests == []
    made = client.webhooks.create(
        url="https://a.example",
        name="a",
        event_types=["batch.failed"],
        extra_headers={"X-Trace": "1"},
        extra_query={"dry": "no"},
        extra_body={"name": "from extra_body"},
        timeout=5,
    )
    sent = api.requests[-1]
    assert (sent.headers["x-trace"], sent.query, made.name) == (
        "1",
        {"dry": "no"},
        "from extra_body",
    )
    client.webhooks.retrieve(made.id, extra_body={"x": 1})  # a GET: not sent, as officially
    assert api.requests[-1].body == b""
    client.webhooks.delete(made.id, extra_body={"x": 1}, extra_query={"q": "1"})  # sent
    assert (json.loads(api.requests[-1].body), api.requests[-1].query) == ({"x": 1}, {"q": "1"})
    made = client.webhooks.create(url="https://a.example", name="a", event_types=["batch.failed"])
    with raises(ob.BadRequestError, "the URL must use https"):
        client.webhooks.update(made.id, url="http://plain.example")
    assert client.webhooks.update(made.id, name=None, url=ob.NOT_GIVEN).name == "a"
    assert json.loads(api.requests[-1].body) == {}
    raw = client.webhooks.with_raw_response.retrieve(made.id)
    assert (raw.status_code, raw.parse().id) == (200, made.id)
    assert client.with_raw_response.webhooks.delete(made.id).parse().deleted is True


def test_the_async_client_manages_webhook_endpoints(api: FakeAPI) -> None:
    import asyncio

    async def main() -> list[Any]:
        stopped = {"clock": lambda: _NOW}  # the signed event's time
        async with ob.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url, **stopped) as client:
            made = await client.webhooks.create(
                url="https://a.example", name="a", event_types=["batch.completed"]
            )
            await client.webhooks.create(
                url="https://b.example", name="b", event_types=["batch.failed"]
            )
            listed = [e.id async for e in client.webhooks.list(limit=1)]
            page = await client.webhooks.list()
            kinds = await client.webhooks.event_types.list()
            tested = await client.webhooks.test(made.id, event_type="batch.failed")
            rotated = await client.webhooks.rotate_secret(made.id)
            raw = await client.webhooks.with_raw_response.retrieve(made.id)
            gone = await client.webhooks.delete(made.id)
            body = json.dumps(batch_event())
            event = client.webhooks.unwrap(body, signed_headers(body), secret=_SECRET)
            return [made, listed, page, kinds, tested, rotated, raw, gone, event]

    made, listed, page, kinds, tested, rotated, raw, gone, event = asyncio.run(main())
    assert type(made) is ob.WebhookEndpointWithSecret and len(listed) == 2
    assert [e.id for e in page.data] == listed and listed[1] == made.id
    assert "batch.completed" in kinds.data and tested.event_type == "batch.failed"
    assert rotated.signing_secret == api.secrets.get(made.id, rotated.signing_secret)
    assert raw.status_code == 200 and gone.deleted and made.id not in api.endpoints
    assert type(event) is ob.BatchCompletedWebhookEvent


def _upper(headers: dict[str, str]) -> dict[str, str]:
    return {name.upper(): value for name, value in headers.items()}


def _bare(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "webhook-signature": headers["webhook-signature"][3:]}  # no "v1,"


_EVENT = batch_event("batch.cancelled")  # a type both parse alike; see the last test
_Form = Callable[[Dict[str, str]], Any]
#: name: (payload, header changes (None drops one), seconds from now, headers' form, raw key)
_SIDE_BY_SIDE: dict[str, tuple[Any, dict[str, str | None], int, _Form, bytes | None]] = {
    "completed": (batch_event("batch.completed"), {}, 0, dict, None),
    "failed": (batch_event("batch.failed"), {}, 0, dict, None),
    "expired": (batch_event("batch.expired"), {}, 0, dict, None),
    "cancelled": (_EVENT, {}, 0, dict, None),
    "extra fields": (batch_event(region="eu", data={"id": "b", "x": 1}), {}, 0, dict, None),
    "no object": ({"id": "e", "data": {"id": "b"}, "type": "batch.failed"}, {}, 0, dict, None),
    "only a type": ({"type": "batch.expired"}, {}, 0, dict, None),
    "bytes": (json.dumps(_EVENT).encode(), {}, 0, dict, None),
    "bad signature": (_EVENT, {"webhook-signature": "v1,AAAA"}, 0, dict, None),
    "bare signature": (_EVENT, {}, 0, _bare, None),
    "too old": (_EVENT, {}, -301, dict, None),
    "too new": (_EVENT, {}, 301, dict, None),
    "bad timestamp": (_EVENT, {"webhook-timestamp": "1.5"}, 0, dict, None),
    "no signature": (_EVENT, {"webhook-signature": None}, 0, dict, None),
    "no timestamp": (_EVENT, {"webhook-timestamp": None}, 0, dict, None),
    "no id": (_EVENT, {"webhook-id": None}, 0, dict, None),
    "upper-case dict": (_EVENT, {}, 0, _upper, None),
    "HTTPMessage": (_EVENT, {}, 0, http_message, None),
    "empty id, HTTPMessage": (_EVENT, {"webhook-id": ""}, 0, http_message, None),
    "empty id, dict": (_EVENT, {"webhook-id": ""}, 0, dict, None),
    "raw secret": (_EVENT, {}, 0, dict, b"raw"),
    "not JSON": ("{nope", {}, 0, dict, None),
}


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """The class and message of the error, or the class and the dumps of the event."""
    try:
        event = call()
    except ValueError as exc:
        return type(exc).__name__, str(exc)
    return type(event).__name__, (event.to_dict(), event.model_dump_json())


@pytest.mark.parametrize("name", list(_SIDE_BY_SIDE))
def test_unwrap_agrees_with_the_official_package(name: str) -> None:
    openai = _official()
    payload, changes, seconds, form, key = _SIDE_BY_SIDE[name]
    body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    signed = signed_headers(body, timestamp=int(time.time()) + seconds, key=key or _KEY)
    headers = form({k: v for k, v in {**signed, **changes}.items() if v is not None})
    secret = None if key is None else key.decode()
    official = openai.OpenAI(api_key="sk-test", webhook_secret=_SECRET).webhooks
    ours = ob.OpenAI(api_key="sk-test", webhook_secret=_SECRET).webhooks
    theirs = _outcome(lambda: official.unwrap(body, headers, secret=secret))
    assert _outcome(lambda: ours.unwrap(body, headers, secret=secret)) == theirs


def test_verify_signature_agrees_with_the_official_package_on_a_secret_missing() -> None:
    openai = _official()
    official = openai.OpenAI(api_key="sk-test", webhook_secret=None).webhooks
    ours = ob.OpenAI(api_key="sk-test", webhook_secret=None).webhooks
    theirs = _outcome(lambda: official.verify_signature("{}", {}))
    mine = _outcome(lambda: ours.verify_signature("{}", {}))
    assert mine == theirs == ("ValueError", _NO_SECRET)
    assert issubclass(openai.InvalidWebhookSignatureError, ValueError)
    assert ob.InvalidWebhookSignatureError.__mro__[1:] == (
        ValueError,
        Exception,
        BaseException,
        object,
    )


def _unwrap_outcome(package: Any, on_client: str, body: str, headers: Any, given: Any) -> Any:
    """``_outcome`` of ``unwrap`` on a client of ``package`` made with ``on_client``."""
    webhooks = package.OpenAI(api_key="sk-test", webhook_secret=on_client).webhooks
    return _outcome(lambda: webhooks.unwrap(body, headers, secret=given))


@pytest.mark.parametrize("secret", ["", "whsec_"])
def test_an_empty_secret_is_refused_as_the_official_package_refuses_it(secret: str) -> None:
    """Issue 17, item 10: the same forged event, the same refusal."""
    openai = _official()
    forged = json.dumps(batch_event())
    headers = signed_headers(forged, timestamp=int(time.time()), key=b"")
    for secret_on, secret_given in ((secret, None), (_SECRET, secret)):
        theirs, mine = [
            _unwrap_outcome(package, secret_on, forged, headers, secret_given)
            for package in (openai, ob)
        ]
        assert mine == theirs == ("ValueError", _EMPTY_SECRET)


@pytest.mark.parametrize("kind", ["response.completed", "fine_tuning.job.succeeded"])
def test_other_events_read_as_the_official_package_reads_them(kind: str) -> None:
    """Issue 17, item 11: the same event's data by attribute, and the same dumps."""
    openai = _official()
    body = json.dumps(batch_event(kind, data={"id": "obj_1", "extra": [1]}))
    headers = signed_headers(body, timestamp=int(time.time()))
    theirs, mine = [
        package.OpenAI(api_key="sk-test", webhook_secret=_SECRET).webhooks.unwrap(body, headers)
        for package in (openai, ob)
    ]
    assert (mine.data.id, mine.data.extra) == (theirs.data.id, theirs.data.extra)
    assert mine.model_dump() == theirs.model_dump()
    assert mine.model_dump_json() == theirs.model_dump_json()


def test_an_unknown_type_differs_from_the_official_package_on_purpose() -> None:
    openai = _official()
    body = json.dumps({"id": "e", "type": "video.completed", "data": {"id": "v"}})
    headers = signed_headers(body, timestamp=int(time.time()))
    theirs = openai.OpenAI(api_key="x", webhook_secret=_SECRET).webhooks.unwrap(body, headers)
    ours = ob.OpenAI(api_key="x", webhook_secret=_SECRET).webhooks.unwrap(body, headers)
    assert type(theirs).__name__ == "AgentEnvironmentExpiredWebhookEvent"  # their first class
    assert type(ours) is ob.WebhookEvent
    assert ours.to_dict() == theirs.to_dict() == json.loads(body)


def _webhook_script(package: Any, client: Any, api: FakeAPI) -> list[Any]:
    """The endpoint calls, their answers (ids and secrets made neutral) and their errors."""
    hooks = client.webhooks
    made = hooks.create(url="https://a.example/h", name="a", event_types=["batch.completed"])
    other = hooks.create(url="https://b.example/h", name="b", event_types=["batch.failed"])
    ids = [made.id, other.id]
    secret = made.signing_secret
    seen: list[Any] = [type(made).__name__, secret == api.secrets[made.id]]
    seen.append(made.model_dump(exclude={"id", "signing_secret", "signing_secret_hint"}))
    seen.append(secret not in repr(made) and secret not in str(made))
    seen.append(hooks.retrieve(made.id).model_dump(exclude={"id", "signing_secret_hint"}))
    changed = hooks.update(made.id, name="c", event_types=["batch.failed", "batch.expired"])
    seen.append(changed.model_dump(exclude={"id", "signing_secret_hint"}))
    seen.append([e.name for e in hooks.list(limit=1)])
    page = hooks.list(limit=1)
    seen.append((page.has_more, page.has_next_page(), len(page.data)))
    rotated = hooks.rotate_secret(made.id, keep_old_secret_active_for_24_hours=False)
    seen.append((type(rotated).__name__, rotated.signing_secret == api.secrets[made.id]))
    seen.append(hooks.rotate_secret(made.id).signing_secret != rotated.signing_secret)
    seen.append(
        hooks.test(made.id, event_type="batch.expired").model_dump(exclude={"webhook_endpoint_id"})
    )
    seen.append(hooks.event_types.list().model_dump())
    hooks.retrieve(
        made.id, extra_headers={"X-Trace": "t"}, extra_query={"q": "1"}, extra_body={"b": 2}
    )
    for endpoint_id in ids:
        seen.append(hooks.delete(endpoint_id).model_dump(exclude={"id"}))
    for call in (
        lambda: hooks.retrieve(made.id),
        lambda: hooks.delete(""),
        lambda: hooks.create(url="https://c.example", name="c", event_types=["nope.event"]),
    ):
        try:
            call()
        except Exception as exc:  # the class and message are compared
            message = str(exc).split(" (request id")[0].replace(made.id, "ID0")
            seen.append((_public_class(exc), message))
    return [seen, _wire(api, ids)]


def test_webhook_endpoints_agree_with_the_official_package(api: FakeAPI) -> None:
    """Issue 17, item 16: the same endpoint calls on both packages: the same answers, errors
    and requests on the wire. (Their repr leaves the secret out; ours masks it.)"""
    openai = _official()
    official = openai.OpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    del api.requests[:]
    theirs = _webhook_script(openai, official, api)
    mine = _webhook_script(ob, make_client(api, max_retries=0), api)
    assert mine[0] == theirs[0]
    assert mine[1] == theirs[1]


# ---------------------------------------------------------------- Prices and costs


def test_text_tokens_count_characters_by_their_script() -> None:
    assert ob._text_tokens("abcd" * 11) == pytest.approx(10.0)
    assert ob._text_tokens("привет") == pytest.approx(6 * 0.4)  # two UTF-8 bytes each
    assert ob._text_tokens("你好") == pytest.approx(2 * 0.8)  # Chinese, Japanese, Korean
    assert ob._text_tokens("नमस्ते") == pytest.approx(6 * 0.4)  # Indic: lead byte E0
    assert ob._text_tokens("“ok”") == pytest.approx(2 / 4.4 + 2 * 0.7)  # marks: lead byte E2
    assert ob._text_tokens("") == 0


def user(content: object) -> dict[str, object]:
    return {"role": "user", "content": content}


def test_input_tokens_count_the_text_the_model_reads_not_the_json() -> None:
    chat = "/v1/chat/completions"
    system = {"role": "system", "content": "You are terse."}
    assert ob._input_tokens(chat, {"messages": [system, user("abcd" * 11)]}) == 25
    parts = [{"type": "text", "text": "abcd" * 11}, {"type": "image_url", "image_url": {}}]
    assert ob._input_tokens(chat, {"messages": [user(parts)]}) == 3 + 4 + 10
    tools = [{"type": "function", "function": {"name": "f"}}]  # 45 characters of JSON
    assert ob._input_tokens(chat, {"messages": [user("")], "tools": tools}) == 18  # 7 + 10.2
    responses = {"input": "abcd" * 11, "instructions": "x" * 22}
    assert ob._input_tokens("/v1/responses", responses) == 3 + 4 + 10 + 4 + 5
    embeddings = "/v1/embeddings"
    assert ob._input_tokens(embeddings, {"input": ["abcd" * 11, "x" * 22]}) == 15
    assert ob._input_tokens(embeddings, {"input": "x"}) == 1  # a text is a token at least
    assert ob._input_tokens(embeddings, {"input": [1, 2, 3]}) == 3  # token ids, exactly
    assert ob._input_tokens(embeddings, {"input": [[1, 2], [3]]}) == 3
    assert ob._input_tokens("/v1/completions", {"prompt": "abcd" * 11}) == 10
    moderation = {"input": [{"type": "text", "text": "abcd" * 11}]}
    assert ob._input_tokens("/v1/moderations", moderation) == 10


def test_output_is_bounded_by_the_bodys_limit_times_n_or_unbounded() -> None:
    chat = "/v1/chat/completions"
    assert ob._output_limit({"max_tokens": 50}, chat) == 50
    assert ob._output_limit({"max_completion_tokens": 50, "n": 3}, chat) == 150
    assert ob._output_limit({"max_output_tokens": 70}, "/v1/responses") == 70
    assert ob._output_limit({"temperature": 1}, chat) is None
    assert ob._output_limit({"max_tokens": True}, chat) is None  # not a number of tokens
    assert ob._output_limit({"input": "x"}, "/v1/embeddings") == 0
    body = {"messages": [user("abcd" * 11)], "max_tokens": 5}
    assert ob._request_estimate(chat, body) == (17, 5)  # a request's worst case: 17 in, 5 out


def chat_line(custom_id: str, messages: list[Any], **body: Any) -> dict[str, Any]:
    """A chat request line to gpt-4o with these messages and body fields."""
    return request_line(custom_id, body={"model": "gpt-4o", "messages": messages, **body})


# By hand: 44 ASCII characters are 10 tokens (4.4 a token); "You are terse." 14 / 4.4.
# Request 1: 3 (the reply) + 4 + 14/4.4 (system) + 4 + 10 (user) = 24.18 -> 25, output 100.
# Request 2: 3 + 4 + 6 x 0.4 (Cyrillic) = 9.4 -> 10, output 50 x n=2 = 100.
KNOWN_FILE = [
    chat_line(
        "a",
        [{"role": "system", "content": "You are terse."}, user("abcd" * 11)],
        max_tokens=100,
    ),
    chat_line("b", [user("привет")], max_completion_tokens=50, n=2),
]


def test_validate_input_estimates_tokens_and_cost_of_a_known_file(tmp_path: Any) -> None:
    path = write_lines(tmp_path / "in.jsonl", KNOWN_FILE)
    estimate = ob.validate_input(path, estimate=True).estimate
    assert estimate == ob.InputEstimate(
        "gpt-4o", 2, 35, 200, 0, 35 * 1.25 / 1e6, 200 * 5.0 / 1e6, PRICES, None
    )
    unbounded = write_lines(tmp_path / "more.jsonl", [*KNOWN_FILE, chat_line("c", [user("")])])
    estimate = ob.validate_input(unbounded, estimate=True).estimate
    assert estimate is not None
    assert (estimate.input_tokens, estimate.output_tokens, estimate.unbounded) == (42, None, 1)
    assert estimate.output_cost is None and estimate.input_cost == pytest.approx(42 * 1.25 / 1e6)
    assert ob.validate_input(path).estimate is None  # not asked for


def test_embeddings_are_estimated_with_no_output(tmp_path: Any) -> None:
    body = {"model": "text-embedding-3-small", "input": ["abcd" * 11, "x" * 22]}
    path = write_lines(tmp_path / "in.jsonl", [request_line("e", url="/v1/embeddings", body=body)])
    estimate = ob.validate_input(path, estimate=True).estimate
    assert estimate == ob.InputEstimate(
        "text-embedding-3-small", 1, 15, 0, 0, 15 * 0.01 / 1e6, 0.0, PRICES, None
    )


def test_prices_by_model_with_dated_names_cached_input_and_standard_prices() -> None:
    prices = ob._Prices(environ={})
    assert prices.cost("gpt-4o", 1_000_000, 1_000_000, cached=500_000) == 0.625 + 0.3125 + 5
    assert prices.standard_cost("gpt-4o", 1_000_000, 1_000_000, cached=500_000) == 11.875
    dated = prices.price("gpt-4o-mini-2024-07-18")
    assert dated is not None and (dated.input, dated.output) == (0.075, 0.3)
    own = prices.price("gpt-4o-2024-05-13")  # a dated model with a price of its own
    assert own is not None and (own.input, own.output) == (2.5, 7.5)
    assert prices.cost("o1-pro", 0, 0, cached=0) == 0  # no cached price: billed as input
    assert prices.price("my-model") is None and prices.cost("my-model", 1, 1) is None
    assert prices.standard_cost("my-model", 1, 1) is None


def test_prices_given_come_before_the_file_which_comes_before_the_table(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "prices.json"
    file.write_text(
        json.dumps({"gpt-4o": {"input": 3, "output": 4}, "my-model": {"input": 1, "output": 2}})
    )
    monkeypatch.setenv("OPENAI_BATCH_PRICES", str(file))
    path = write_lines(tmp_path / "in.jsonl", KNOWN_FILE)
    estimate = ob.validate_input(path, estimate=True).estimate
    assert estimate is not None and estimate.prices == f"the prices in {file}"
    assert estimate.input_cost == pytest.approx(35 * 3 / 1e6)
    estimate = ob.validate_input(path, prices={"gpt-4o": (2, 8, 1)}).estimate
    assert estimate is not None and estimate.prices == "your prices"
    assert estimate.output_cost == pytest.approx(200 * 8 / 1e6)
    given = ob.validate_input(path, prices={"gpt-4o": {"input": 2, "output": 8}}).estimate
    assert given is not None and given.output_cost == estimate.output_cost


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            (1,),
            "prices['gpt-4o']: expected a price as (input, output[, cached_input]) or "
            '{"input": ..., "output": ..., "cached_input": ...} in USD per million tokens, '
            "got (1,)",
        ),
        (
            {"input": "x", "output": 1},
            "prices['gpt-4o']: input must be a number of USD per million tokens, 0 or more, "
            "got 'x'",
        ),
        (
            (1, -2),
            "prices['gpt-4o']: output must be a number of USD per million tokens, 0 or more, "
            "got -2",
        ),
        ({"input": 1}, "prices['gpt-4o']: output price is missing"),
        (
            {"input": 1, "output": 2, "cache": 3},
            "prices['gpt-4o']: unknown key 'cache' (give input, output, cached_input)",
        ),
    ],
)
def test_a_bad_price_given_is_refused_naming_it(tmp_path: Any, value: object, message: str) -> None:
    path = write_lines(tmp_path / "in.jsonl", KNOWN_FILE)
    with raises(ValueError) as info:
        ob.validate_input(path, prices={"gpt-4o": value})
    assert str(info.value) == message


def test_a_bad_prices_file_is_refused_naming_the_variable_and_the_value(
    client: Client, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_lines(tmp_path / "in.jsonl", KNOWN_FILE)
    file = tmp_path / "prices.json"
    where = f"OPENAI_BATCH_PRICES={file}"
    monkeypatch.setenv("OPENAI_BATCH_PRICES", str(file))
    cases = [
        (None, f"{where}: cannot read it: No such file or directory"),
        (
            "{",
            f"{where}: not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (
            "[]",
            f'{where}: expected a JSON object of prices by model ({{"gpt-4o": {{"input": '
            '1.25, "output": 5}}), got an array',
        ),
        (
            '{"my-model": {"input": 1, "output": "lots"}}',
            f"{where}: my-model: output must be a "
            "number of USD per million tokens, 0 or more, got 'lots'",
        ),
    ]
    for content, message in cases:
        if content is not None:
            file.write_text(content)
        with raises(ValueError) as info:
            ob.validate_input(path, estimate=True)
        assert str(info.value) == message
        ran = cli(client, "validate", path)
        assert (ran.code, ran.out, ran.err) == (2, "", f"error: {message}\n")
    assert ob.split_jsonl(path, tmp_path / "shards")  # splitting reads no prices
    assert ob.validate_input(path).estimate is None  # nor does a validation with no estimate


def test_cli_validate_shows_the_estimate_and_whose_prices(client: Client, tmp_path: Any) -> None:
    path = write_lines(tmp_path / "in.jsonl", KNOWN_FILE)
    size = os.path.getsize(path)
    ran = cli(client, "validate", path, tty=True)
    assert ran.out == (
        f"ok  {path}: 2 requests, {size} B, /v1/chat/completions, model gpt-4o\n"
        "    input   ~35 tokens, under $0.01\n"
        "    output  at most 200 tokens, under $0.01\n"
        f"    at {PRICES}\n"
    )
    ran = cli(client, "validate", path, "--price", "gpt-4o=10000,20000", tty=True)
    assert ran.out.splitlines()[1:] == [
        "    input   ~35 tokens, $0.35",
        "    output  at most 200 tokens, $4.00",
        "    at your --price",
    ]
    ran = cli(client, "validate", path, "--price", "gpt-4o=10000,20000,5000")
    assert ran.out == (
        f"ok\t{path}\trequests=2\tbytes={size}\tendpoint=/v1/chat/completions\tmodel=gpt-4o"
        "\tembedding_inputs=0\tinput_tokens=35\toutput_tokens=200\tinput_usd=0.350000"
        "\toutput_usd=4.000000\tprices=your --price\n"
    )
    shown = json.loads(cli(client, "validate", path, "--json").out)["estimate"]
    assert shown == {
        "model": "gpt-4o",
        "requests": 2,
        "input_tokens": 35,
        "output_tokens": 200,
        "unbounded": 0,
        "input_cost": 35 * 1.25 / 1e6,
        "output_cost": 0.001,
        "prices": PRICES,
        "note": None,
    }


def test_a_model_with_no_price_gets_tokens_only_and_the_words_no_price_known(
    client: Client, tmp_path: Any
) -> None:
    lines = [request_line("a", body={"model": "my-model", "messages": [user("abcd" * 11)]})]
    path = write_lines(tmp_path / "in.jsonl", lines)
    estimate = ob.validate_input(path, estimate=True).estimate
    assert estimate == ob.InputEstimate(
        "my-model", 1, 17, None, 1, None, None, None, "no price known for my-model"
    )
    ran = cli(client, "validate", path, tty=True)
    assert ran.out.splitlines()[1:] == [  # tokens only: no amount, and no prices named
        "    input   ~17 tokens",
        "    output  unbounded (1/1 requests set no output limit)",
    ]
    assert ran.err == "note: no price known for my-model: give --price my-model=IN,OUT[,CACHED]\n"
    piped = cli(client, "validate", path)
    assert (
        piped.out.endswith(
            "\tembedding_inputs=0\tinput_tokens=17\toutput_tokens=\tinput_usd=\toutput_usd=\tprices=\n"
        )
        and piped.err == ran.err
    )


def test_a_bad_price_flag_is_a_usage_error(client: Client, tmp_path: Any) -> None:
    path = write_lines(tmp_path / "in.jsonl", KNOWN_FILE)
    for bad in ("gpt-4o=1", "gpt-4o=1,x", "=1,2", "gpt-4o=1,2,3,4", "gpt-4o=-1,2", "gpt-4o=1,inf"):
        ran = cli(client, "validate", path, "--price", bad)
        assert ran.code == 2 and ran.err.endswith(
            "error: argument --price: expected MODEL=IN,OUT[,CACHED] in USD per million tokens "
            f"(gpt-4o=1.25,5), got {bad!r}\n"
        )


def test_the_readme_cost_example_prints_what_it_shows(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_BATCH_PRICES", raising=False)
    (block,) = [block for block in _readme_blocks("python") if "hamlet.jsonl" in block]
    exec(compile(block, "README.md", "exec"), {})
    shown = [line[2:] for line in block.splitlines() if line.startswith("# ")]
    assert capsys.readouterr().out.splitlines() == shown


def test_the_readme_price_rows_are_the_tables() -> None:
    rows = re.findall(
        r"^  \| ([\w.-]+) \| ([\d.]+) \| ([\d.]+|—) \| ([\d.]+) \|$", _readme_text(), re.M
    )
    assert len(rows) >= 10
    for model, given, cached, output in rows:
        price = ob._PRICE_TABLE[model]
        shown = (float(given), None if cached == "—" else float(cached), float(output))
        assert shown == price[:3], model


def test_spend_prices_cached_input_at_its_own_price_and_says_whose() -> None:
    """Issue 19, item 3: tokens used, priced by the model's batch and standard prices."""
    usage = {"input_tokens": 1_000_000, "cached_tokens": 400_000, "output_tokens": 500_000}
    given = ob._spend(ob._Prices({"m": (2, 8, 1)}, given_as="your --price"), "m", usage)
    assert given == {  # 600k x $2 + 400k x $1 + 500k x $8, per million; none standard
        "cost": 5.6,
        "prices": "your --price",
        "standard_cost": None,
        "standard_prices": None,
        "note": None,
    }
    table = ob._spend(ob._Prices(), "gpt-4.1", usage)  # 1.0, 0.25, 4.0; standard 2.0, 0.5, 8.0
    assert (table["cost"], table["standard_cost"]) == (2.7, 5.4)
    assert ob._spend_words(table) == (
        "$2.70 at OpenAI batch prices of 2026-12 (LiteLLM 1.110.2); saved $2.70 against "
        "OpenAI standard prices of 2026-12 (LiteLLM 1.110.2)"
    )
    unknown = ob._spend(ob._Prices(), "my-model", usage)
    assert unknown["cost"] is None and unknown["note"] == "no price known for my-model"


# ---------------------------------------------------------------- JSONL helpers


def test_request_helpers_write_the_common_cases_briefly() -> None:
    chat = BatchRequest.chat("q1", "gpt-4o-mini", "What is 2+2?", max_tokens=5)
    assert chat.to_json() == (
        '{"custom_id":"q1","method":"POST","url":"/v1/chat/completions","body":{"model":'
        '"gpt-4o-mini","messages":[{"role":"user","content":"What is 2+2?"}],"max_tokens":5}}'
    )
    embedding = BatchRequest.embedding("e1", "text-embedding-3-small", ["ä", "b"])
    assert embedding.to_dict()["url"] == "/v1/embeddings"
    assert '"input":["ä","b"]' in embedding.to_json()
    response = BatchRequest.response("r1", "gpt-4.1-mini", "Hi")
    assert response.url is ob.BatchEndpoint.RESPONSES and response.body["input"] == "Hi"
    assert BatchRequest.from_dict(chat.to_dict()) == chat
    custom = BatchRequest(
        "m1", {"model": "omni-moderation-latest", "input": "x"}, "/v1/moderations"
    )
    assert custom.to_dict()["url"] == "/v1/moderations"


def test_write_jsonl_streams_rows_and_counts_them(tmp_path: Any) -> None:
    rows = [*chat_requests(2), {"custom_id": "raw", "note": "ünïcode ✓"}]
    lines, size = ob.write_jsonl(tmp_path / "out.jsonl", iter(rows))
    data = (tmp_path / "out.jsonl").read_bytes()
    assert (lines, size) == (3, len(data))
    assert data.decode().splitlines()[2] == '{"custom_id":"raw","note":"ünïcode ✓"}'
    import io

    text, binary = io.StringIO(), io.BytesIO()
    assert ob.write_jsonl(text, rows) == ob.write_jsonl(binary, rows) == (3, len(data))
    assert text.getvalue().encode() == binary.getvalue() == data


def test_write_jsonl_leaves_nothing_half_written(tmp_path: Any) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with raises(ValueError, match=r"^row 2 cannot be written as JSON: .*set"):
        ob.write_jsonl(target, [{"a": 1}, {"b": {1, 2}}])
    with raises(ValueError, match=r"^row 1 cannot be written as JSON: Out of range float"):
        ob.write_jsonl(target, [{"a": float("nan")}])
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["out.jsonl"]


def test_read_jsonl_accepts_bom_crlf_and_no_final_newline(tmp_path: Any) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n{"b": "\xc3\xa9"}\r\n{"c": 3}')
    assert list(ob.read_jsonl(path)) == [{"a": 1}, {"b": "é"}, {"c": 3}]
    with open(path, encoding="utf-8") as text:
        assert list(ob.read_jsonl(text)) == [{"a": 1}, {"b": "é"}, {"c": 3}]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1}\n{"a": \n', "line 2: not valid JSON: Expecting value (column 7)"),
        (b'{"a": 1}\n[1, 2]\n', "line 2: expected a JSON object, got an array"),
        (b'{"a": 1}\n\n{"a": 1}\n', "line 2: blank line"),
        (b'{"a": "\xff"}\n', "line 1: not valid JSON: not UTF-8 text (byte 8)"),
    ],
)
def test_read_jsonl_names_the_file_and_line(tmp_path: Any, content: bytes, message: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    with raises(ob.InputFileError) as info:
        list(ob.read_jsonl(path))
    assert str(info.value) == f"{path}: {message}"
    assert info.value.path == str(path)


def test_read_jsonl_is_lazy(tmp_path: Any) -> None:
    path = write_lines(tmp_path / "in.jsonl", [{"a": 1}, "not json"])
    lines = ob.read_jsonl(path)
    assert next(lines) == {"a": 1}
    with raises(ob.InputFileError):
        next(lines)


def test_a_valid_file_is_summarised(tmp_path: Any) -> None:
    path = tmp_path / "in.jsonl"
    ob.write_jsonl(path, chat_requests(3))
    summary = ob.validate_input(path)
    assert summary == ob.InputSummary(
        str(path), 3, path.stat().st_size, "/v1/chat/completions", "gpt-4o-mini", 0
    )


def test_an_empty_file(tmp_path: Any) -> None:
    assert _problems(tmp_path, []) == [(None, "the file is empty")]


def test_a_line_that_is_not_json(tmp_path: Any) -> None:
    lines = [request_line("a"), '{"custom_id": "b", "method": "POST",, }']
    assert _problems(tmp_path, lines) == [
        (2, "not valid JSON: Expecting property name enclosed in double quotes (column 37)")
    ]


def test_a_line_that_is_not_an_object(tmp_path: Any) -> None:
    assert _problems(tmp_path, [request_line("a"), '"just a string"']) == [
        (2, "expected a JSON object, got a string")
    ]


def test_a_blank_line(tmp_path: Any) -> None:
    assert _problems(tmp_path, [request_line("a"), "   ", request_line("b")]) == [(2, "blank line")]


def test_custom_id_missing(tmp_path: Any) -> None:
    line = request_line("a")
    del line["custom_id"]
    assert _problems(tmp_path, [line]) == [(1, "missing custom_id")]


def test_custom_id_not_a_string(tmp_path: Any) -> None:
    assert _problems(tmp_path, [request_line(7)]) == [
        (1, "custom_id must be a string, got a number")
    ]


def test_custom_id_repeated_names_both_lines(tmp_path: Any) -> None:
    lines = [request_line("a"), request_line("b"), request_line("a")]
    assert _problems(tmp_path, lines) == [(3, 'custom_id "a" repeats line 1')]


def test_custom_ids_past_the_memory_held_are_checked_on_disk_the_same(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: a file of millions of requests is checked in flat memory. Past _IDS_HELD
    custom_ids, they go to bucket files and repeats are found there, named as before."""
    monkeypatch.setattr(ob, "_IDS_HELD", 5)
    lines = [request_line(f"id-{i}") for i in range(30)]
    lines += [request_line("id-2"), request_line("id-20"), request_line("a\\b\u00e9")]
    lines += [request_line("a\\b\u00e9")]
    folders = set(os.listdir(tempfile.gettempdir()))
    assert _problems(tmp_path, lines) == [
        (31, 'custom_id "id-2" repeats line 3'),
        (32, 'custom_id "id-20" repeats line 21'),
        (34, 'custom_id "a\\\\b\u00e9" repeats line 33'),
    ]
    assert set(os.listdir(tempfile.gettempdir())) == folders  # the buckets are gone
    assert ob.validate_input(write_lines(tmp_path / "ok.jsonl", lines[:30])).requests == 30


def test_method_not_post(tmp_path: Any) -> None:
    no_method = request_line("b")
    del no_method["method"]
    assert _problems(tmp_path, [request_line("a", method="GET"), no_method]) == [
        (1, 'method must be "POST", got "GET"'),
        (2, 'method must be "POST", got nothing'),
    ]


def test_url_missing(tmp_path: Any) -> None:
    line = request_line("a")
    del line["url"]
    assert _problems(tmp_path, [line]) == [(1, "missing url")]


def test_url_not_a_batch_endpoint(tmp_path: Any) -> None:
    assert _problems(tmp_path, [request_line("a", url="/v1/audio/speech")]) == [
        (1, 'url "/v1/audio/speech" is not a batch endpoint')
    ]


def test_url_differs_from_the_other_lines(tmp_path: Any) -> None:
    lines = [request_line("a"), request_line("b", url="/v1/embeddings")]
    assert _problems(tmp_path, lines) == [
        (2, 'url "/v1/embeddings" differs from "/v1/chat/completions" on line 1')
    ]


def test_url_differs_from_the_endpoint_given(tmp_path: Any) -> None:
    problems = _problems(tmp_path, [request_line("a")], endpoint=ob.BatchEndpoint.RESPONSES)
    assert problems == [
        (1, 'url "/v1/chat/completions" differs from "/v1/responses" given as endpoint')
    ]


def test_an_endpoint_given_explicitly_may_be_newer_than_this_module(tmp_path: Any) -> None:
    path = write_lines(tmp_path / "in.jsonl", [request_line("a", url="/v1/new/thing")])
    assert ob.validate_input(path, endpoint="/v1/new/thing").endpoint == "/v1/new/thing"


def test_body_missing_or_not_an_object(tmp_path: Any) -> None:
    no_body = request_line("a")
    del no_body["body"]
    assert _problems(tmp_path, [no_body, request_line("b", body=[1])]) == [
        (1, "missing body"),
        (2, "body must be a JSON object, got an array"),
    ]


def test_model_missing(tmp_path: Any) -> None:
    assert _problems(tmp_path, [request_line("a", body={"messages": []})]) == [
        (1, "body has no model")
    ]


def test_more_than_one_model(tmp_path: Any) -> None:
    other = request_line("b", body={"model": "gpt-4o", "messages": []})
    assert _problems(tmp_path, [request_line("a"), other]) == [
        (2, 'model "gpt-4o" differs from "gpt-4o-mini" on line 1; a batch runs one model')
    ]


def test_stream_true(tmp_path: Any) -> None:
    line = request_line("a", body={"model": "m", "messages": [], "stream": True})
    assert _problems(tmp_path, [line]) == [
        (1, 'body sets "stream": true; batch requests cannot stream')
    ]


def test_more_than_50000_requests(tmp_path: Any) -> None:
    path = tmp_path / "big.jsonl"
    ob.write_jsonl(path, chat_requests(50_001))
    with raises(ob.InputFileError) as info:
        ob.validate_input(path)
    assert info.value.problems == [
        (
            50001,
            "more than 50,000 requests; a batch takes at most 50,000 (split_jsonl splits a file)",
        )
    ]
    assert ob.validate_input(path, max_requests=60_000).requests == 50_001


def test_more_bytes_than_the_limit(tmp_path: Any) -> None:
    path = write_lines(tmp_path / "in.jsonl", [request_line("a"), request_line("b")])
    size = os.path.getsize(path)
    with raises(ob.InputFileError) as info:
        ob.validate_input(path, max_bytes=size - 1)
    message = f"the file is {size:,} bytes; a batch takes at most {size - 1:,}"
    assert info.value.problems == [(None, message + " (split_jsonl splits a file)")]


def test_more_embedding_inputs_than_the_limit(tmp_path: Any) -> None:
    rows = [
        BatchRequest.embedding("a", "e-3", ["x", "y", "z"]),
        BatchRequest.embedding("b", "e-3", "one text"),
        BatchRequest.embedding("c", "e-3", [1, 2, 3]),  # one input given as tokens
    ]
    path = tmp_path / "in.jsonl"
    ob.write_jsonl(path, rows)
    assert ob.validate_input(path).embedding_inputs == 5
    with raises(ob.InputFileError) as info:
        ob.validate_input(path, max_embedding_inputs=4)
    assert info.value.problems == [
        (None, "5 embedding inputs; a batch takes at most 4 (split_jsonl splits a file)")
    ]


def test_every_problem_is_listed_up_to_a_cap(tmp_path: Any) -> None:
    lines = [request_line("a", method="GET"), "[]", request_line("a"), "{", "", "{}"]
    path = write_lines(tmp_path / "in.jsonl", lines)
    with raises(ob.InputFileError) as info:
        ob.validate_input(path, max_problems=3)
    assert str(info.value) == (
        f"{path}: 9 problems\n"
        f'{path}: line 1: method must be "POST", got "GET"\n'
        f"{path}: line 2: expected a JSON object, got an array\n"
        f'{path}: line 3: custom_id "a" repeats line 1\n'
        f"{path}: ... and 6 more problems"
    )


def test_fuzzed_files_raise_nothing_but_input_file_error(tmp_path: Any) -> None:
    rng = random.Random(20261123)
    good = b"".join(r.to_json().encode() + b"\n" for r in chat_requests(20, fail=(3,)))
    path = tmp_path / "fuzz.jsonl"
    outcomes = {"valid": 0, "invalid": 0}
    for _ in range(400):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            spot = rng.randrange(len(data))
            action = rng.choice(["flip", "insert", "delete", "cut"])
            if action == "flip":
                data[spot] = rng.randrange(256)
            elif action == "insert":
                data[spot:spot] = bytes(rng.choice(b'{}[]",:\n\r \x00\xff\\') for _ in range(3))
            elif action == "delete":
                del data[spot : spot + rng.randint(1, 20)]
            else:
                data = data[:spot]
        path.write_bytes(bytes(data))
        for check in (lambda: list(ob.read_jsonl(path)), lambda: ob.validate_input(path)):
            try:
                check()
                outcomes["valid"] += 1
            except ob.InputFileError as exc:
                assert str(exc).startswith(str(path))
                outcomes["invalid"] += 1
    assert outcomes["invalid"] > 300


def test_split_by_requests_keeps_every_line_in_order(tmp_path: Any) -> None:
    path = tmp_path / "all.jsonl"
    ob.write_jsonl(path, chat_requests(25))
    shards = ob.split_jsonl(path, tmp_path / "parts", max_requests=10)
    assert [os.path.basename(p) for p in shards] == [
        "all.001.jsonl",
        "all.002.jsonl",
        "all.003.jsonl",
    ]
    assert b"".join(_read_bytes(p) for p in shards) == path.read_bytes()
    assert [ob.validate_input(p, max_requests=10).requests for p in shards] == [10, 10, 5]


def test_split_by_bytes_and_by_embedding_inputs(tmp_path: Any) -> None:
    path = tmp_path / "emb.jsonl"
    ob.write_jsonl(
        path, [BatchRequest.embedding(f"e{i}", "e-3", ["a", "b", "c"]) for i in range(7)]
    )
    by_inputs = ob.split_jsonl(path, tmp_path / "a", max_embedding_inputs=7)
    assert [ob.validate_input(p).embedding_inputs for p in by_inputs] == [6, 6, 6, 3]
    line = len(path.read_bytes().splitlines(keepends=True)[0])
    by_bytes = ob.split_jsonl(path, tmp_path / "b", max_bytes=3 * line + 1)
    assert [ob.validate_input(p).requests for p in by_bytes] == [3, 3, 1]


def test_split_refuses_a_bad_file_and_a_line_too_big_for_any_shard(tmp_path: Any) -> None:
    bad = write_lines(tmp_path / "bad.jsonl", [request_line("a"), request_line("a")])
    with raises(ob.InputFileError, match="repeats line 1"):
        ob.split_jsonl(bad, tmp_path / "out")
    path = tmp_path / "in.jsonl"
    ob.write_jsonl(path, chat_requests(5))
    with raises(ob.InputFileError, match="line 1: this line alone has too many bytes"):
        ob.split_jsonl(path, tmp_path / "out", max_bytes=20)
    assert os.listdir(tmp_path / "out") == []


def test_split_adds_the_missing_final_newline_and_drops_the_bom(tmp_path: Any) -> None:
    path = tmp_path / "in.jsonl"
    lines = [json.dumps(request_line(c)) for c in "abc"]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())
    shards = ob.split_jsonl(path, tmp_path, max_requests=2)
    expected = [lines[0] + "\n" + lines[1] + "\n", lines[2] + "\n"]
    assert [_read_bytes(p).decode() for p in shards] == expected


def test_results_parse_the_forms_servers_write(tmp_path: Any) -> None:
    lines = [
        {
            "id": "r1",
            "custom_id": "a",
            "response": {"status_code": 200, "request_id": "q", "body": {"x": 1}},
            "error": None,
        },
        {"custom_id": "b", "response": {"status_code": 200, "body": '{"y": 2}'}},
        {"custom_id": "c", "response": {"status_code": 200, "body": "plain text"}},
        {"custom_id": "d", "error": {"type": "server_error", "message": "boom"}},
        {"custom_id": "e", "response": None, "error": {"code": "batch_expired", "message": "late"}},
        {
            "custom_id": "f",
            "response": {"status_code": 429, "body": {"error": {"message": "slow down"}}},
        },
        {"custom_id": "g", "response": {"status_code": 500}, "error": "just a string"},
    ]
    results = list(ob.iter_results(write_lines(tmp_path / "out.jsonl", lines)))
    assert [r.ok for r in results] == [True, True, True, False, False, False, False]
    assert results[0] == ob.BatchResult("a", "r1", 200, "q", {"x": 1}, None)
    assert (results[1].body, results[2].body) == ({"y": 2}, "plain text")
    assert results[3].error == ob.BatchResultError("server_error", "boom")
    assert [r.error_message for r in results[3:]] == ["boom", "late", "slow down", "just a string"]
    assert results[0].error_message is None
    assert [r.to_dict() for r in results] == lines


def test_results_come_from_paths_streams_and_lines(
    tmp_path: Any, client: Client, api: FakeAPI
) -> None:
    line = {"custom_id": "a", "response": {"status_code": 200, "body": {}}, "error": None}
    file_id = api.add_file((json.dumps(line) + "\n").encode(), filename="o.jsonl")["id"]
    from_stream = list(ob.iter_results(client.files.content(file_id)))
    from_lines = list(ob.iter_results([json.dumps(line).encode(), "", line, from_stream[0]]))
    assert [r.custom_id for r in from_stream + from_lines] == ["a"] * 4
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert list(ob.iter_results(empty)) == []
    with raises(ob.InputFileError, match=r"^<stream>: line 2: not valid JSON"):
        list(ob.iter_results(iter(['{"custom_id": "a"}', "{oops"])))


def test_a_result_built_by_hand_gives_the_line_format() -> None:
    made = ob.BatchResult("a", status_code=400, body={"error": {"message": "bad"}})
    assert made.to_dict() == {
        "id": None,
        "custom_id": "a",
        "response": {"status_code": 400, "request_id": None, "body": {"error": {"message": "bad"}}},
        "error": None,
    }
    assert ob.BatchResult("b").error_message == "no response"
    assert ob.BatchResult("c", error=ob.BatchResultError(code="x")).error_message == "x"


def _result(custom_id: str, ok: bool = True) -> dict[str, Any]:
    status = 200 if ok else 500
    return {"custom_id": custom_id, "response": {"status_code": status, "body": {"for": custom_id}}}


def test_join_pairs_results_with_requests_in_input_order(tmp_path: Any) -> None:
    requests_path = tmp_path / "in.jsonl"
    ob.write_jsonl(requests_path, chat_requests(4))
    results = [
        _result("q3"),
        _result("q0", ok=False),
        _result("q0"),
        _result("q1", ok=False),
        _result("stray"),
    ]
    pairs = list(ob.join_results(requests_path, results))
    assert [
        (req.custom_id if req else None, res.custom_id if res else None) for req, res in pairs
    ] == [
        ("q0", "q0"),
        ("q1", "q1"),
        ("q2", None),
        ("q3", "q3"),
        (None, "stray"),
    ]
    assert pairs[0][1] is not None and pairs[0][1].ok  # the success wins over the failure
    assert pairs[0][0] == chat_requests(1)[0]


def test_write_failed_requests_makes_a_retry_file(tmp_path: Any) -> None:
    requests_path = tmp_path / "in.jsonl"
    ob.write_jsonl(requests_path, chat_requests(4))
    retry = tmp_path / "retry.jsonl"
    results = [_result("q0"), _result("q1", ok=False), _result("q3")]
    assert ob.write_failed_requests(requests_path, results, retry) == 2
    assert [line["custom_id"] for line in ob.read_jsonl(retry)] == ["q1", "q2"]
    assert ob.validate_input(retry).requests == 2
    everything = [_result(f"q{i}") for i in range(4)]
    assert ob.write_failed_requests(requests_path, everything, tmp_path / "none.jsonl") == 0
    assert not (tmp_path / "none.jsonl").exists()


def test_read_jsonl_takes_binary_file_objects_with_a_bom() -> None:
    import io

    stream = io.BytesIO(b'\xef\xbb\xbf{"a": 1}\n{"b": 2}')
    assert list(ob.read_jsonl(stream)) == [{"a": 1}, {"b": 2}]


def test_an_empty_url_is_not_a_batch_endpoint(tmp_path: Any) -> None:
    assert _problems(tmp_path, [request_line("a", url="")]) == [
        (1, 'url "" is not a batch endpoint')
    ]


def test_split_refuses_a_folder_with_shards_of_an_earlier_split(tmp_path: Any) -> None:
    path = tmp_path / "all.jsonl"
    ob.write_jsonl(path, chat_requests(5))
    ob.split_jsonl(path, tmp_path / "parts", max_requests=2)
    with raises(FileExistsError) as info:
        ob.split_jsonl(path, tmp_path / "parts", max_requests=4)
    assert str(info.value) == (
        f"{tmp_path / 'parts'} already holds shards of an earlier split "
        "(all.001.jsonl, all.002.jsonl, all.003.jsonl); remove them or split into another folder"
    )
    assert sorted(os.listdir(tmp_path / "parts")) == [
        "all.001.jsonl",
        "all.002.jsonl",
        "all.003.jsonl",
    ]


def test_a_40_mib_line_reads_whole_from_a_stream(client: Client, api: FakeAPI) -> None:
    # bench/bench.py times this against a json.loads floor; a test only checks what it reads.
    line = b'{"custom_id":"e","response":{"body":"' + b"x" * (40 * 1024 * 1024) + b'"}}\r\n'
    file_id = api.add_file(line + b'{"custom_id":"f"}')["id"]
    lines = list(client.files.content(file_id).iter_lines())
    assert [len(text) for text in lines] == [len(line) - 2, 17] and lines[1][-2:] == '"}'
    results = list(ob.iter_results(client.files.content(file_id)))
    assert [(r.custom_id, len(r.body or "")) for r in results] == [
        ("e", 40 * 1024 * 1024),
        ("f", 0),
    ]


def test_iter_results_refuses_them_in_lines_and_in_bodies_sent_as_json_text(
    tmp_path: Any,
) -> None:
    scored = {"custom_id": "a", "response": {"status_code": 200, "body": '{"score": 0.5}'}}
    text = {"custom_id": "b", "response": {"status_code": 200, "body": "NaN is not a number"}}
    nan = {"custom_id": "c", "response": {"status_code": 200, "body": '{"score": NaN}'}}
    infinite = '{"custom_id": "d", "response": {"body": {"score": -Infinity}}}'
    path = write_lines(tmp_path / "out.jsonl", [scored, text, infinite])
    results = ob.iter_results(path)
    assert [next(results).body, next(results).body] == [{"score": 0.5}, "NaN is not a number"]
    with raises(ob.InputFileError) as info:
        next(results)
    assert str(info.value) == (
        f"{path}: line 3: not valid JSON: -Infinity is not a JSON number (column 51)"
    )
    with raises(ob.InputFileError) as info:
        list(ob.iter_results([scored, "", nan]))
    assert str(info.value) == (
        "<stream>: line 3: the response body is not valid JSON: NaN is not a JSON number "
        "(column 11)"
    )


# A validator that teaches (issue 9).


def test_identical_problems_collapse_into_one_line(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    lines = [request_line(f"r{i}") for i in range(200)] + [request_line("x", method="GET")]
    lines += [request_line(f"s{i}", method="GET") for i in range(3)]
    path = write_lines(tmp_path / "in.jsonl", lines)
    ran = cli(client, "validate", path, "--endpoint", "embeddings")
    expected = (
        f"error: {path}: 208 problems\n"
        '  lines 1–200: url "/v1/chat/completions" differs from "/v1/embeddings" given as '
        "endpoint\n"
        '  lines 201–204: method must be "POST", got "GET"\n'
    )
    assert (ran.code, ran.out, ran.err) == (1, "", expected.replace("lines 1–200", "lines 1–204"))
    assert cli(client, "validate", path, "--endpoint", "embeddings", tty=True).err == ran.err
    with raises(ob.InputFileError) as info:
        ob.validate_input(path, endpoint="/v1/embeddings")
    assert info.value.problems[1] == (201, 'method must be "POST", got "GET"')
    assert info.value.lines[1] == [201, 202, 203, 204]
    assert ob._line_ranges([2, 5, 9, 10, 11, 12]) == "lines 2, 5, 9–12"


@pytest.mark.parametrize(
    ("content", "shape"),
    [
        ('[{"custom_id": "a"},\n {"custom_id": "b"}]\n', "a JSON array"),
        ('{\n  "custom_id": "a",\n  "method": "POST"\n}\n', "pretty-printed JSON"),
        ("custom_id,prompt\nq1,What is 2+2?\n", "a CSV or TSV table"),
        ("custom_id\tprompt\nq1\tWhat is 2+2?\n", "a CSV or TSV table"),
    ],
)
def test_a_file_that_is_not_jsonl_is_named_once(
    client: Client, tmp_path: Any, content: str, shape: str
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(content)
    ran = cli(client, "validate", str(path))
    assert (ran.code, ran.err) == (
        1,
        f"error: {path}: 1 problem\n  this looks like {shape}, not JSONL; JSONL means one JSON "
        "object per line (see BatchRequest.chat and write_jsonl)\n",
    )


def test_uncertain_rules_warn_and_strict_makes_them_errors(
    client: Client, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    moderation = request_line("m", url="/v1/moderations", body={"input": "hello"})
    path = write_lines(
        tmp_path / "in.jsonl",
        [moderation, request_line("n", url="/v1/moderations", body={"input": "x"}), "", ""],
    )
    summary = ob.validate_input(path)
    assert summary.warnings == [
        "lines 1–2: body has no model; /v1/moderations may use its default",
        "lines 3–4: blank, at the end of the file",
    ]
    ran = cli(client, "validate", path)
    assert ran.code == 0 and ran.err.splitlines()[-1] == (
        f"warning: {path}: lines 3–4: blank, at the end of the file"
    )
    strict = cli(client, "validate", path, "--strict")
    assert strict.code == 1 and strict.err.splitlines()[1:] == [
        "  lines 1–2: body has no model; /v1/moderations may use its default",
        "  lines 3–4: blank, at the end of the file",
    ]
    monkeypatch.setattr(ob, "MAX_INPUT_BYTES", 1000)
    monkeypatch.setattr(ob, "_DECIMAL_MAX_BYTES", 300)
    chat = write_lines(tmp_path / "chat.jsonl", [request_line(f"c{i}") for i in range(3)])
    assert ob.validate_input(chat, max_bytes=1000).warnings == [
        f"the file is {os.path.getsize(chat):,} bytes: over 200 MB, if the limit is counted "
        "in decimal, and under 200 MiB; split_jsonl makes it safe"
    ]
    with raises(ob.InputFileError, match="over 200 MB, if the limit is counted in decimal"):
        ob.validate_input(chat, max_bytes=1000, strict=True)


def test_a_utf16_file_and_a_csv_given_as_input_are_named(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(json.dumps(request_line("a")).encode("utf-16") + b"\n\x00")
    with raises(ob.InputFileError) as info:
        ob.validate_input(path)
    assert str(info.value) == (
        f"{path}: this file is UTF-16 or UTF-32 text; a batch file must be UTF-8 (save it so)"
    )
    batch_id = _finished(client, api, tmp_path)
    table = tmp_path / "prompts.csv"
    table.write_text("custom_id,prompt\nq1,What is 2+2?\n")
    ran = cli(client, "results", batch_id, "--input", str(table))
    assert ran.code == 1 and "this looks like a CSV or TSV table, not JSONL" in ran.err


def test_text_has_no_empty_piece_and_lines_split_at_a_bare_cr(client: Client, api: FakeAPI) -> None:
    """Issue 17 review, items 4 and 5: as httpx, `iter_text()` gives no empty piece (none for
    an empty body), and `iter_lines()` splits at "\\n", "\\r\\n" and a bare "\\r", on a
    file's content and on a streamed response alike."""
    expected = [
        ([], []),
        (["a\nb"], ["a", "b"]),
        (["a\rb\r"], ["a", "b"]),
        (["a\r\r\nb\n"], ["a", "", "b"]),
        (["\n"], [""]),
        (["x\r\n\ry"], ["x", "", "y"]),
        (["\u00e9\rz"], ["\u00e9", "z"]),
    ]
    for body, (text, lines) in zip(_ENDINGS, expected):
        file_id = str(api.add_file(body)["id"])
        assert _text_and_lines(client, file_id) == [[text, lines], [text, lines]], body


# ---------------------------------------------------------------- Jobs


def _batches_by_key(api: FakeAPI) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for batch in api.batches.values():
        key = (batch["metadata"] or {}).get(KEY_FIELD)
        found.setdefault(key, []).append(batch["status"])
    return found


def test_run_splits_retries_and_writes_one_line_per_request_in_order(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    api.flaky_rule = lambda line: line["custom_id"] == "q4"  # a 500 once, then fine
    source = _job_input(tmp_path, 10, fail=(7,))  # fail-7 answers 400: final, not sent again
    events: list[dict[str, Any]] = []
    out = tmp_path / "out.jsonl"
    report = client.run(source, out, batch_size=3, max_active=2, on_event=events.append)
    assert _output_ids(out) == [r.custom_id for r in chat_requests(10, fail=(7,))]
    assert api.ran == {
        r.custom_id: 2 if r.custom_id == "q4" else 1 for r in chat_requests(10, fail=(7,))
    }
    assert (report.requests, report.succeeded, report.failed) == (10, 9, 1)
    assert (report.failures, report.batches, report.rounds) == ({"HTTP 400": 1}, 5, 2)
    assert report.usage["input_tokens"] > 0 and not report.ok
    assert api.files == {}  # the job's uploads and outputs were deleted once out.jsonl was safe
    assert all(len(statuses) == 1 for statuses in _batches_by_key(api).values())
    assert [e["event"] for e in events].count("round") == 2
    again = client.run(source, out, batch_size=3)  # done already: nothing is sent
    assert again.requests == 10 and len(api.batches) == 5


def test_run_stays_under_the_enqueued_token_limit(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    api.enqueued_token_limit = 10  # two requests' prompts ("question N": 2 tokens each) fit
    source = _job_input(tmp_path, 12)
    events: list[dict[str, Any]] = []
    report = client.run(
        source, tmp_path / "out.jsonl", batch_size=4, max_active=3, on_event=events.append
    )
    assert report.ok and report.succeeded == 12
    assert all(count == 1 for count in api.ran.values()) and len(api.ran) == 12
    tripped = [e for e in events if e["event"] == "over_token_limit"]
    assert tripped and tripped[-1]["budget"] is not None  # it lowered its own budget


def test_run_resumes_after_a_crash_without_making_a_batch_twice(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    source = _job_input(tmp_path, 9)
    out = tmp_path / "out.jsonl"

    def crash_after_second_create(event: dict[str, Any]) -> None:
        if event["event"] == "created" and event["shard"] == "r1-0002.jsonl":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.run(source, out, batch_size=3, on_event=crash_after_second_create)
    assert not out.exists() and len(api.batches) == 2
    report = client.run(source, out, batch_size=3)
    assert report.ok and _output_ids(out) == [f"q{i}" for i in range(9)]
    assert len(api.batches) == 3 and all(count == 1 for count in api.ran.values())


def test_run_refuses_bad_and_changed_input_at_no_cost(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    bad = write_lines(tmp_path / "bad.jsonl", [request_line("a"), "{"])
    with raises(ob.InputFileError):
        client.run(bad, tmp_path / "out.jsonl")
    assert api.requests == [] and not (tmp_path / "out.jsonl.job").exists()
    source = _job_input(tmp_path, 3)
    out = tmp_path / "out.jsonl"

    def stop(event: dict[str, Any]) -> None:
        if event["event"] == "created":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.run(source, out, on_event=stop)
    ob.write_jsonl(source, chat_requests(4))
    with raises(ob.OpenAIError) as info:
        client.run(source, out)
    assert str(info.value) == (
        f"{source} has changed since the job in {out}.job began; finish that job with the "
        f"input it began with, or remove {out}.job to start again"
    )
    ob.write_jsonl(source, chat_requests(3))
    assert client.run(source, out).ok  # the input it began with: the job ends
    ob.write_jsonl(source, chat_requests(4))
    with raises(ob.OpenAIError) as info:
        client.run(source, out)
    assert str(info.value) == (
        f"{source} has changed since the job in {out}.job began; RESULTS is written for the "
        f"input it had then; write the new input's results elsewhere, or remove {out}.job to "
        "start again"
    )
    for wrong in ({"batch_size": 50_001}, {"rounds": 0}, {"max_active": 0}):
        with raises(ValueError):
            client.run(source, tmp_path / "other.jsonl", **wrong)
    with raises(FileNotFoundError):
        client.run(source, tmp_path / "no" / "such" / "out.jsonl")


def _fake_usage(api: FakeAPI) -> tuple[int, int]:
    """Prompt and completion tokens, as the fake's batches counted them."""
    usages = [batch["usage"] or {} for batch in api.batches.values()]
    return sum(u.get("input_tokens", 0) for u in usages), sum(
        u.get("output_tokens", 0) for u in usages
    )


def test_cli_run_prints_events_and_exits_1_on_permanent_failures(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    source = _job_input(tmp_path, 4, fail=(2,))
    out = tmp_path / "out.jsonl"
    started = api.clock.now
    ran = cli(client, "run", source, "-o", str(out), "--batch-size", "2")
    tokens_in, tokens_out = _fake_usage(api)
    took = ob._duration(api.clock.now - started)
    assert (
        tokens_in > 0
        and ran.code == 1
        and ran.err.splitlines()[-3:]
        == [
            f"{out}: 4 requests, 3 succeeded, 1 failed (1 HTTP 400); 2 batches, 1 round, "
            f"{tokens_in} tokens in, {tokens_out} out; {took}",
            "cost: under $0.01 at OpenAI batch prices of 2026-12 (LiteLLM 1.110.2); saved under "
            "$0.01 against OpenAI standard prices of 2026-12 (LiteLLM 1.110.2)",
            f"next: openai-batch results {out} --failed shows them and why",
        ]
    )
    # In a pipe, as wait: machine lines on stdout, a line per event; where the job stands
    # only when it has moved (or once a minute), not once a poll.
    assert "\tcreated\tshard=r1-0001.jsonl\tbatch_id=" in ran.out and "\t" not in ran.err
    stands = [line.split("\t")[2:5] for line in ran.out.splitlines() if "\tprogress\t" in line]
    assert len(stands) == len({tuple(facts) for facts in stands})
    failed = cli(client, "results", str(out), "--failed")  # the hint's command, as printed
    assert failed.code == 0 and failed.out.split("\t")[:3] == ["fail-2", "failed", "400"]
    ran = cli(client, "run", source, "-o", str(out), "--json")
    events = [json.loads(line) for line in ran.out.splitlines()]
    assert ran.code == 1 and [event["event"] for event in events] == [
        "already_written",  # finished before: nothing is sent again
        "report",
    ]
    assert (events[-1]["requests"], events[-1]["failed"], events[-1]["failures"]) == (
        4,
        1,
        {"HTTP 400": 1},
    )


def test_run_events_say_where_the_job_stands(client: Client, api: FakeAPI, tmp_path: Any) -> None:
    source = _job_input(tmp_path, 7, fail=(5,))
    events: list[dict[str, Any]] = []
    report = client.run(source, tmp_path / "out.jsonl", batch_size=2, on_event=events.append)
    kinds = [event["event"] for event in events]
    assert {"round", "uploaded", "created", "progress", "ended", "written"} <= set(kinds)
    assert kinds[0] == "estimate" and events[0]["progress"]["work"]["done"] == 0
    for event in events[1:]:
        requests, work = event["progress"]["requests"], event["progress"]["work"]
        assert sum(requests.values()) == 7 and work["unit"] == "shard"
        assert work["done"] + work["active"] + work["queued"] == 4
    elapsed = [event["progress"]["elapsed"] for event in events]
    assert elapsed == sorted(elapsed) and elapsed[-1] == report.seconds > 0
    last = events[-1]["progress"]
    assert last["requests"] == {"succeeded": 6, "failed": 1, "pending": 0}
    assert last["work"] == {"unit": "shard", "done": 4, "active": 0, "queued": 0}
    assert last["left"] is None and last["per_second"] > 0
    assert last["usage"] == report.usage and report.usage["input_tokens"] == _fake_usage(api)[0]


_PRICED = {"gpt-4o-mini": (10_000, 20_000)}  # $0.01 a token in, $0.02 out: cents to check


def test_run_reports_what_a_batch_job_cost_from_its_batches_usage(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19, item 3: the spend, from each ended batch's usage, in events and report."""
    source = _job_input(tmp_path, 4, fail=(2,))
    events: list[dict[str, Any]] = []
    report = client.run(
        source, tmp_path / "out.jsonl", batch_size=2, on_event=events.append, prices=_PRICED
    )
    # 3 answers of 2 tokens in ("question 1") and 3 out ("echo: question 1")
    assert _fake_usage(api) == (6, 9) and report.usage["input_tokens"] == 6
    assert (report.model, report.cost, report.prices) == ("gpt-4o-mini", 0.24, "your prices")
    assert (report.standard_cost, report.standard_prices, report.cost_note) == (None, None, None)
    assert events[0]["event"] == "estimate" and {
        name: events[0][name] for name in ("model", "requests", "input_tokens", "prices")
    } == {"model": "gpt-4o-mini", "requests": 4, "input_tokens": 40, "prices": "your prices"}
    assert events[0]["input_cost"] == 0.4 and events[0]["output_cost"] is None
    spent = [event["progress"]["spend"]["cost"] for event in events]
    assert spent == sorted(spent) and spent[0] == 0 and spent[-1] == 0.24
    assert events[-1]["progress"]["spend"]["prices"] == "your prices"
    assert json.loads(json.dumps(dataclasses.asdict(report)))["cost"] == 0.24


def test_run_prices_line_usage_where_a_batch_has_none(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19, item 3: a server that fills no batch usage (llama-stack): each line's."""
    api.batch_usage = False
    source = _job_input(tmp_path, 4, fail=(2,))
    report = client.run(source, tmp_path / "out.jsonl", batch_size=2, prices=_PRICED)
    assert all(batch["usage"] is None for batch in api.batches.values())
    assert (report.usage["input_tokens"], report.usage["output_tokens"]) == (6, 9)
    assert report.cost == 0.24


def test_run_resumed_counts_each_batchs_tokens_once(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19, item 3: killed after a batch ended, then resumed: nothing counted twice."""
    source = _job_input(tmp_path, 9)
    out = tmp_path / "out.jsonl"

    def crash_after_first_end(event: dict[str, Any]) -> None:
        if event["event"] == "ended":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.run(source, out, batch_size=3, on_event=crash_after_first_end, prices=_PRICED)
    events: list[dict[str, Any]] = []
    report = client.run(source, out, batch_size=3, on_event=events.append, prices=_PRICED)
    assert "estimate" not in [event["event"] for event in events]  # said when it began
    assert _fake_usage(api) == (18, 27) and all(count == 1 for count in api.ran.values())
    assert (report.usage["input_tokens"], report.usage["output_tokens"]) == (18, 27)
    assert report.cost == 0.72  # 18 x $0.01 + 27 x $0.02


def test_cli_run_says_what_a_job_cost_and_what_it_saved(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19, item 3: at the table's prices, the saving against standard prices; and a
    price given with --price, in the JSON events."""
    big = " ".join(["word"] * 99_999)  # 100,000 tokens in, 100,001 out, to the fake
    requests = [BatchRequest.chat(f"q{i}", "gpt-4.1", f"{big} {i}") for i in range(5)]
    source = str(tmp_path / "in.jsonl")
    ob.write_jsonl(source, requests)
    out = tmp_path / "out.jsonl"
    ran = cli(client, "run", source, "-o", str(out))
    assert ran.code == 0 and ran.err.splitlines()[-1] == (  # 500k x $1 + 500,005 x $4
        "cost: $2.50 at OpenAI batch prices of 2026-12 (LiteLLM 1.110.2); saved $2.50 against "
        "OpenAI standard prices of 2026-12 (LiteLLM 1.110.2)"
    )
    priced = cli(
        client, "run", _job_input(tmp_path, 4, fail=(2,)), "-o", str(tmp_path / "p.jsonl"),
        "--batch-size", "2", "--json", "--price", "gpt-4o-mini=10000,20000",
    )  # fmt: skip
    events = [json.loads(line) for line in priced.out.splitlines()]
    assert events[0]["event"] == "estimate" and events[0]["prices"] == "your --price"
    ended = [event["progress"]["spend"]["cost"] for event in events if event["event"] == "ended"]
    assert ended == [0.16, 0.24]  # after each batch: 2 answers, then 1 more
    assert {name: events[-1][name] for name in ("event", "cost", "prices", "cost_note")} == {
        "event": "report",
        "cost": 0.24,
        "prices": "your --price",
        "cost_note": None,
    }


def _capped_input(tmp_path: Any, count: int, name: str = "in.jsonl") -> str:
    """Chat requests of "question i" with max_tokens=10: at _PRICED, each is 21 tokens in at
    most ($0.21: 3 for the reply, 4 for the message, and a byte each of "user" and "question
    i") and 10 out ($0.20), so $0.41 at worst; the fake answers 2 in, 3 out ($0.08)."""
    path = str(tmp_path / name)
    requests = [
        BatchRequest.chat(f"q{i}", "gpt-4o-mini", f"question {i}", max_tokens=10)
        for i in range(count)
    ]
    ob.write_jsonl(path, requests)
    return path


def test_run_stops_at_its_cost_cap_between_shards_and_resumes_with_a_higher_one(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19, item 4: a shard starts only if the spend and the worst case of all that runs
    fit; a shard too big for what is left is cut; at the cap the job writes what it has, says
    what was not sent and what cap would send it, and a rerun with that cap sends only those."""
    source, out = _capped_input(tmp_path, 6), tmp_path / "out.jsonl"
    events: list[dict[str, Any]] = []
    with pytest.raises(ob.JobStoppedError) as stopped:
        client.run(source, out, batch_size=2, max_cost=0.5, prices=_PRICED, on_event=events.append)
    error = stopped.value
    assert error.reason == "max_cost" and error.report is not None
    done = sum(api.ran.values())
    # cut to single requests, each started once the one before had ended: $0.08 + $0.41 fits
    # $0.50, and $0.16 + $0.41 does not
    assert done == 2 and all(count == 1 for count in api.ran.values())
    assert error.report.cost == pytest.approx(0.08 * done)
    assert error.report.failures == {"max_cost": 6 - done} and error.report.succeeded == done
    assert error.needed == pytest.approx(0.08 * done + 0.41 * (6 - done))
    lines = _json_lines(out)
    assert [line["custom_id"] for line in lines] == [f"q{i}" for i in range(6)]
    unsent = [line for line in lines if line["response"] is None]
    assert len(unsent) == 6 - done and unsent[0]["error"] == {
        "code": "max_cost",
        "message": "no result: the job stopped at its cost cap of $0.50 before it had one",
    }
    assert str(error) == (
        "the job stopped at its cost cap of $0.50, with $0.16 spent at your prices: 4 requests "
        "with no result, whose worst case is $1.64 more. "
        f"{out} has what was done, and a line saying so for each of those; the job "
        "is kept, and run again with a higher cap it sends only those"
    )
    capped = next(e for e in events if e["event"] == "max_cost")
    assert (capped["max_cost"], capped["worst"], capped["prices"]) == (0.5, 0.41, "your prices")
    # the same cap again: nothing is sent, and it says so again
    with pytest.raises(ob.JobStoppedError):
        client.run(source, out, batch_size=2, max_cost=0.5, prices=_PRICED)
    assert sum(api.ran.values()) == done
    report = client.run(source, out, batch_size=2, max_cost=error.needed, prices=_PRICED)
    assert report.ok and report.requests == 6 and report.cost == pytest.approx(0.48)
    assert sorted(api.ran) == [f"q{i}" for i in range(6)]  # each request once, in all
    assert all(count == 1 for count in api.ran.values())
    assert _output_ids(out) == [f"q{i}" for i in range(6)]


def test_cli_run_at_its_cost_cap_says_what_was_spent_and_the_cap_that_sends_the_rest(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19, item 4: the fact, then the command with the cap that would send the rest."""
    source, out = _capped_input(tmp_path, 6), str(tmp_path / "out.jsonl")
    price = ["--price", "gpt-4o-mini=10000,20000", "--batch-size", "2"]
    ran = cli(client, "run", source, "-o", out, "--max-cost", "0.5", *price)
    assert ran.code == 1 and sum(api.ran.values()) == 2
    summary, *shown = ran.err.splitlines()[-5:]  # what it has, as at any end; then why
    assert summary.startswith(
        f"{out}: 6 requests, 2 succeeded, 4 failed (4 max_cost); 2 batches, 1 round, 4 tokens "
        "in, 6 out; "
    )
    assert shown == [
        "cost: $0.16 at your --price",
        f"next: openai-batch results {out} --failed shows them and why",
        "error: the job stopped at its cost cap of $0.50, with $0.16 spent at your --price: 4 "
        f"requests with no result, whose worst case is $1.64 more. {out} has what was done, "
        "and a line saying so for each of those; the job is kept, and run again with a "
        "higher cap it sends only those",
        "hint: to send the rest, run the same command again with --max-cost 1.80 (or what you "
        "will spend)",
    ]
    again = cli(client, "run", source, "-o", out, "--max-cost", "0.5", *price, "--json")
    last = json.loads(again.out.splitlines()[-1])
    assert (last["event"], last["reason"], last["needed"]) == ("stopped", "max_cost", 1.8)
    assert last["report"]["failures"] == {"max_cost": 4} and sum(api.ran.values()) == 2
    capped = [json.loads(line) for line in again.out.splitlines()]
    assert capped[-2]["event"] == "written" and capped[-3]["event"] == "max_cost"
    assert capped[-3]["progress"]["spend"]["max_cost"] == 0.5
    done = cli(client, "run", source, "-o", out, "--max-cost", "1.80", *price)
    assert done.code == 0 and sorted(api.ran.values()) == [1] * 6


def test_run_refuses_a_cost_cap_it_could_not_keep_before_sending_anything(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19, item 4: no price known for the model, or a request with no output limit."""
    out = tmp_path / "out.jsonl"
    unpriced = str(tmp_path / "mine.jsonl")
    ob.write_jsonl(unpriced, [BatchRequest.chat("a", "my-model", "hi", max_tokens=5)])
    with pytest.raises(ValueError, match=r"^max_cost needs the model's price, and no price is"):
        client.run(unpriced, out, max_cost=1.0)
    unbounded = _job_input(tmp_path, 3)  # no max_tokens
    with pytest.raises(ValueError) as refused:
        client.run(unbounded, out, max_cost=1.0, prices=_PRICED)
    assert str(refused.value) == (
        "max_cost needs a bound on every request's cost, and these have none: 3 with no "
        "output limit (max_tokens, max_completion_tokens or max_output_tokens). Nothing was sent"
    )
    # review: what costs more than its text says has no bound either
    picture = [{"type": "text", "text": "what is this?"}]
    picture.append({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})
    searched = {"tools": [{"type": "web_search_preview"}], "max_output_tokens": 50}
    seen, found = str(tmp_path / "seen.jsonl"), str(tmp_path / "found.jsonl")
    message = {"role": "user", "content": picture}
    ob.write_jsonl(seen, [BatchRequest.chat("a", "gpt-4o-mini", [message], max_tokens=5)])
    ob.write_jsonl(found, [BatchRequest.response("b", "gpt-4o-mini", "news?", **searched)])
    for path, why in (
        (seen, "1 with an image, audio or a file (billed beyond its bytes)"),
        (found, "1 with a tool OpenAI bills for (web or file search, code, images)"),
    ):
        with pytest.raises(ValueError) as refused:
            client.run(path, out, max_cost=1.0, prices=_PRICED)
        assert str(refused.value) == (
            f"max_cost needs a bound on every request's cost, and these have none: {why}. "
            "Nothing was sent"
        )
    with pytest.raises(ValueError, match="max_cost must be a number from 0 to"):
        client.run(unbounded, out, max_cost=-1.0, prices=_PRICED)
    assert not api.batches and not api.files and not os.path.exists(str(out) + ".job")
    ran = cli(client, "run", unpriced, "-o", str(out), "--max-cost", "2")
    assert ran.code == 2 and "max_cost needs the model's price" in ran.err
    assert not api.batches


def test_run_with_no_price_for_its_model_gives_tokens_only(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19, item 3: no price known: the fact in the library, the flag on the command line."""
    requests = [BatchRequest.chat(f"q{i}", "my-model", f"question {i}") for i in range(2)]
    source = str(tmp_path / "in.jsonl")
    ob.write_jsonl(source, requests)
    report = client.run(source, tmp_path / "out.jsonl")
    assert report.usage["input_tokens"] == 4 and report.cost is None
    assert (report.model, report.cost_note) == ("my-model", "no price known for my-model")
    ran = cli(client, "run", source, "-o", str(tmp_path / "again.jsonl"), tty=True)
    notes = ran.err.splitlines()
    assert ran.code == 0 and notes[0] == (
        "note: no price known for my-model: give --price my-model=IN,OUT[,CACHED]"
    )
    assert notes[1:4] == [
        "estimate: 2 requests, model my-model",
        "    input   ~20 tokens",
        "    output  unbounded (2/2 requests set no output limit)",
    ]
    assert notes[-1] == "cost: no price known for my-model: give --price my-model=IN,OUT[,CACHED]"
    assert ", 1 round, 4 tokens in, 6 out; " in notes[-2]


def test_cli_run_on_a_terminal_keeps_one_live_block(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    source = _job_input(tmp_path, 5, fail=(1,))
    ran = cli(
        client, "run", source, "-o", str(tmp_path / "out.jsonl"), "--batch-size", "2", tty=True
    )
    assert ran.code == 1 and ran.out.count("\x1b[2F") > 3  # redrawn in place, many times
    tokens_in, tokens_out = _fake_usage(api)
    block = _screen(ran.out)
    assert block[0] == "round 1 of 3: 3 shards done, 0 running, 0 queued"
    assert block[1].startswith("requests: 4 succeeded, 1 failed, 0 pending; ")
    assert block[1].endswith("/s")
    assert block[3] == "spent under $0.01 at OpenAI batch prices of 2026-12 (LiteLLM 1.110.2)"
    assert block[4:] == [""]  # the block, once: each redraw and note took the last one's place
    assert block[2].startswith(f"{tokens_in} tokens in, {tokens_out} out; ")
    assert block[2].endswith(" so far")
    assert ran.err.splitlines()[4] == "round 1: 3 shards"  # a note above the block


def test_run_says_why_a_request_got_no_result(client: Client, api: FakeAPI, tmp_path: Any) -> None:
    api.completion_window_seconds = 10  # every batch expires before any request is done
    source = _job_input(tmp_path, 3)
    out = tmp_path / "out.jsonl"
    report = client.run(source, out, batch_size=2, rounds=2)
    assert (report.failed, report.failures, report.rounds, report.batches) == (
        3,
        {"batch_expired": 3},
        2,
        4,
    )
    lines = _json_lines(out)
    assert [line["custom_id"] for line in lines] == ["q0", "q1", "q2"]
    assert all(line["response"] is None for line in lines)
    assert lines[0]["error"] == {
        "code": "batch_expired",
        "message": "no result: its batch expired twice; the job was out of rounds after 2 rounds",
    }
    assert [r.error.code for r in ob.iter_results(out) if r.error] == ["batch_expired"] * 3


def test_run_cancel_stops_the_job_and_keeps_what_it_did(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    source = _job_input(tmp_path, 9)
    out = tmp_path / "out.jsonl"
    ran = cli(client, "run", source, "-o", str(out), "--cancel")
    assert ran.code == 1 and ran.err == f"error: there is no job to cancel in {out}.job\n"

    def stop_after_second_create(event: dict[str, Any]) -> None:
        if event["event"] == "created" and event["shard"] == "r1-0002.jsonl":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.run(source, out, batch_size=3, max_active=2, on_event=stop_after_second_create)
    api.clock.advance(11)  # the first request of each running batch is done
    ran = cli(client, "run", source, "-o", str(out), "--batch-size", "3", "--cancel")
    assert ran.code == 1 and all(len(made) == 1 for made in _batches_by_key(api).values())
    assert sorted(b["status"] for b in api.batches.values()) == ["cancelled", "cancelled"]
    lines = {line["custom_id"]: line for line in _json_lines(out)}
    done = sorted(c for c, line in lines.items() if line["response"])
    assert done == ["q0", "q3"] and api.ran == {"q0": 1, "q3": 1}  # nothing new was sent
    assert lines["q1"]["error"] == {
        "code": "job_cancelled",
        "message": "no result: its batch was cancelled once; the job was cancelled",
    }
    assert lines["q8"]["error"] == {
        "code": "job_cancelled",
        "message": "no result: the job was cancelled",
    }
    assert "\tcancelling\tshard=r1-0001.jsonl\t" in ran.out and api.files == {}
    again = cli(client, "run", source, "-o", str(out), "--batch-size", "3")
    assert again.code == 1 and len(api.batches) == 2  # a cancelled job stays ended


def test_a_second_process_on_one_job_is_refused(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    source = _job_input(tmp_path, 2)
    out = tmp_path / "out.jsonl"
    os.makedirs(f"{out}.job")
    held = ob._lock(f"{out}.job/lock")  # as another process running the job would hold it
    try:
        with raises(ob.OpenAIError) as info:
            client.run(source, out)
        assert str(info.value) == (f"another process is running the job in {out}.job")
        assert api.requests == []
    finally:
        held.close()
    assert client.run(source, out).ok  # once it is let go, the job runs


# Where `run` is killed: inside a request the fake has carried out but not answered yet (so
# its outcome is lost with the process), and inside the final write of RESULTS. A point is
# (phase, method, path, how many such requests to let by first).
_KILL_POINTS = [
    *[("upload", "POST", r"/v1/files", n) for n in (0, 1, 0, 1)],
    *[("create", "POST", r"/v1/batches", n) for n in (0, 1, 0, 1)],
    *[("wait", "GET", r"/v1/batches/[^/]+", n) for n in (0, 2, 1, 3)],
    *[("download", "GET", r"/v1/files/[^/]+/content", n) for n in (0, 1, 0, 1)],
    *[("final write", "", "", 0)] * 3,
    *[("clean-up", "DELETE", r"/v1/files/[^/]+", n) for n in (0, 3)],
]


def _kill_inside(api: FakeAPI, process: Any, point: tuple[str, str, str, int], out: Any) -> bool:
    """SIGKILL `process` inside `point`; False if it ended before getting there."""
    phase, method, path, skip = point
    if phase == "final write":  # RESULTS' partial file, beside it, is there while it is written
        while process.poll() is None:
            if any(name.startswith(f".{out.name}.") for name in os.listdir(out.parent)):
                process.kill()
                return True
            time.sleep(0.0002)
        return False
    hit = threading.Event()
    held = Fault("stall" if phase == "download" else "slow", delay=3, then=hit.set)
    api.arm(method, path, *[Fault.passes()] * skip, held)
    while process.poll() is None and not hit.wait(0.01):
        pass
    api.disarm()
    if not hit.is_set():
        return False
    time.sleep(0.02)  # the reply is held back (a download: half of it sent)
    process.kill()
    return True


def test_run_killed_inside_every_step_finishes_with_nothing_twice(tmp_path: Any) -> None:
    api = FakeAPI(clock=ScaledClock(speed=400))  # a batch of 25 takes about 0.1 s
    source = _job_input(tmp_path, 1200)
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "openai_batch", "run", source, "-o", str(out)]
    command += ["--batch-size", "25", "--max-active", "2", "--interval", "0.1", "--json"]
    moments, points = random.Random(8), list(_KILL_POINTS)
    killed: list[str] = []
    with api.serve():
        env = _module_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
        while True:
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
            try:
                if points:
                    if _kill_inside(api, process, points[0], out):
                        killed.append(points[0][0])
                    points.pop(0)
                elif killed.count("anywhere") < 3:  # and at a few moments at random
                    process.wait(timeout=moments.uniform(0.05, 0.6))
            except subprocess.TimeoutExpired:
                process.kill()
                killed.append("anywhere")
            process.wait(timeout=120)  # SIGKILL: no handler, no clean-up, wherever it was
            assert process.returncode in (0, -9), process.returncode
            if process.returncode == 0:
                break
    phases = [phase for phase, *_ in _KILL_POINTS]
    assert [phase for phase in killed if phase != "anywhere"] == phases, killed
    assert len(killed) >= 20
    assert _output_ids(out) == [f"q{i}" for i in range(1200)]
    assert api.ran == {f"q{i}": 1 for i in range(1200)}  # no request ran twice
    assert all(len(statuses) == 1 for statuses in _batches_by_key(api).values())
    assert len(api.batches) == 48  # one batch a shard, whatever the kills
    # Left on the server: only uploads whose record a kill cut short.
    assert all(file["purpose"] == "batch" for file in api.files.values())
    assert 1 <= len(api.files) <= killed.count("upload") + killed.count("anywhere")


def test_a_shard_over_the_token_limit_on_its_own_is_split_not_sent_forever(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    api.enqueued_token_limit = 4  # two requests' prompts at most, whatever the budget says
    source = _job_input(tmp_path, 8)
    events: list[dict[str, Any]] = []
    report = client.run(source, tmp_path / "out.jsonl", batch_size=8, on_event=events.append)
    assert report.ok and _output_ids(tmp_path / "out.jsonl") == [f"q{i}" for i in range(8)]
    assert all(count == 1 for count in api.ran.values()) and len(api.ran) == 8
    names = [e["shard"] for e in events if e["event"] == "created"]
    assert "r1-0001a.jsonl" in names and "r1-0001aa.jsonl" in names  # halved, then again
    failed = [b for b in api.batches.values() if b["status"] == "failed"]
    assert 0 < len(failed) < 8  # a trip or two per halving, not one a minute forever


def test_a_job_is_refused_its_own_input_as_results_and_follows_a_moved_input(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    source = _job_input(tmp_path, 3)
    with raises(ValueError) as info:
        client.run(source, source)
    assert str(info.value) == (  # issue 18: a fact for Python; the flag is the CLI's to give
        f"the output is the input file ({source}): the results would overwrite the requests"
    )
    assert api.requests == [] and len(_json_lines(source)) == 3
    ran = cli(client, "run", source, "-o", source)
    assert (ran.code, ran.err.splitlines()[-1]) == (2, "hint: give RESULTS another path (-o)")

    def stop(event: dict[str, Any]) -> None:
        if event["event"] == "created":
            raise KeyboardInterrupt

    out = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        client.run(source, out, on_event=stop)
    moved = tmp_path / "moved.jsonl"
    os.replace(source, moved)
    ob.write_jsonl(source, chat_requests(5))  # another file where the input was
    report = client.run(moved, out)
    assert report.ok and _output_ids(out) == ["q0", "q1", "q2"]


def test_a_job_is_refused_a_folder_as_results_before_anything_is_sent(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 18's review: ``run -o /tmp`` began a job in /tmp.job and would have failed only
    when the paid-for results were written."""
    source = _job_input(tmp_path, 2)
    folder = tmp_path / "results"
    folder.mkdir()
    with raises(ValueError) as info:
        client.run(source, folder)
    assert str(info.value) == (
        f"the output is a folder ({folder}): the results are one file, named in full"
    )
    assert api.requests == [] and not os.path.exists(f"{folder}.job")
    ran = cli(client, "run", source, "-o", str(folder))
    assert (ran.code, ran.err.splitlines()[-1]) == (2, "hint: give RESULTS another path (-o)")


def test_a_job_outlives_a_lost_output_file_and_a_failed_clean_up(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    source = _job_input(tmp_path, 4)
    out = tmp_path / "out.jsonl"
    api.arm("GET", r"/v1/files/[^/]+/content", Fault.error(404, message="No such File"))
    api.arm("DELETE", r"/v1/files/[^/]+", *[Fault.error(500)] * 3)  # one delete, every retry
    report = client.run(source, out, max_active=1)
    assert report.ok and _output_ids(out) == ["q0", "q1", "q2", "q3"]
    assert report.rounds == 2 and report.files_left == 1
    again = client.run(source, out)  # finishes the clean-up
    assert again.files_left == 0 and api.files == {}


def test_raise_for_status_and_http_request_as_httpx_gives_them(
    client: Client, api: FakeAPI
) -> None:
    """Issue 17 review, item 7: an error's response raises `HTTPStatusError` with httpx's
    message, `request` and `response`; a raw response has `http_request`; the webhook event
    types have a raw response, sync and async."""
    import asyncio

    batch_id = str(api.add_batch(status="completed")["id"])
    assert _raise_for_status_and_requests(client, api, batch_id) == [
        "HTTPStatusError",
        "Client error '404 Not Found' for url 'URL/batches/batch_nope'\n"
        "For more information check: https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/404",
        "URL/batches/batch_nope",
        True,
        "GET",
        f"URL/batches/{batch_id}",
        200,
        "GET",
        200,
        "WebhookEventTypeList",
    ]
    assert issubclass(ob.HTTPStatusError, ob.OpenAIError)
    response = ob._ErrorResponse(302, {"Location": "/x"}, b"", ob._RequestInfo("GET", "/a"))
    with raises(
        ob.HTTPStatusError,
        match=r"^Redirect response '302 Found' for url '/a'\nRedirect location: '/x'\n",
    ):
        response.raise_for_status()
    with raises(RuntimeError, match="request instance has not been set"):
        ob._ErrorResponse(500, {}, b"").raise_for_status()

    async def main() -> int:
        async with ob.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url) as async_client:
            raw = await async_client.webhooks.event_types.with_raw_response.list()
            return int(raw.status_code)

    assert asyncio.run(main()) == 200


def test_a_finished_job_writes_results_again_if_they_were_removed(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """With --keep-files; without, a finished job keeps only its record, and says so."""
    source = _job_input(tmp_path, 3)
    out = tmp_path / "out.jsonl"
    first = client.run(source, out, keep_files=True)
    written = out.read_bytes()
    out.unlink()
    again = client.run(source, out, keep_files=True)
    assert out.read_bytes() == written and len(api.batches) == 1
    assert again.seconds == first.seconds  # the job's wall time, not the time since it began
    other = tmp_path / "other.jsonl"
    client.run(source, other)
    assert sorted(os.listdir(f"{other}.job")) == ["journal.jsonl", "lock", "state.json"]
    other.unlink()
    with raises(ob.OpenAIError) as info:
        client.run(source, other)
    assert str(info.value) == (
        f"{other} was written and has since been removed, and the job's files went with its "
        f"end; remove {other}.job to run it again"
    )
    assert len(api.batches) == 2


@pytest.mark.parametrize(
    "method, path",
    [("POST", r"/v1/files"), ("GET", r"/v1/files/[^/]+/content"), ("POST", r"/v1/batches")],
    ids=["upload", "download", "create"],
)
def test_run_rides_out_a_burst_of_5xx_on_a_transfer_or_a_create(
    api: FakeAPI, tmp_path: Any, method: str, path: str
) -> None:
    """Issue 16: a batch job died on three 5xx answers in a row to an upload, a download or a
    create, though it rode out the same burst on a poll. A burst longer than the client's
    retries (max_retries=1 here) is an outage to wait out, and no batch is made twice."""
    client = make_client(api, max_retries=1)
    source = _job_input(tmp_path, 9)
    out = tmp_path / "out.jsonl"
    api.arm(method, path, *[Fault.error(503 if n % 2 else 500) for n in range(5)])
    report = _within(15, lambda: client.run(source, out, batch_size=3, max_active=2))
    assert all(not faults for _, _, faults in api._faults)  # the whole burst was met
    assert report.ok and report.succeeded == 9 and _output_ids(out) == [f"q{i}" for i in range(9)]
    assert len(api.batches) == 3 and all(len(made) == 1 for made in _batches_by_key(api).values())
    assert api.ran == {f"q{i}": 1 for i in range(9)}


def _most_at_once(api: FakeAPI, after: float) -> int:
    """The most batches made at or after `after` that were in progress at once on the fake."""
    spans = []
    for batch_id, job in api._jobs.items():
        if api._made_at[batch_id] >= after and "in_progress" in job.at:
            end = min(job.at.get(status, float("inf")) for status in _TERMINAL)
            spans.append((job.at["in_progress"], end))
    return max((sum(a <= start < b for a, b in spans) for start, _ in spans), default=0)


def test_run_raises_its_token_budget_again_after_a_collision(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 16, the token budget recovers: one brief collision with the enqueued-token limit
    cut the job to one batch at a time for good."""
    api.enqueued_token_limit = 4  # one shard of two requests ("question N": 2 tokens each)
    source = _job_input(tmp_path, 24)
    collided: list[float] = []

    def lift(event: dict[str, Any]) -> None:
        if event["event"] == "over_token_limit" and not collided:
            collided.append(api.clock.now)
            api.enqueued_token_limit = None  # the other work that held the limit has ended

    report = _within(
        15,
        lambda: client.run(
            source, tmp_path / "out.jsonl", batch_size=2, max_active=2, on_event=lift
        ),
    )
    assert report.ok and report.succeeded == 24 and collided
    assert _most_at_once(api, after=collided[0]) > 1  # two at once again, once it had room


def test_run_grows_its_token_budget_back_without_colliding_every_cycle(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Review: the budget grew back a whole shard for every batch that ended, doubling each
    cycle, so a job of 20 shards collided 16 times (36 batches). It grows by a shard a
    window, and stays under the level that collided until 8 batches have ended well."""
    api.enqueued_token_limit = 16  # two shards of 4 requests (8 tokens each) at once
    source = _job_input(tmp_path, 80)
    events: list[dict[str, Any]] = []
    report = client.run(
        source, tmp_path / "out.jsonl", batch_size=4, max_active=4, on_event=events.append
    )
    assert report.ok and report.succeeded == 80
    collisions = [e for e in events if e["event"] == "over_token_limit"]
    assert len(collisions) <= 4 and report.batches == 20 + len(collisions)


def test_run_resumed_with_a_larger_token_budget_uses_it(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 16: a resume ignored a larger max_enqueued_tokens once a collision had cut the
    budget; the resumed job must start as many batches at once as the new budget allows."""
    api.enqueued_token_limit = 4  # one shard of two requests
    source = _job_input(tmp_path, 12)
    out = tmp_path / "out.jsonl"

    def stop(event: dict[str, Any]) -> None:
        if event["event"] == "over_token_limit":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.run(source, out, batch_size=2, max_active=2, on_event=stop)
    api.enqueued_token_limit = None
    resumed_at = api.clock.now
    report = _within(
        15,
        lambda: client.run(source, out, batch_size=2, max_active=4, max_enqueued_tokens=1_000_000),
    )
    assert report.ok and report.succeeded == 12
    started = [made for made in api._made_at.values() if made == int(resumed_at)]  # whole s
    assert len(started) >= 2, "the resumed job started one batch at a time"


# A job killed at an exact step of the engine: the child wraps the record's step and SIGKILLs
# itself just before or just after the step that records a split or a round's shards, where
# no request is in flight. (step: when, and a condition on the step)
_ENGINE_KILLS = {
    "inside a split, its halves written, not recorded": ("before", "a.jsonl"),
    "after a split, recorded": ("after", "a.jsonl"),
    "inside a round change, its shards written, not recorded": ("before", "r2-"),
    "after a round change, recorded": ("after", "r2-"),
}
_KILLED_AT = """
import os, signal, sys
import openai_batch as ob
when, mark = sys.argv[1], sys.argv[2]
original = ob._Record.step
def step(self, step):
    hit = mark in str(step.get("add", ""))
    if hit and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, step)
    if hit and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
ob._Record.step = step
sys.exit(ob.main(sys.argv[3:]))
"""


def _killed_in_its_first_create(api: FakeAPI, command: list[str], out: Any) -> dict[str, str]:
    """Start `command` (a run against `api`) and SIGKILL it inside its first create: the batch
    made, its reply lost. The environment to run it again with."""
    env = _module_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        assert _kill_inside(api, process, ("create", "POST", r"/v1/batches", 0), out)
    finally:
        process.kill()
        process.wait(timeout=30)
    return env


def _job_process(command: list[str], env: dict[str, str], what: str, seconds: float = 30) -> int:
    """Run `command` to its end; fail the test if it takes over `seconds` (it hangs, or waits
    for batches it should have cancelled)."""
    try:
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} did not end within {seconds:g} s", pytrace=False)
    return done.returncode


def test_run_killed_inside_a_split_and_a_round_change_finishes_with_nothing_twice(
    tmp_path: Any,
) -> None:
    """Issue 16: kill points inside a token-limit split and inside a round change, each a real
    SIGKILL; the job, run again after each, ends with every request once in input order and
    no batch made twice."""
    api = FakeAPI(clock=ScaledClock(speed=400))
    api.enqueued_token_limit = 12  # a shard of 10 requests (20 tokens) trips it alone; 5 fit
    api.flaky_rule = lambda line: line["custom_id"] == "q7"  # a 500 once: a second round
    source = _job_input(tmp_path, 40)
    out = tmp_path / "out.jsonl"
    args = ["run", source, "-o", str(out), "--batch-size", "10", "--max-active", "1"]
    args += ["--interval", "0.1", "--json"]
    with api.serve():
        env = _module_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
        for step, (when, mark) in _ENGINE_KILLS.items():
            command = [sys.executable, "-c", _KILLED_AT, when, mark, *args]
            code = _job_process(command, env, step, seconds=60)
            assert code == -9, f"not killed {step}"
        code = _job_process([sys.executable, "-m", "openai_batch", *args], env, "the rest", 60)
    assert code == 0
    assert _output_ids(out) == [f"q{i}" for i in range(40)]
    assert api.ran == {f"q{i}": 2 if i == 7 else 1 for i in range(40)}
    made = _batches_by_key(api)
    assert all(len(statuses) == 1 for statuses in made.values())  # no key made twice
    halves = [key for key in made if key and key.endswith(("a", "b"))]
    assert len(halves) >= 8 and any("-r2-" in key for key in made if key)


def test_run_stops_for_a_rerun_when_the_server_stops_answering_and_resumes(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """The outage rule on a batch job: polls that get only 503s for ten minutes (on the
    client's clock) stop the job with JobStoppedError, RESULTS unwritten; the same call, once
    the server answers, ends the job with nothing made twice."""
    source = _job_input(tmp_path, 6)
    out = tmp_path / "out.jsonl"
    events: list[dict[str, Any]] = []

    def down_after_creates(event: dict[str, Any]) -> None:
        events.append(event)
        if event["event"] == "created" and event["shard"] == "r1-0002.jsonl":
            api.arm("GET", r"/v1/batches/[^/]+", *[Fault.error(503)] * 10_000)

    with raises(ob.JobStoppedError) as info:
        client.run(source, out, batch_size=3, on_event=down_after_creates)
    assert info.value.reason == "outage" and not out.exists()
    assert re.fullmatch(
        r"the server has answered only errors for 6\d\d s \(Error code: 503 - .*\); the job "
        r"keeps what it has: run it again to resume",
        str(info.value),
    )
    assert {e["what"] for e in events if e["event"] == "server_trouble"} == {"poll"}
    api.disarm()
    report = client.run(source, out, batch_size=3)
    assert report.ok and _output_ids(out) == [f"q{i}" for i in range(6)]
    assert len(api.batches) == 2 and api.ran == {f"q{i}": 1 for i in range(6)}


def test_run_cancel_and_polls_ride_out_what_a_proxy_or_a_burst_gives(
    api: FakeAPI, tmp_path: Any
) -> None:
    """Review: --cancel died on a short burst of 500s to its cancel calls, and one 200 with a
    proxy's HTML page in place of a poll's answer stopped a batch job. Both are outages to
    ride out: the job cancels, or polls again."""
    client = make_client(api, max_retries=1)
    source = _job_input(tmp_path, 6)
    out = tmp_path / "out.jsonl"

    def stop(event: dict[str, Any]) -> None:
        if event["event"] == "created" and event["shard"] == "r1-0002.jsonl":
            page = Fault.html(200, "<html><body>Please log in</body></html>")
            api.arm("GET", r"/v1/batches/[^/]+", page, page, page)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.run(source, out, batch_size=3, max_active=2, on_event=stop)
    events: list[dict[str, Any]] = []
    api.arm("POST", r"/v1/batches/[^/]+/cancel", *[Fault.error(500)] * 6)
    report = _within(15, lambda: client.run(source, out, cancel=True, on_event=events.append))
    assert all(not faults for _, _, faults in api._faults)  # every fault was met
    assert sorted(b["status"] for b in api.batches.values()) == ["cancelled", "cancelled"]
    assert report.failures == {"job_cancelled": report.failed} and report.requests == 6
    troubles = [e["what"] for e in events if e["event"] == "server_trouble"]
    assert troubles.count("cancel") >= 2 and "poll" in troubles


def test_run_stops_at_once_when_the_account_is_out_of_quota(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """An account out of quota is no outage to wait ten minutes for: the job stops, keeping
    what it has, with reason "quota"."""
    source = _job_input(tmp_path, 3)
    out = tmp_path / "out.jsonl"
    body = _error_json(429, "You exceeded your current quota.", code="insufficient_quota")
    quota = Fault.raw(429, body, "application/json")
    api.arm("POST", r"/v1/batches", *[quota] * 10)
    with raises(ob.JobStoppedError) as info:
        client.run(source, out)
    assert info.value.reason == "quota" and "out of quota" in str(info.value)
    api.disarm()
    assert client.run(source, out).ok and len(api.batches) == 1


def test_a_job_begun_by_the_first_version_is_resumed(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """A job whose record the first version wrote (state.json alone, rewritten at each step)
    is upgraded and resumed after an upgrade, not refused: its shards run, once each."""
    source = _job_input(tmp_path, 6)
    out = tmp_path / "out.jsonl"
    folder = tmp_path / "out.jsonl.job"
    folder.mkdir()
    content = _read_bytes(source)
    lines = content.splitlines(keepends=True)
    shards = []
    for number in (1, 2):
        name = f"r1-000{number}.jsonl"
        (folder / name).write_bytes(b"".join(lines[3 * number - 3 : 3 * number]))
        shards.append({"name": name, "round": 1, "requests": 3, "tokens": 50, "status": "queued"})
        shards[-1].update(key=f"job-0123456789abcdef-r1-s{number}", tries=0, files=[])
        shards[-1].update(file_id=None, batch_id=None)
    state = {"version": 1, "job": "0123456789abcdef", "input": source, "round": 1}
    state.update(sha256=hashlib.sha256(content).hexdigest(), shards=shards)
    state.update(written=False, cleaned=[], endpoint="/v1/chat/completions", requests=6)
    state.update(started=api.clock.now, output=str(out), mode="Batch API", settings={})
    (folder / "state.json").write_text(json.dumps(state, indent=1))
    report = client.run(source, out, batch_size=3)
    assert report.ok and report.batches == 2 and _output_ids(out) == [f"q{i}" for i in range(6)]
    assert api.ran == {f"q{i}": 1 for i in range(6)}
    state["written"] = True  # and one it had finished: done, with its report
    state["tally"] = {"requests": 6, "succeeded": 6, "failed": 0, "failures": {}}
    (folder / "state.json").write_text(json.dumps(state, indent=1))
    (folder / "journal.jsonl").unlink()
    assert client.run(source, out).requests == 6 and len(api.batches) == 2


def test_a_job_record_cut_short_by_a_kill_is_read_to_its_last_whole_step(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """The record is state.json and a journal of steps; a step a kill cut short (a line
    with no end) is cut off, and the job resumes from the step before it."""
    source = _job_input(tmp_path, 9)
    out = tmp_path / "out.jsonl"

    def stop(event: dict[str, Any]) -> None:
        if event["event"] == "created":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.run(source, out, batch_size=3, on_event=stop)
    journal = tmp_path / "out.jsonl.job" / "journal.jsonl"
    whole = journal.read_bytes()
    with open(journal, "ab") as handle:
        handle.write(b'{"shard":0,"record":{"name":"r1-00')  # as a kill mid-write leaves it
    report = client.run(source, out, batch_size=3)
    assert report.ok and len(api.batches) == 3 and api.ran == {f"q{i}": 1 for i in range(9)}
    assert journal.read_bytes().startswith(whole[: whole.index(b"\n") + 1])  # a generation


def _cancel_fake() -> FakeAPI:
    """A fake on a clock 10 times real time, whose batches validate for two minutes (12 s
    real) and cancel in a second: a cancel finds them before they have run anything, even on
    a loaded machine."""
    api = FakeAPI(clock=ScaledClock(speed=10))
    api.seconds_validating, api.seconds_cancelling = 120.0, 1.0
    return api


@pytest.mark.parametrize("lag", [0.0, 20.0], ids=["list up to date", "list 20 s behind"])
def test_run_cancel_reaches_a_batch_made_by_a_create_killed_before_its_reply(
    tmp_path: Any, lag: float
) -> None:
    """Issue 16, cancel reaches every batch the job may have made: after a kill inside a
    create (the batch made, its reply lost), --cancel marked the shard not started and left
    the batch running, billed, never seen by the job. The review: even when the batch list
    shows a new batch 20 s late, the lookup waits for it."""
    api = _cancel_fake()
    api.list_lag = lag
    source = _job_input(tmp_path, 40)
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "openai_batch", "run", source, "-o", str(out)]
    command += ["--batch-size", "20", "--max-active", "1", "--interval", "0.1", "--json"]
    with api.serve():
        env = _killed_in_its_first_create(api, command, out)
        (made,) = api.batches.values()
        content = api.contents[made["input_file_id"]].decode()
        its = [json.loads(line)["custom_id"] for line in content.splitlines()]
        assert _job_process([*command, "--cancel"], env, "run --cancel") == 1
        assert made["status"] in ("cancelling", "cancelled"), made["status"]
        lines = {line["custom_id"]: line for line in _json_lines(out)}
        assert len(lines) == 40 and all(
            lines[c]["response"] is None and lines[c]["error"]["code"] == "job_cancelled"
            for c in its
        )
        creates = len(requests_to(api, "POST", r"/v1/batches"))
        assert _job_process(command, env, "the rerun") == 1  # a cancelled job stays ended
        assert len(requests_to(api, "POST", r"/v1/batches")) == creates and len(api.batches) == 1


def test_run_under_a_cost_cap_finds_a_batch_a_killed_create_made_rather_than_cut_it(
    tmp_path: Any,
) -> None:
    """Issue 19, item 4, never guess: a shard whose create may have gone out is looked up
    before the cap cuts it or stops at it. The batch a killed create made is found and waited
    for (its requests are not sent again); only then does the cap stop the job."""
    api = FakeAPI(clock=ScaledClock(speed=10))
    api.seconds_validating = 20.0  # 2 s real: the kill comes while the batch validates
    source, out = _capped_input(tmp_path, 40), tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "openai_batch", "run", source, "-o", str(out)]
    command += ["--batch-size", "20", "--max-active", "1", "--interval", "0.1"]
    command += ["--price", "gpt-4o-mini=10000,20000"]  # $8.20 a shard at worst
    with api.serve():
        env = _killed_in_its_first_create(api, command, out)
        api.seconds_validating = 0.0  # killed: the batches from now on need not wait
        (made,) = api.batches.values()
        # $1 fits no shard, nor a request after the found batch's $1.60
        assert _job_process([*command, "--max-cost", "1"], env, "the capped rerun", 60) == 1
        assert len(api.batches) == 1 and made["status"] == "completed"
        assert sorted(api.ran.values()) == [1] * 20  # its requests, each once
        lines = _json_lines(out)
        assert sum(line["error"] is None for line in lines) == 20
        assert {line["error"]["code"] for line in lines if line["error"]} == {"max_cost"}


def test_run_under_a_cost_cap_looks_up_every_shard_a_killed_run_may_have_made_first(
    tmp_path: Any,
) -> None:
    """Issue 19 review: a shard the cap cut, whose create a kill cut short, sits behind
    others in the record: the rerun looks it up before it starts or cuts any other, so its
    batch is counted, and its requests are neither sent again nor said to have no result."""
    api = FakeAPI(clock=ScaledClock(speed=10))
    api.seconds_validating = 20.0  # 2 s real: the kill comes while the batch validates
    source, out = _capped_input(tmp_path, 6), tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "openai_batch", "run", source, "-o", str(out)]
    command += ["--max-cost", "0.7", "--interval", "0.1"]
    command += ["--price", "gpt-4o-mini=10000,20000"]  # 6 × $0.41 cut to 3, then to 1 + 2
    with api.serve():
        env = _killed_in_its_first_create(api, command, out)
        api.seconds_validating = 0.0  # killed: the batches from now on need not wait
        (made,) = api.batches.values()
        content = api.contents[made["input_file_id"]].decode()
        assert [json.loads(line)["custom_id"] for line in content.splitlines()] == ["q0"]
        assert _job_process(command, env, "the capped rerun", 60) == 1
    assert all(count == 1 for count in api.ran.values()) and "q0" in api.ran
    lines = {line["custom_id"]: line for line in _json_lines(out)}
    assert lines["q0"]["error"] is None and lines["q0"]["response"]["status_code"] == 200


@pytest.mark.parametrize("again", [["--cancel"], []], ids=["cancel again", "plain rerun"])
def test_run_killed_while_cancelling_goes_on_cancelling(tmp_path: Any, again: list[str]) -> None:
    """Issue 16: a job killed while cancelling (one batch's cancel sent and carried out, its
    reply lost, the next not sent) goes on cancelling when it is run again."""
    api = _cancel_fake()
    source = _job_input(tmp_path, 30)
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "openai_batch", "run", source, "-o", str(out)]
    command += ["--batch-size", "10", "--max-active", "3", "--interval", "0.1", "--json"]
    with api.serve():
        env = _module_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        try:  # killed once it has made its three batches and polls them
            deadline, made = time.monotonic() + 20, None
            while made is None or not [
                r for r in api.requests[made:] if re.fullmatch(r"/v1/batches/[^/]+", r.path)
            ]:
                assert process.poll() is None and time.monotonic() < deadline
                if made is None and len(api.batches) == 3:
                    made = len(api.requests)
                time.sleep(0.005)
        finally:
            process.kill()
            process.wait(timeout=30)
        assert len(api.batches) == 3
        cancel = subprocess.Popen([*command, "--cancel"], env=env, stdout=subprocess.DEVNULL)
        try:
            point = ("cancel", "POST", r"/v1/batches/[^/]+/cancel", 1)
            assert _kill_inside(api, cancel, point, out)
        finally:
            cancel.kill()
            cancel.wait(timeout=30)
        statuses = sorted(batch["status"] for batch in api.batches.values())
        cancelled = [status for status in statuses if status in ("cancelling", "cancelled")]
        assert len(cancelled) == 2 and statuses[-1] == "validating"  # the kill's moment
        # A batch left validating would take 12 s more to run: cancelled, it ends in 0.1 s.
        assert _job_process(command + again, env, "the run after the kill", seconds=8) == 1
        assert all(b["status"] in ("cancelling", "cancelled") for b in api.batches.values())
        lines = _json_lines(out)
        assert len(lines) == 30 and all(
            line["error"]["code"] == "job_cancelled" for line in lines
        ), lines[0]
        assert len(api.batches) == 3


def _with_copies(tmp_path: Any, name: str = "in.jsonl") -> tuple[str, list[str]]:
    """Six requests, three of them copies of others under their own custom_ids (d0 and d2
    ask what q0 asks, d1 what q1 asks); the path and the custom_ids in input order."""
    asked = [("q0", 0), ("q1", 1), ("d0", 0), ("q2", 2), ("d1", 1), ("d2", 0)]
    requests = [BatchRequest.chat(c, "gpt-4o-mini", f"question {n}") for c, n in asked]
    path = str(tmp_path / name)
    ob.write_jsonl(path, requests)
    return path, [c for c, _ in asked]


def test_run_dedupe_sends_each_request_once_and_fans_its_answer_out(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19, item 5: requests with the same endpoint and body go once; each custom_id
    gets the answer under its own custom_id, in input order; the report says what it saved."""
    source, ids = _with_copies(tmp_path)
    out = tmp_path / "out.jsonl"
    events: list[dict[str, Any]] = []
    report = client.run(
        source, out, dedupe=True, batch_size=2, prices=_PRICED, on_event=events.append
    )
    assert api.ran == {"q0": 1, "q1": 1, "q2": 1}
    lines = _json_lines(out)
    assert [line["custom_id"] for line in lines] == ids
    bodies = {line["custom_id"]: line["response"]["body"] for line in lines}
    assert bodies["d0"] == bodies["d2"] == bodies["q0"] and bodies["d1"] == bodies["q1"]
    assert (report.requests, report.succeeded, report.failed) == (6, 6, 0)
    assert (report.deduplicated, report.cache_hits, report.batches) == (3, 0, 2)
    assert report.cost == 0.24 and report.saved == 0.24  # three answers, and three copies
    sieved = next(event for event in events if event["event"] == "sieved")
    assert (sieved["to_send"], sieved["deduplicated"], sieved["cache_hits"]) == (3, 3, 0)
    assert events[-1]["progress"]["requests"] == {
        "succeeded": 3,
        "failed": 0,
        "pending": 0,
        "cached": 0,
        "deduplicated": 3,
    }
    plain = client.run(source, tmp_path / "plain.jsonl")  # off by default: each is sent
    assert plain.deduplicated == 0 and plain.saved is None
    assert api.ran == {"q0": 2, "q1": 2, "q2": 2, "d0": 1, "d1": 1, "d2": 1}


def test_run_dedupe_copies_a_failure_to_its_copies(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19, item 5: a copy of a request that failed fails the same way, counted."""
    ids = ["fail-a", "fail-b", "fail-c"]  # the fake fails them by their custom_id
    source = write_lines(tmp_path / "in.jsonl", [request_line(c) for c in ids])
    report = client.run(source, tmp_path / "out.jsonl", dedupe=True)
    assert (report.requests, report.failed, report.deduplicated) == (3, 3, 2)
    assert report.failures == {"HTTP 400": 3} and len(api.ran) == 1
    assert _output_ids(tmp_path / "out.jsonl") == ids


def test_run_writes_its_results_when_its_cache_breaks_after_it_began(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19 review: the answers are paid for, so a cache that cannot be opened at the end
    (removed, or not a database any more) does not keep RESULTS from them: it is written
    without the cache, and an event says why."""
    cache, out = str(tmp_path / "answers.sqlite"), tmp_path / "out.jsonl"
    events: list[dict[str, Any]] = []

    def break_the_cache(event: dict[str, Any]) -> None:
        events.append(event)
        if event["event"] == "created":
            for name in os.listdir(tmp_path):
                if name.startswith("answers.sqlite"):
                    os.remove(tmp_path / name)
            with open(cache, "wb") as garbage:
                garbage.write(b"not a database, just bytes " * 100)

    report = client.run(_job_input(tmp_path, 4), out, cache=cache, on_event=break_the_cache)
    assert report.ok and _output_ids(out) == [f"q{i}" for i in range(4)]
    (failed,) = [event for event in events if event["event"] == "cache_failed"]
    assert failed["cache"] == cache and "not a database" in failed["error"]
    assert ob._job_note(failed) == (
        f"the answers were not added to the cache {cache} ({failed['error']}); the results "
        "are written all the same. Fix or remove that file to use it again"
    )


def test_run_at_its_cost_cap_tells_copies_from_requests_to_send(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19 review: with --dedupe, the requests with no result at the cap are those to
    send and their copies, and the worst case is of those to send alone."""
    lines = _json_lines(_capped_input(tmp_path, 5))
    copies = [{**line, "custom_id": f"copy-{line['custom_id']}"} for line in lines]
    source = write_lines(tmp_path / "twice.jsonl", lines + copies)
    with pytest.raises(ob.JobStoppedError) as stopped:
        client.run(source, tmp_path / "out.jsonl", dedupe=True, max_cost=0.5, prices=_PRICED)
    assert sum(api.ran.values()) == 2  # $0.41 at worst each; $0.16 spent leaves too little
    assert "6 requests with no result (3 to send, 3 copies of them), whose worst case is $1.23" in (
        str(stopped.value)
    )


def test_a_cache_in_no_folder_or_not_a_cache_is_refused_and_left_as_it_was(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19 review: a cache path in a folder that is not there was an "unexpected" error;
    cache stats on another program's SQLite file turned it to WAL and added tables."""
    source = _job_input(tmp_path, 2)
    with pytest.raises(ob.OpenAIError) as refused:
        client.run(source, tmp_path / "out.jsonl", cache=str(tmp_path / "no" / "c.sqlite"))
    assert str(refused.value) == (
        f"the cache {tmp_path}/no/c.sqlite is in no folder: {tmp_path}/no is not; a cache is "
        "a file, named in full"
    )
    assert not api.batches
    other = str(tmp_path / "app.db")
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    ran = cli(client, "cache", "stats", other)
    assert (
        ran.code == 1
        and (
            f"error: {other} is not a cache of openai_batch's (it has no table of answers); "
            "nothing in it was changed"
        )
        in ran.err
    )
    with sqlite3.connect(other) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        tables = db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        assert tables == [("users",)]


def test_a_cache_held_by_another_process_is_waited_for_as_long_as_said_and_no_longer(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19 review: each try of opening waited a whole busy timeout, and only the naps
    between tries were counted: an hour of tries for a minute's wait."""
    path = str(tmp_path / "c.sqlite")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a cache being made, its tables not there yet
    monkeypatch.setattr(ob, "_CACHE_WAIT", 0.5)
    began = time.monotonic()
    try:
        with pytest.raises(ob.OpenAIError, match="cannot be used: database is locked"):
            ob._Cache(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert time.monotonic() - began < 5.0  # 0.5 s of waiting, with room for a loaded machine


def test_cli_cache_prune_refuses_days_below_zero_and_a_folder(
    client: Client, tmp_path: Any
) -> None:
    """Issue 19 review: --older-than -1 would have removed answers added a second ago."""
    for days in ("-1", "nan", "inf"):
        ran = cli(client, "cache", "prune", str(tmp_path / "c.sqlite"), "--older-than", days)
        assert ran.code == 2 and "expected a number of days, 0 or more" in ran.err
    ran = cli(client, "cache", "stats", str(tmp_path))
    assert ran.code == 1 and f"error: {tmp_path} is a folder; a cache is a file" in ran.err


def test_run_cache_answers_a_rerun_unsent_and_an_edited_line_with_one_request(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19, item 5: a cache across jobs; a second run, to another RESULTS, sends nothing,
    and a third, with one line of the input edited, sends that line alone."""
    cache = str(tmp_path / "answers.sqlite")
    source = _job_input(tmp_path, 10)
    first = client.run(source, tmp_path / "one.jsonl", cache=cache, prices=_PRICED)
    assert first.ok and (first.cache_hits, first.saved) == (0, 0.0)
    assert sum(api.ran.values()) == 10
    events: list[dict[str, Any]] = []
    second = client.run(
        source, tmp_path / "two.jsonl", cache=cache, prices=_PRICED, on_event=events.append
    )
    assert sum(api.ran.values()) == 10 and len(api.batches) == 1  # nothing sent
    assert (second.requests, second.succeeded, second.cache_hits) == (10, 10, 0 + 10)
    assert second.saved == 0.8 and second.usage == {}  # 10 answers of 2 in, 3 out
    assert _output_ids(tmp_path / "two.jsonl") == [f"q{i}" for i in range(10)]
    bodies = [line["response"]["body"] for line in _json_lines(tmp_path / "one.jsonl")]
    assert [line["response"]["body"] for line in _json_lines(tmp_path / "two.jsonl")] == bodies
    assert events[-1]["progress"]["requests"]["cached"] == 10
    requests = _json_lines(source)
    requests[4]["body"]["messages"][0]["content"] = "question 4, edited"
    edited = write_lines(tmp_path / "edited.jsonl", requests)
    third = client.run(edited, tmp_path / "three.jsonl", cache=cache)
    assert api.ran == {**{f"q{i}": 1 for i in range(10)}, "q4": 2}  # the edited line alone
    assert (third.cache_hits, len(api.batches)) == (9, 2)
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone() == (11,)
        assert db.execute("SELECT SUM(hits) FROM hits").fetchone() == (19,)


@pytest.mark.parametrize("keys_read", [0, 250_000])
def test_run_cache_looked_up_in_runs_or_read_whole_answers_the_same(
    client: Client, api: FakeAPI, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, keys_read: int
) -> None:
    """Issue 19, item 5: the sieve asks the cache about a run of requests in one query, or
    reads all its keys when it holds few beside the job; either way, a rerun with three lines
    edited (in the first, second and last runs) sends those three alone."""
    monkeypatch.setattr(ob, "_CACHE_LOOKUP", 4)  # 10 requests: runs of 4, 4 and 2
    monkeypatch.setattr(ob, "_CACHE_KEYS_READ", keys_read)  # 0: each run looked up
    cache = str(tmp_path / "answers.sqlite")
    source = _job_input(tmp_path, 10)
    client.run(source, tmp_path / "one.jsonl", cache=cache)
    requests = _json_lines(source)
    for number in (0, 4, 9):
        requests[number]["body"]["messages"][0]["content"] = f"question {number}, edited"
    edited = write_lines(tmp_path / "edited.jsonl", requests)
    report = client.run(edited, tmp_path / "two.jsonl", cache=cache)
    assert (report.requests, report.succeeded, report.cache_hits) == (10, 10, 7)
    assert api.ran == {**{f"q{i}": 1 for i in range(10)}, "q0": 2, "q4": 2, "q9": 2}
    assert _output_ids(tmp_path / "two.jsonl") == [f"q{i}" for i in range(10)]
    first, second = (_json_lines(tmp_path / name) for name in ("one.jsonl", "two.jsonl"))
    same = [one["response"] == two["response"] for one, two in zip(first, second)]
    assert same == [number not in (0, 4, 9) for number in range(10)]


def test_run_cache_with_dedupe_and_direct_sends_what_neither_answers(tmp_path: Any) -> None:
    """Issue 19, item 5: the sieve is the drivers' seam: a direct job reads the cache too,
    and with dedupe a copy of a cached request is answered from the cache as well."""
    cache = str(tmp_path / "answers.sqlite")
    source, ids = _with_copies(tmp_path)
    with ChatServer().serve() as server:
        client = _direct_client(server)
        first = client.run(source, tmp_path / "one.jsonl", direct=True, dedupe=True, cache=cache)
        assert server.seen == {"question 0": 1, "question 1": 1, "question 2": 1}
        assert (first.requests, first.succeeded, first.deduplicated) == (6, 6, 3)
        assert _output_ids(tmp_path / "one.jsonl") == ids
        second = client.run(source, tmp_path / "two.jsonl", direct=True, dedupe=True, cache=cache)
        assert sum(server.seen.values()) == 3
        assert (second.requests, second.succeeded, second.cache_hits) == (6, 6, 6)
        assert (second.deduplicated, second.rounds) == (0, 0)
        assert _output_ids(tmp_path / "two.jsonl") == ids
        events: list[dict[str, Any]] = []
        third = client.run(
            source,
            tmp_path / "one.jsonl",
            direct=True,
            dedupe=True,
            cache=cache,
            on_event=events.append,
        )  # written already: nothing is sent, and where it stands is what was sent
        assert third.requests == 6 and sum(server.seen.values()) == 3
        assert events[-1]["progress"]["requests"] == {
            "succeeded": 3,
            "failed": 0,
            "pending": 0,
            "cached": 0,
            "deduplicated": 3,
        }


def _interrupt_at(kind: str) -> Callable[[dict[str, Any]], None]:
    """An on_event that stops the job, as Ctrl-C would, at its first event of `kind`."""

    def interrupt(event: dict[str, Any]) -> None:
        if event["event"] == kind:
            raise KeyboardInterrupt

    return interrupt


def test_run_keeps_the_dedupe_and_cache_it_began_with(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19, item 5: a resumed job keeps its choice; another is refused, naming it."""
    source, _ = _with_copies(tmp_path)
    out = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        client.run(source, out, dedupe=True, batch_size=2, on_event=_interrupt_at("created"))
    with refused(
        ob.OpenAIError,
        f"the job in {out}.job began with dedupe on and no cache; run it as it began, or "
        f"remove {out}.job to start again",
    ):
        client.run(source, out, batch_size=2)
    report = client.run(source, out, dedupe=True, batch_size=2)
    assert report.ok and report.deduplicated == 3 and len(api.batches) == 2
    assert api.ran == {"q0": 1, "q1": 1, "q2": 1}


def test_run_dedupe_cancelled_before_its_first_round_says_why_for_every_request(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19, item 5: stopped once the sieve is recorded, then cancelled: nothing was sent,
    and each custom_id, copies too, gets a line saying the job was cancelled."""
    source, ids = _with_copies(tmp_path)
    out = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        client.run(source, out, dedupe=True, on_event=_interrupt_at("sieved"))
    report = client.run(source, out, dedupe=True, cancel=True)
    assert api.ran == {} and api.batches == {}
    lines = _json_lines(out)
    assert [line["custom_id"] for line in lines] == ids
    assert {line["error"]["code"] for line in lines} == {"job_cancelled"}
    assert (report.requests, report.failed, report.deduplicated) == (6, 6, 3)
    assert report.failures == {"job_cancelled": 6}


def test_a_cache_keeps_the_response_as_the_line_has_it() -> None:
    """Issue 19, item 5: the response object's text, read from the line without writing it
    again: OpenAI's spaced lines, a custom_id that holds the key's text, a compact line."""
    decoder = json.JSONDecoder()
    spaced = (
        b'{"id": "batch_req_1", "custom_id": "say \\"response\\": no", "response": '
        b'{"status_code": 200, "request_id": "r", "body": {"x": [1, 2]}}, "error": null}\n'
    )
    text, response = ob._response_of(spaced, decoder)
    assert text == '{"status_code": 200, "request_id": "r", "body": {"x": [1, 2]}}'
    assert response["body"] == {"x": [1, 2]}
    compact = b'{"id":"i","custom_id":"a","response":{"status_code":200,"body":{}},"error":null}'
    assert ob._response_of(compact, decoder)[0] == '{"status_code":200,"body":{}}'
    odd = b'{"error": {"response": 1}, "response": {"status_code": 200, "body": {}}}'
    assert ob._response_of(odd, decoder) == (
        '{"status_code":200,"body":{}}',
        json.loads(odd)["response"],
    )


_NO_SQLITE = """
import sys
sys.modules["sqlite3"] = None  # as a Python built without it
sys.path.insert(0, FOLDER)
import openai_batch as ob
try:
    ob._Cache("answers.sqlite")
except ob.OpenAIError as exc:
    print(exc)
"""


def test_a_cache_without_sqlite3_says_what_is_missing_and_what_to_do(tmp_path: Any) -> None:
    folder = os.path.dirname(os.path.abspath(ob.__file__))
    probe = _NO_SQLITE.replace("FOLDER", repr(folder))
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.stdout == (
        "this Python was built without the sqlite3 module, which a cache (answers.sqlite) "
        "needs; use a Python that has it (python.org's builds and most distributions' do), "
        "or run without a cache\n"
    )
    assert not (tmp_path / "answers.sqlite").exists()


# Children that wrap the cache's writes: two that begin adding at the same moment, each once
# the other is ready; and one that SIGKILLs itself inside a transaction (half of its second
# thousand answers written) or just after it recorded its hits.
_CACHE_SHARED = """
import os, sys, time
import openai_batch as ob
me, other = sys.argv[1], sys.argv[2]
original = ob._Cache.add
def add(self, rows):
    rows = list(rows)
    if rows and not os.path.exists(me):
        open(me, "w").close()
        given_up = time.monotonic() + 60  # the other failed: the test says so
        while not os.path.exists(other) and time.monotonic() < given_up:
            time.sleep(0.002)
    return original(self, rows)
ob._Cache.add = add
sys.exit(ob.main(sys.argv[3:]))
"""
_CACHE_KILLED = """
import os, signal, sys, time
import openai_batch as ob
where, ready = sys.argv[1], sys.argv[2]
ob._CACHE_ROWS = 1000  # a transaction each thousand answers: 2,500 make three
def kill():
    open(ready, "w").close()
    os.kill(os.getpid(), signal.SIGKILL)
adds, add, hits = [], ob._Cache.add, ob._Cache.hits
def halfway(self, rows):
    rows = list(rows)
    adds.append(len(rows))
    def then_killed():
        for number, row in enumerate(rows):
            if where == "add" and len(adds) == 2 and number == len(rows) // 2:
                kill()
            yield row
    return add(self, then_killed())
def after(self, *args):
    hits(self, *args)
    if where == "hits":
        kill()
ob._Cache.add, ob._Cache.hits = halfway, after
sys.exit(ob.main(sys.argv[3:]))
"""


def _cache_counts(path: Any) -> tuple[str, int, int]:
    """A cache's integrity check, its answers and the hits its jobs recorded."""
    with sqlite3.connect(str(path)) as db:
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        answers = db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        hits = db.execute("SELECT COALESCE(SUM(hits), 0) FROM hits").fetchone()[0]
    return check, answers, hits


def test_run_cache_shared_by_two_processes_adding_at_once(tmp_path: Any) -> None:
    """Issue 19, item 5: two jobs in two processes add to one cache in the same moment (each
    waits for the other to be ready); both end well, and each answer is kept once."""
    api = FakeAPI(clock=ScaledClock(speed=20_000))  # 2,500 requests in about 0.1 s
    requests = chat_requests(2400)
    inputs = [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    ob.write_jsonl(inputs[0], requests[:1600])
    ob.write_jsonl(inputs[1], requests[800:])  # 800 of each are the other's too
    cache = str(tmp_path / "answers.sqlite")
    marks = [str(tmp_path / "ready-a"), str(tmp_path / "ready-b")]
    with api.serve():
        env = _module_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
        options = ["--cache", cache, "--interval", "0.1", "--json"]
        child = [sys.executable, "-c", _CACHE_SHARED]
        processes = [
            subprocess.Popen(
                [*child, marks[n], marks[1 - n], "run", source, "-o", source + ".out", *options],
                env=env,
                stdout=subprocess.DEVNULL,
            )
            for n, source in enumerate(inputs)
        ]
        codes = [process.wait(timeout=120) for process in processes]
        assert codes == [0, 0]
        assert _cache_counts(cache) == ("ok", 2400, 0)
        both = str(tmp_path / "both.jsonl")
        ob.write_jsonl(both, requests)
        made = len(api.batches)
        done = subprocess.run(
            [sys.executable, "-m", "openai_batch", "run", both, "-o", both + ".out", *options],
            env=env,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )
    assert done.returncode == 0 and len(api.batches) == made  # every answer was kept
    assert _cache_counts(cache) == ("ok", 2400, 2400)
    assert _output_ids(both + ".out") == [r.custom_id for r in requests]


def test_run_cache_killed_inside_a_write_loses_and_counts_nothing_twice(tmp_path: Any) -> None:
    """Issue 19, item 5: a SIGKILL inside a transaction of the cache (the second thousand
    answers half written), then a rerun that ends the job; and a SIGKILL after a job
    recorded its hits, then a rerun: the cache is whole, and nothing is counted twice."""
    api = FakeAPI(clock=ScaledClock(speed=20_000))  # 2,500 requests in about 0.1 s
    source = _job_input(tmp_path, 2500)
    cache = str(tmp_path / "answers.sqlite")
    ready = tmp_path / "killed"
    with api.serve():
        env = _module_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
        for where, out in (("add", "one.jsonl"), ("hits", "two.jsonl")):
            args = ["run", source, "-o", str(tmp_path / out), "--cache", cache, "--json"]
            killed = [sys.executable, "-c", _CACHE_KILLED, where, str(ready), *args]
            assert _job_process(killed, env, f"the job killed in {where}", 120) == -9
            assert ready.exists()
            ready.unlink()
            if where == "add":  # the first thousand committed, the second rolled back
                assert _cache_counts(cache) == ("ok", 1000, 0)
            else:  # the hits recorded; RESULTS written, not yet recorded as written
                assert _cache_counts(cache) == ("ok", 2500, 2500)
            plain = [sys.executable, "-m", "openai_batch", *args]
            assert _job_process(plain, env, f"the rerun after {where}", 120) == 0
            assert _output_ids(tmp_path / out) == [f"q{i}" for i in range(2500)]
    assert _cache_counts(cache) == ("ok", 2500, 2500)
    assert api.ran == {f"q{i}": 1 for i in range(2500)}  # the second job sent nothing


_KILLED_SIEVING = """
import os, signal, sys
import openai_batch as ob
when, mark = sys.argv[1], sys.argv[2]
original = ob._Record.step
def step(self, step):
    hit = mark in str(step)
    if hit and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, step)
    if hit and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
ob._Record.step = step
sys.exit(ob.main(sys.argv[3:]))
"""


def test_run_dedupe_killed_anywhere_in_its_first_steps_sends_each_request_once(
    tmp_path: Any,
) -> None:
    """Issue 19, item 5: SIGKILLs with the sieve's files written but not recorded, once it
    is recorded, with the first round's shards recorded and with its first batch made; the
    job, run again after each, sends each unique request once and writes every custom_id."""
    api = FakeAPI(clock=ScaledClock(speed=400))
    source, ids = _with_copies(tmp_path)
    out = tmp_path / "out.jsonl"
    args = ["run", source, "-o", str(out), "--dedupe", "--batch-size", "1", "--max-active", "1"]
    args += ["--interval", "0.05", "--json"]
    made = "'batch_id': 'batch"  # a shard's step once its batch is made
    kills = [("before", "sieved"), ("after", "sieved"), ("after", "r1-"), ("after", made)]
    with api.serve():
        env = _module_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
        for when, mark in kills:
            command = [sys.executable, "-c", _KILLED_SIEVING, when, mark, *args]
            assert _job_process(command, env, f"killed {when} {mark}", 60) == -9
        plain = [sys.executable, "-m", "openai_batch", *args]
        assert _job_process(plain, env, "the rest", 60) == 0
    assert _output_ids(out) == ids
    assert api.ran == {"q0": 1, "q1": 1, "q2": 1} and len(api.batches) == 3
    lines = {line["custom_id"]: line["response"]["body"] for line in _json_lines(out)}
    assert lines["d0"] == lines["d2"] == lines["q0"] and lines["d1"] == lines["q1"]


# ---------------------------------------------------------------- Direct rounds


def _questions(server: ChatServer, ids: list[str]) -> dict[str, int]:
    """The server's answers by custom_id (q7 and fail-7 ask "question 7")."""
    return {c: server.answers.get(f"question {c.split('q')[-1].split('-')[-1]}", 0) for c in ids}


def test_run_direct_writes_every_answer_in_order_within_the_concurrency(tmp_path: Any) -> None:
    requests = chat_requests(150, fail=(7, 90))
    ids = [r.custom_id for r in requests]
    source = _job_input(tmp_path, 150, fail=(7, 90))
    out = tmp_path / "out.jsonl"
    with ChatServer(latency=0.01).serve() as server:
        server.refuse = {"question 7", "question 90"}
        server.drop = {"question 3": 1, "question 140": 1}  # a broken connection: sent again
        server.broken = {"question 60"}  # a 500 every time: retried, then again next round
        client = _direct_client(server)
        report = client.run(source, out, direct=True, concurrency=8, rounds=2)
    lines = _json_lines(out)
    assert [line["custom_id"] for line in lines] == ids
    assert server.peak == 8  # the concurrency was reached and never exceeded
    assert _questions(server, ids) == {
        c: 0 if c in ("fail-7", "fail-90", "q60") else 1 for c in ids
    }
    assert server.seen["question 7"] == 1 and server.seen["question 3"] == 2  # 400s are final
    assert server.seen["question 60"] == 6  # two rounds of three tries (max_retries=2)
    assert (report.requests, report.succeeded, report.failed, report.rounds) == (150, 147, 3, 2)
    assert report.failures == {"HTTP 400": 2, "HTTP 500": 1} and report.batches == 0
    assert report.usage == {
        "input_tokens": 5 * 147,
        "cached_tokens": 0,
        "output_tokens": 4 * 147,
        "reasoning_tokens": 0,
    }
    assert lines[7]["response"]["status_code"] == 400 and lines[7]["error"] is None
    assert lines[7]["response"]["body"]["error"]["message"] == "refused: question 7"
    assert [r.custom_id for r in ob.iter_results(out) if not r.ok] == ["fail-7", "q60", "fail-90"]
    retry = tmp_path / "retry.jsonl"
    assert ob.write_failed_requests(source, out, retry) == 3
    assert all(
        request is not None and result is not None
        for request, result in ob.join_results(source, out)
    )
    again = client.run(source, out, direct=True)  # done already: nothing is sent
    assert again.requests == 150 and sum(server.seen.values()) == 150 + 2 + 5


def test_run_direct_stops_at_its_cost_cap_and_resumes_with_a_higher_one(tmp_path: Any) -> None:
    """Issue 19, item 4: a request is sent only if the spend and the worst case of all in
    flight fit under the cap; what is in flight is let finish; a rerun sends only the rest."""
    source, out = _capped_input(tmp_path, 20), tmp_path / "out.jsonl"
    ids = [f"q{i}" for i in range(20)]
    with ChatServer(latency=0.01).serve() as server:
        client = _direct_client(server)
        with pytest.raises(ob.JobStoppedError) as stopped:
            client.run(source, out, direct=True, concurrency=4, max_cost=1.0, prices=_PRICED)
        # $0.13 an answer (5 in, 4 out), $0.41 at worst: the fifth answer leaves too little
        # for one more even with nothing in flight, and no two were in flight past the first
        assert sum(server.seen.values()) == 5 and set(server.seen.values()) == {1}
        report = stopped.value.report
        assert report is not None and report.cost == pytest.approx(0.65)
        assert report.failures == {"max_cost": 15} and stopped.value.needed == 6.90  # q1x: $0.42
        assert [line["custom_id"] for line in _json_lines(out)] == ids
        done = client.run(source, out, direct=True, concurrency=4, max_cost=6.9, prices=_PRICED)
    assert done.ok and done.cost == pytest.approx(20 * 0.13)
    assert _questions(server, ids) == {c: 1 for c in ids}  # each answered once, in all
    assert _output_ids(out) == ids


def test_run_says_when_answers_gave_no_tokens_rather_than_a_cost_of_nothing(
    tmp_path: Any,
) -> None:
    """Issue 19, final review: answers with no usage cost something unknown: the report does
    not say $0.00, nor a saving of $0.00 for their copies."""
    lines = _json_lines(_capped_input(tmp_path, 3))
    copies = [{**line, "custom_id": f"copy-{line['custom_id']}"} for line in lines]
    source = write_lines(tmp_path / "twice.jsonl", lines + copies)
    with ChatServer(latency=0.0).serve() as server:
        server.says_usage = False
        client = _direct_client(server)
        report = client.run(source, tmp_path / "out.jsonl", direct=True, dedupe=True)
        ran = cli(client, "run", source, "-o", str(tmp_path / "b.jsonl"), "--direct", "--dedupe")
    assert (report.unpriced, report.saved, report.deduplicated) == (3, None, 3)
    note = "3 answers said no tokens, so what they cost is not known, and not counted"
    assert report.cost_note == note
    assert f"cost: $0.00 at OpenAI standard prices of 2026-12 (LiteLLM 1.110.2); {note}" in (
        ran.err.splitlines()
    )
    assert f"0 requests answered from the cache, 3 duplicates not sent; {note}" in (
        ran.err.splitlines()
    )


def test_run_direct_under_a_cap_counts_answers_with_no_tokens_at_their_worst(
    tmp_path: Any,
) -> None:
    """Issue 19 review: an answer that says no tokens cost an unknown amount: it counts at its
    worst case, in the run that got it and in every later one (the spend log keeps it)."""
    source, out = _capped_input(tmp_path, 20), tmp_path / "out.jsonl"
    with ChatServer(latency=0.01).serve() as server:
        server.says_usage = False
        client = _direct_client(server)
        for _ in range(3):  # the same cap again: nothing more is sent
            with pytest.raises(ob.JobStoppedError) as stopped:
                client.run(source, out, direct=True, concurrency=4, max_cost=1.0, prices=_PRICED)
            # $0.41 each at worst: two fit $1.00, a third does not
            assert sum(server.seen.values()) == 2
        assert str(stopped.value).startswith(
            "the job stopped at its cost cap of $1.00, with $0.82 spent at your prices "
            "(counting at its worst what was sent and whose cost is not known): 18 requests"
        )
        assert stopped.value.needed == pytest.approx(0.82 + 8 * 0.41 + 10 * 0.42)


def test_run_direct_under_a_cap_counts_requests_in_flight_at_a_kill_at_their_worst(
    tmp_path: Any,
) -> None:
    """Issue 19 review: requests in flight when a run is SIGKILLed may have been billed, and
    their answers were never written: the rerun counts them at their worst, and with the
    same cap sends nothing more."""
    source, out = _capped_input(tmp_path, 20), tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "openai_batch", "run", source, "-o", str(out), "--direct"]
    command += ["--concurrency", "8", "--max-cost", "2", "--price", "gpt-4o-mini=10000,20000"]
    with ChatServer(latency=0.0).serve() as server:
        server.hang = {f"question {i}" for i in range(20)}  # each held until the kill
        env = _module_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=server.base_url)
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while sum(server.seen.values()) < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)  # a fifth would have come by now, had it fitted
        finally:
            process.kill()
            process.wait(timeout=30)
        assert sum(server.seen.values()) == 4  # $0.41 each at worst: four fit $2.00
        server.hang = set()
        client = _direct_client(server)
        with pytest.raises(ob.JobStoppedError) as stopped:
            client.run(source, out, direct=True, concurrency=8, max_cost=2.0, prices=_PRICED)
    assert sum(server.seen.values()) == 4 and "with $1.64 spent" in str(stopped.value)


def test_run_direct_rides_out_429s_by_slowing_the_whole_run(tmp_path: Any) -> None:
    ids = [r.custom_id for r in chat_requests(120)]
    source = _job_input(tmp_path, 120)
    out = tmp_path / "out.jsonl"
    events: list[dict[str, Any]] = []
    with ChatServer(latency=0.005, capacity=4).serve() as server:
        report = _direct_client(server).run(
            source, out, direct=True, concurrency=16, on_event=events.append
        )
    assert report.ok and _output_ids(out) == ids
    assert _questions(server, ids) == {c: 1 for c in ids}  # each answered once, 429s ridden out
    assert 0 < server.refused_429 < 60  # the window came down, rather than refusal after refusal
    slowed = [e for e in events if e["event"] == "slowed"]
    assert slowed and min(e["concurrency"] for e in slowed) < 8  # halved twice, at least


def test_run_direct_keeps_the_per_minute_budgets(tmp_path: Any) -> None:
    source = _job_input(tmp_path, 40)
    with ChatServer(latency=0.0).serve() as server:
        # 10 times real time, not 100: a thread woken 10 ms late on a busy machine is then a
        # tenth of a second late on the clock the budgets keep, not a whole second.
        client = _direct_client(server, speed=10)
        began = server.clock()
        client.run(source, tmp_path / "a.jsonl", direct=True, max_requests_per_minute=600)
        arrivals = sorted(server.arrivals)
        # 10 a second, a second's worth at once: 40 take 3 seconds, and no second has more
        # than 20 (a second's worth and its refill), give or take a thread's timing
        assert arrivals[-1] - began >= 3.0
        assert max(sum(t <= a < t + 1 for a in arrivals) for t in arrivals) <= 22
        server.arrivals.clear()
        server.usage = (60, 40)  # 100 tokens an answer, where 25 were estimated (bytes / 4)
        began = server.clock()
        client.run(source, tmp_path / "b.jsonl", direct=True, max_tokens_per_minute=60_000)
        # 1,000 tokens a second: the answers' usage is charged, not only the estimate
        assert max(server.arrivals) - began >= 2.0


def test_run_direct_says_why_a_request_got_no_answer_it_could_keep(tmp_path: Any) -> None:
    source = _job_input(tmp_path, 4)
    out = tmp_path / "out.jsonl"
    with ChatServer().serve() as server:
        server.drop = {"question 0": 99}  # never an answer
        server.garbled = {"question 1": b'{"score": NaN}', "question 2": b"<h1>OK</h1>\n"}
        report = _direct_client(server, max_retries=1).run(source, out, direct=True, rounds=2)
    lines = _json_lines(out)
    url = f"{server.base_url}/chat/completions"
    assert lines[0]["response"] is None and lines[0]["error"] == {
        "code": "connection_error",
        "message": "got no answer 2 times in round 2 of 2; the last: Connection error (POST "
        f"{url}): Remote end closed connection without response",
    }
    assert lines[1]["response"] is None and lines[1]["error"] == {
        "code": "invalid_response",
        "message": "got no response it could use 1 time in round 2 of 2; the last: the "
        "response body is not valid JSON: NaN is not a JSON number (column 11)",
    }
    # A 200 that is not a response (a proxy's page) is no success.
    assert lines[2]["response"] is None and lines[2]["error"]["code"] == "invalid_response"
    # q0: two tries a round, when others were answered or, alone in round 2, the server
    # answered a probe (so the fault was its own): four in all, and it ends.
    assert server.seen == {
        "question 0": 2 * 2,
        "question 1": 2,
        "question 2": 2,
        "question 3": 1,
    }
    assert report.failures == {"connection_error": 1, "invalid_response": 2}


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/embeddings", "/v1/responses"])
def test_run_direct_writes_the_batch_output_shape_for_each_endpoint(
    tmp_path: Any, endpoint: str
) -> None:
    body: dict[str, Any] = {"model": "m", "input": "question 1"}
    if endpoint == "/v1/chat/completions":
        body = {"model": "m", "messages": [{"role": "user", "content": "question 1"}]}
    source = write_lines(tmp_path / "in.jsonl", [request_line("one", url=endpoint, body=body)])
    out = tmp_path / "out.jsonl"
    with ChatServer().serve() as server:
        report = _direct_client(server).run(source, out, direct=True)
        expected = server.answer(endpoint, body, 1)[1]
    (line,) = _json_lines(out)
    assert list(line) == ["id", "custom_id", "response", "error"]
    assert re.fullmatch(r"batch_req_[0-9a-f]{24}", line["id"]) and line["error"] is None
    assert line["response"] == {"status_code": 200, "request_id": "req_1", "body": expected}
    (result,) = ob.iter_results(out)
    assert result.ok and result.body == expected and result.request_id == "req_1"
    tokens_out = 0 if endpoint == "/v1/embeddings" else 4
    assert (report.usage["input_tokens"], report.usage["output_tokens"]) == (5, tokens_out)


def _answered(out: Any) -> int:
    try:
        with open(f"{out}.job/answers.jsonl", "rb") as handle:
            return handle.read().count(b"\n")
    except FileNotFoundError:
        return 0


def test_run_direct_killed_at_any_moment_sends_only_what_has_no_answer(tmp_path: Any) -> None:
    count, concurrency = 400, 8
    source = _job_input(tmp_path, count)
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "openai_batch", "run", source, "-o", str(out), "--direct"]
    command += ["--concurrency", str(concurrency), "--json"]
    # SIGKILL while the first requests are in flight, then each time a few more answers are
    # on disk than when the run began: by then those in flight at the last kill have answers.
    kills = [0, 3 * concurrency, 10 * concurrency, 20 * concurrency, 6 * concurrency]
    with ChatServer(latency=0.01).serve() as server:
        env = _module_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=server.base_url)
        for more in kills:
            at = _answered(out) + more
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
            while process.poll() is None and not (
                _answered(out) >= at and (more or server.in_flight)
            ):
                time.sleep(0.0005)
            process.kill()
            assert process.wait(timeout=60) == -9
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 0
    ids = [f"q{i}" for i in range(count)]
    assert _output_ids(out) == ids
    answered = _questions(server, ids)
    assert all(1 <= n <= 2 for n in answered.values()), answered  # none more than twice
    assert sum(answered.values()) - count <= concurrency * len(kills)  # only those in flight


def test_run_direct_prices_each_answers_usage_and_a_resume_counts_it_once(
    tmp_path: Any,
) -> None:
    """Issue 19, item 3: a direct job's spend, from the answers' usage; stopped and resumed,
    each kept answer counted once. Requests sent one by one are billed at standard prices
    (the review of item 4): there is no saving to tell of."""
    source = _job_input(tmp_path, 40)
    out = tmp_path / "out.jsonl"

    def stop_at_first_progress(event: dict[str, Any]) -> None:
        if event["event"] == "progress":
            raise KeyboardInterrupt

    with ChatServer(latency=0.01).serve() as server:
        server.usage = (100_000, 50_000)  # gpt-4o-mini: $0.075 and $0.30 a million, batch
        client = _direct_client(server)
        with pytest.raises(KeyboardInterrupt):
            client.run(source, out, direct=True, concurrency=4, on_event=stop_at_first_progress)
        assert 0 < _answered(out) < 40
        events: list[dict[str, Any]] = []
        report = client.run(source, out, direct=True, on_event=events.append)
        ran = cli(client, "run", source, "-o", str(out), "--direct", tty=True)  # written: again
    assert (report.usage["input_tokens"], report.usage["output_tokens"]) == (4_000_000, 2_000_000)
    assert report.cost == pytest.approx(1.8) and report.standard_cost is None
    assert events[0]["progress"]["spend"]["cost"] > 0  # what the first run's answers cost
    assert events[-1]["progress"]["spend"]["cost"] == report.cost
    assert (
        ran.err.splitlines()[-1]
        == "cost: $1.80 at OpenAI standard prices of 2026-12 (LiteLLM 1.110.2)"
    )


def test_run_direct_cancel_ends_the_job_with_what_was_answered(tmp_path: Any) -> None:
    source = _job_input(tmp_path, 200)
    out = tmp_path / "out.jsonl"

    def stop_once_answered(event: dict[str, Any]) -> None:
        # not at the first progress: on a loaded machine it can come before any answer
        if event["event"] == "progress" and event["progress"]["requests"]["succeeded"]:
            raise KeyboardInterrupt

    with ChatServer(latency=0.02).serve() as server:
        client = _direct_client(server)
        with pytest.raises(KeyboardInterrupt):
            client.run(source, out, direct=True, concurrency=4, on_event=stop_once_answered)
        answered = _answered(out)
        assert not out.exists() and 0 < answered < 200
        with open(f"{out}.job/answers.jsonl", "ab") as answers:  # as a kill mid-line leaves it
            answers.write(b'{"id":"batch_req_0","custom_id":"q199","resp')
        with raises(ob.OpenAIError) as info:
            client.run(source, out)  # begun direct: not to be resumed through the Batch API
        assert str(info.value) == (
            f"the job in {out}.job is a direct job, not a Batch API one; run it as it began, "
            f"or remove {out}.job to start again"
        )
        report = client.run(source, out, direct=True, cancel=True)
    lines = _json_lines(out)
    assert [line["custom_id"] for line in lines] == [f"q{i}" for i in range(200)]
    assert report.succeeded >= answered and report.failures == {"job_cancelled": report.failed}
    assert lines[-1]["response"] is None and lines[-1]["error"] == {
        "code": "job_cancelled",
        "message": "no result: the job was cancelled",
    }


def test_cli_run_direct_shows_a_live_line_and_piped_lines(tmp_path: Any) -> None:
    source = _job_input(tmp_path, 60, fail=(3,))
    args = ["run", source, "--direct", "--concurrency", "4", "-o"]
    with ChatServer(latency=0.02).serve() as server:
        server.refuse = {"question 3"}
        client = _direct_client(server, speed=100)
        ran = cli(client, *args, str(tmp_path / "a.jsonl"), tty=True)
        piped = cli(client, *args, str(tmp_path / "b.jsonl"))
    assert ran.code == 1 and ran.out.count("\x1b[3F") > 3  # redrawn in place, many times
    work, requests, tokens, spent, end = _screen(ran.out)  # the batch job's block's shape
    assert spent == "spent under $0.01 at OpenAI standard prices of 2026-12 (LiteLLM 1.110.2)"
    assert end == "" and work == (
        "round 1 of 3: 60 requests done, 0 in flight (at most 4 at once), 0 queued"
    )
    assert re.fullmatch(r"requests: 59 succeeded, 1 failed, 0 pending; [\d,.]+/s", requests)
    assert tokens.startswith("295 tokens in, 236 out; ") and tokens.endswith(" so far")
    notes = ran.err.splitlines()
    assert notes[:5] == [  # before anything is sent, what it will cost
        "estimate: 60 requests, model gpt-4o-mini",
        "    input   ~600 tokens, under $0.01",
        "    output  unbounded (60/60 requests set no output limit), so no upper cost",
        "    at OpenAI standard prices of 2026-12 (LiteLLM 1.110.2)",  # one by one: no discount
        "round 1: 60 requests",  # a note above the line
    ]
    assert re.fullmatch(
        re.escape(f"{tmp_path}/a.jsonl: 60 requests, 59 succeeded, 1 failed (1 HTTP 400); ")
        + r"sent directly, 1 round, 295 tokens in, 236 out; [\dms ]+",
        notes[-3],
    )
    # In a pipe: a line every 5 seconds while it moves (on the client's clock, 100 times real
    # time here), on stdout.
    rows = [row.split("\t")[2:] for row in piped.out.splitlines() if "\tprogress\t" in row]
    names = ["succeeded", "failed", "pending", "active", "per_second", "left", "spent_usd"]
    assert len(rows) > 2 and all([cell.split("=")[0] for cell in row] == names for row in rows)
    # at most 295 x $0.15 + 236 x $0.60 a million (standard prices), as the job goes
    assert re.fullmatch(r"spent_usd=0\.000[01][0-9]{2}", rows[-1][-1])


def test_run_direct_rides_out_429s_that_say_nothing_of_when(tmp_path: Any) -> None:
    source = _job_input(tmp_path, 40)
    out = tmp_path / "out.jsonl"
    with ChatServer(latency=0.005, capacity=2).serve() as server:
        server.retry_after = None
        report = _direct_client(server).run(source, out, direct=True, concurrency=16)
    assert report.ok and report.succeeded == 40 and server.refused_429 > 0
    assert _questions(server, [f"q{i}" for i in range(40)]) == {f"q{i}": 1 for i in range(40)}


def test_run_direct_stops_when_the_first_answers_say_the_address_is_wrong(tmp_path: Any) -> None:
    source = _job_input(tmp_path, 30)
    out = tmp_path / "out.jsonl"
    with ChatServer().serve() as server:
        wrong = _direct_client(server, base_url=server.base_url[: -len("/v1")])
        with raises(ob.OpenAIError) as info:
            wrong.run(source, out, direct=True, concurrency=4)
        assert str(info.value).endswith(
            "none of them was written: the base URL (for vLLM, llama.cpp and Ollama it ends in "
            "/v1) or the key is not the server's"
        )
        assert isinstance(info.value, ob.JobStoppedError) and info.value.reason == "address"
        assert isinstance(info.value.error, ob.NotFoundError)
        assert not out.exists()
        report = _direct_client(server).run(source, out, direct=True)  # the same job, resumed
    assert report.ok and _output_ids(out) == [f"q{i}" for i in range(30)]


def test_run_direct_waits_for_a_server_that_does_not_answer_then_says_so(tmp_path: Any) -> None:
    source = _job_input(tmp_path, 5)
    out = tmp_path / "out.jsonl"
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with ChatServer().serve() as server:
        down = _direct_client(server, base_url=f"http://127.0.0.1:{port}/v1")
        with raises(ob.OpenAIError) as info:
            down.run(source, out, direct=True)
        assert re.match(r"the server has not answered for 3\d s \(Connection", str(info.value))
        assert str(info.value).endswith("run the job again to send the rest")
        assert isinstance(info.value, ob.JobStoppedError) and info.value.reason == "outage"
        report = _direct_client(server).run(source, out, direct=True)
    assert report.ok and server.seen == {f"question {i}": 1 for i in range(5)}


def test_direct_settings_are_checked(client: Client, tmp_path: Any) -> None:
    source = _job_input(tmp_path, 2)
    ran = cli(client, "run", source, "-o", str(tmp_path / "o.jsonl"), "--concurrency", "8")
    assert ran.code == 2 and "--concurrency goes with --direct" in ran.err
    for wrong in ({"max_requests_per_minute": 0}, {"max_tokens_per_minute": "9"}):
        with raises(ValueError):
            client.run(source, tmp_path / "o.jsonl", direct=True, **wrong)
    with raises(ValueError):
        client.run(source, tmp_path / "o.jsonl", max_requests_per_minute=60)


def test_run_direct_does_not_take_one_bad_request_for_a_wrong_address(tmp_path: Any) -> None:
    source = _job_input(tmp_path, 10)
    out = tmp_path / "out.jsonl"
    with ChatServer(latency=0.05).serve() as server:
        server.missing = {"question 0"}  # a 404 at once; the rest answer later
        report = _direct_client(server).run(source, out, direct=True, concurrency=10)
    assert report.succeeded == 9 and report.failures == {"HTTP 404": 1}


def _input_with_long_last_lines(tmp_path: Any, count: int, long: int = 5) -> str:
    """Chat requests q0.. whose last `long` ones are conversations of 20,000 turns before
    their question: a worker takes milliseconds to parse such a line, holding the GIL, and
    meanwhile the others reach the end of the input and wait for it."""
    lines: list[Any] = [request.to_dict() for request in chat_requests(count - long)]
    turns = [{"role": ("user", "assistant")[i % 2], "content": f"turn {i}"} for i in range(20_000)]
    for number in range(count - long, count):
        messages = [*turns, {"role": "user", "content": f"question {number}"}]
        body = {"model": "gpt-4o-mini", "messages": messages}
        lines.append(request_line(f"q{number}", body=body))
    return write_lines(tmp_path / "in.jsonl", lines)


def test_run_direct_always_ends_when_a_tenth_of_the_requests_meet_429s(tmp_path: Any) -> None:
    """Issue 16, the hang: a worker skipping a line that has its answer already did `busy -= 1`
    without waking the workers waiting for the end of the round, which then waited for ever."""
    source = _input_with_long_last_lines(tmp_path, 40)
    ids = [f"q{i}" for i in range(40)]
    with ChatServer(latency=0.002).serve() as server:
        client = _direct_client(server, speed=200, max_retries=1)
        for run in range(20):
            # A 429 for one request in ten, ridden out in the round; two 500s for two others,
            # which run out their tries (max_retries=1): a second round sends those again
            # (answered at once), and its workers skip every line that has its answer, the
            # long last ones too, well after those two were answered.
            server.limited = {f"question {i}": 1 for i in range(run % 5 + 5, 40, 10)}
            server.failing = {f"question {run % 5}": 2, f"question {run % 5 + 10}": 2}
            out = tmp_path / f"out-{run}.jsonl"
            report = _within(
                10,
                lambda out=out: client.run(source, out, direct=True, concurrency=16, rounds=3),
                f"run {run + 1} of 20",
            )
            assert report.succeeded == 40 and report.failed == 0, (run, report.failures)
            assert _output_ids(out) == ids


def test_run_direct_rerun_over_kept_answers_always_ends(tmp_path: Any) -> None:
    """Issue 16, the hang, on a rerun: nearly every line is skipped (its answer is kept), as
    a job killed late leaves it; no worker may be left waiting for a line already skipped."""
    source = _input_with_long_last_lines(tmp_path, 40)
    ids = [f"q{i}" for i in range(40)]

    def stop_late(event: dict[str, Any]) -> None:
        if event["event"] == "round" and event["round"] == 2:  # every answer of round 1 is kept
            raise KeyboardInterrupt

    with ChatServer(latency=0.002).serve() as server:
        client = _direct_client(server, speed=200, max_retries=1)
        for run in range(20):
            out = tmp_path / f"out-{run}.jsonl"
            server.limited = {f"question {i}": 1 for i in range(run % 5 + 5, 40, 10)}
            server.failing = {f"question {run % 5}": 2, f"question {run % 5 + 10}": 2}
            with pytest.raises(KeyboardInterrupt):
                client.run(source, out, direct=True, concurrency=16, on_event=stop_late)
            server.limited = {f"question {i}": 1 for i in range((run + 5) % 10, 40, 10)}
            report = _within(
                10,
                lambda out=out: client.run(source, out, direct=True, concurrency=16, rounds=3),
                f"rerun {run + 1} of 20",
            )
            assert report.succeeded == 40 and _output_ids(out) == ids, (run, report.failures)


def _tuple(report: ob.JobReport) -> tuple[Any, ...]:
    return (report.requests, report.succeeded, report.failed, report.failures, report.rounds)


def _one_bad_request(
    tmp_path: Any, misbehave: Callable[[ChatServer], None], **options: Any
) -> tuple[ChatServer, dict[str, Any], ob.JobReport, Client]:
    """Run 20 requests directly, "question 5" meeting `misbehave`, with max_retries=1 and two
    rounds; return the server (stopped), q5's RESULTS line, the report and the client."""
    source = _job_input(tmp_path, 20)
    out = tmp_path / "out.jsonl"
    with ChatServer(latency=0.002).serve() as server:
        misbehave(server)
        client = _direct_client(server, speed=200, max_retries=1, **options)
        report = _within(15, lambda: client.run(source, out, direct=True, rounds=2))
        seen = dict(server.seen)
        again = _within(10, lambda: client.run(source, out, direct=True, rounds=2), "the rerun")
        assert server.seen == seen  # nothing is sent again: the job has ended
    assert _tuple(again) == _tuple(report)
    assert report.failed == 1 and report.succeeded == 19
    limit = 2 * (client.max_retries + 1 + 3)  # rounds * (tries a round + a few held back)
    assert 1 <= server.seen["question 5"] <= limit, server.seen["question 5"]
    lines = _json_lines(out)
    assert [line["custom_id"] for line in lines] == [f"q{i}" for i in range(20)]
    assert all(line["response"]["status_code"] == 200 for i, line in enumerate(lines) if i != 5)
    return server, lines[5], report, client


def test_run_direct_ends_when_one_request_always_times_out(tmp_path: Any) -> None:
    """Issue 16, a job always ends: a request that times out every time was sent again and
    again and kept the job (and every rerun) from finishing. It is sent a bounded number of
    times and gets a final error that says so."""
    _, line, _, _ = _one_bad_request(tmp_path, lambda s: s.hang.add("question 5"), timeout=0.2)
    assert line["response"] is None and line["error"]["code"] == "timeout"
    assert "times" in line["error"]["message"], line["error"]


def test_run_direct_ends_when_one_request_always_gets_a_gateway_504(tmp_path: Any) -> None:
    """Issue 16, a job always ends: a request answered 504 by a gateway every time (the model
    behind it too slow for it) is given up after a bounded number of sends, saying why."""
    _, line, _, _ = _one_bad_request(tmp_path, lambda s: s.gateway_504.add("question 5"))
    assert line["error"] is not None, line
    assert "504" in line["error"]["message"] and "times" in line["error"]["message"]


def test_run_direct_ends_when_one_request_is_always_too_big_for_the_minute(tmp_path: Any) -> None:
    """Issue 16, a job always ends: a request refused with a 429 and a Retry-After every time
    (larger than the tokens-per-minute limit) held the whole run back for ever."""
    _, line, _, _ = _one_bad_request(tmp_path, lambda s: s.too_big.add("question 5"))
    assert line["error"] is not None, line
    assert "429" in line["error"]["message"] and "times" in line["error"]["message"]


def test_run_direct_stops_when_the_key_expires_midway_and_resumes_with_a_good_one(
    tmp_path: Any,
) -> None:
    """Issue 16, credentials: a key that expires midway (401 after successes) wrote every
    remaining request as a final 401, and a rerun with a good key sent nothing. The run must
    stop, keep only the real answers, and a rerun must finish the job."""
    source = _job_input(tmp_path, 40)
    out = tmp_path / "out.jsonl"
    ids = [f"q{i}" for i in range(40)]
    with ChatServer(latency=0.002).serve() as server:
        server.expire_key_after = 10
        client = _direct_client(server, speed=200)
        with raises(ob.OpenAIError) as info:  # AuthenticationError is one
            _within(15, lambda: client.run(source, out, direct=True, concurrency=4))
        message = str(info.value)
        assert "401" in message or "key" in message.lower(), message
        assert not out.exists()
        assert sum(server.answers.values()) == 10
        first = {prompt for prompt, count in server.answers.items() if count}
        server.expire_key_after = None  # a good key again
        report = _within(15, lambda: client.run(source, out, direct=True, concurrency=4))
    assert report.succeeded == 40 and report.failed == 0 and _output_ids(out) == ids
    assert _questions(server, ids) == {c: 1 for c in ids}  # the first 10 were kept, not resent
    assert all(server.seen[prompt] == 1 for prompt in first)


@pytest.mark.parametrize("status", [302, 307])
def test_run_direct_takes_a_redirect_on_a_post_for_a_wrong_address(
    tmp_path: Any, status: int
) -> None:
    """Issue 16, addresses: a base URL that redirects made every answer a final 302. A
    redirect on a POST is not an answer: the run stops, as for a wrong address."""
    source = _job_input(tmp_path, 20)
    out = tmp_path / "out.jsonl"
    with ChatServer(latency=0.002).serve() as server:
        server.redirect_to = server.base_url.replace("http:", "https:") + "/chat/completions"
        server.redirect_status = status
        client = _direct_client(server, speed=200)
        with raises(ob.OpenAIError):
            _within(15, lambda: client.run(source, out, direct=True, concurrency=4))
        assert not out.exists() and server.redirected > 0 and server.seen == {}
        server.redirect_to = None  # the address put right: nothing was final, all go again
        report = _within(15, lambda: client.run(source, out, direct=True, concurrency=4))
    assert report.succeeded == 20 and _output_ids(out) == [f"q{i}" for i in range(20)]
    assert server.seen == {f"question {i}": 1 for i in range(20)}


def test_run_direct_keeps_an_unpaired_surrogate_a_server_sent_as_an_escape(
    tmp_path: Any,
) -> None:
    """A server's answer may hold "\\ud800", which UTF-8 cannot hold as text: the line keeps
    it an escape, as it came, rather than stopping the round on a UnicodeEncodeError."""
    source = _job_input(tmp_path, 3)
    out = tmp_path / "out.jsonl"
    body = b'{"id": "chatcmpl-1", "object": "chat.completion",\n "note": "\\ud800 half"}'
    with ChatServer().serve() as server:
        server.garbled = {"question 1": body}  # on two lines: written anew, not spliced
        report = _direct_client(server).run(source, out, direct=True)
    assert report.ok and report.succeeded == 3
    raw = out.read_bytes().splitlines()[1]
    assert b'"note":"\\ud800 half"' in raw
    assert [r.body["note"] for r in ob.iter_results(out) if r.custom_id == "q1"] == ["\ud800 half"]


def test_run_direct_writes_no_401_when_a_success_comes_back_after_the_key_expired(
    tmp_path: Any,
) -> None:
    """Review: a success in flight when the key expired came back after the stop, and let
    the 401s kept back be written as final; a rerun with a good key then never sent them."""
    source = _job_input(tmp_path, 12)
    out = tmp_path / "out.jsonl"
    with ChatServer(latency=0.01).serve() as server:
        server.expire_key_after = 2
        server.slow = {"question 0": 0.3}  # admitted with the key good, answered late
        client = _direct_client(server, speed=10)
        with raises(ob.JobStoppedError) as info:
            _within(20, lambda: client.run(source, out, direct=True, concurrency=4))
        assert info.value.reason == "credentials" and not out.exists()
        kept = _json_lines(f"{out}.job/answers.jsonl")
        assert kept and all(line["response"]["status_code"] == 200 for line in kept)
        server.expire_key_after, server.slow = None, {}
        report = _within(20, lambda: client.run(source, out, direct=True, concurrency=4))
    assert report.ok and report.succeeded == 12
    done = {line["custom_id"] for line in kept}
    assert all(server.answers[f"question {c[1:]}"] == 1 for c in done)  # not sent again


@pytest.mark.parametrize("kind", ["drop", "502"])
def test_run_direct_waits_out_a_server_that_goes_down_and_comes_back(
    tmp_path: Any, kind: str
) -> None:
    """Review: a server that went down just after answering (or whose gateway answered 502
    to everything while it restarted) had most of the job written off as failures that a
    rerun would not send. A failure is a request's own only when the server is seen at work:
    a success since it was sent, or a probe answered; else the round holds and waits."""
    source = _job_input(tmp_path, 120)
    out = tmp_path / "out.jsonl"
    with ChatServer(latency=0.005).serve() as server:
        server.down_after, server.down_for, server.down_kind = 30, 20.0, kind
        client = _direct_client(server, speed=20, max_retries=1)
        report = _within(30, lambda: client.run(source, out, direct=True, concurrency=8))
    assert report.ok and report.succeeded == 120 and report.rounds == 1
    assert server.down_since is not None  # it was down, for 20 s on the job's clock
    assert all(count == 1 for count in server.answers.values()) and len(server.answers) == 120


def test_run_direct_stops_when_the_account_is_out_of_quota(tmp_path: Any) -> None:
    """Review: every request refused 429 insufficient_quota was written off, each "larger
    than your tokens-per-minute limit"; the account, not the requests, is the matter."""
    source = _job_input(tmp_path, 10)
    out = tmp_path / "out.jsonl"
    with ChatServer().serve() as server:
        server.quota = True
        client = _direct_client(server)
        with raises(ob.JobStoppedError) as info:
            _within(15, lambda: client.run(source, out, direct=True))
        assert info.value.reason == "quota" and "out of quota" in str(info.value)
        assert not out.exists()
        server.quota = False
        assert _within(15, lambda: client.run(source, out, direct=True)).succeeded == 10


def test_cli_run_says_why_a_job_stopped_and_what_next(tmp_path: Any) -> None:
    """A stopped job: with --json, a last event with the reason; on stderr, what happened
    and the next command; exit 1, and RESULTS not written."""
    source = _job_input(tmp_path, 4)
    out = tmp_path / "out.jsonl"
    with ChatServer().serve() as server:
        server.quota = True
        client = _direct_client(server)
        ran = cli(client, "run", source, "-o", str(out), "--direct", "--json")
    stopped = json.loads(ran.out.splitlines()[-1])
    assert (stopped["event"], stopped["reason"]) == ("stopped", "quota") and ran.code == 1
    assert ran.err.splitlines()[-1] == (
        "hint: add credit to the account, then run the same command again"
    )
    assert ran.err.startswith("error: the account is out of quota") and not out.exists()


def test_run_direct_writes_a_requests_own_404_when_it_comes_first(tmp_path: Any) -> None:
    """Review: at concurrency 1, three requests naming a model the server lacks came first
    and stopped every run as "the wrong address", for ever. A probe with the same key that
    works says the address is right: they are the requests' own failures."""
    source = _job_input(tmp_path, 8)
    out = tmp_path / "out.jsonl"
    with ChatServer().serve() as server:
        server.missing = {"question 0", "question 1", "question 2"}
        client = _direct_client(server)
        report = _within(15, lambda: client.run(source, out, direct=True, concurrency=1))
    assert (report.succeeded, report.failed, report.failures) == (5, 3, {"HTTP 404": 3})
    assert [server.seen[f"question {i}"] for i in range(3)] == [1, 1, 1]


def test_run_direct_counts_a_200_that_is_not_a_response_as_a_failure(tmp_path: Any) -> None:
    """Issue 16: a 200 with an HTML page, or with a JSON error object, counted as a success
    and the run exited 0."""
    source = _job_input(tmp_path, 40)
    out = tmp_path / "out.jsonl"
    odd = {3: "html", 17: "html", 21: "json_error", 33: "json_error", 38: "json_error"}
    with ChatServer(latency=0.002).serve() as server:
        server.html = {f"question {i}" for i, kind in odd.items() if kind == "html"}
        server.json_error = {f"question {i}" for i, kind in odd.items() if kind == "json_error"}
        client = _direct_client(server, speed=200, max_retries=1)
        report = _within(15, lambda: client.run(source, out, direct=True, rounds=2))
        ran = _within(10, lambda: cli(client, "run", source, "-o", str(out), "--direct"), "run")
    assert report.failed == len(odd) and report.succeeded == 40 - len(odd), report.failures
    lines = _json_lines(out)
    assert [i for i, line in enumerate(lines) if line["error"]] == sorted(odd)
    assert all(lines[i]["error"]["code"] == "invalid_response" for i in odd), lines[3]
    assert ran.code == 1


def test_run_direct_stops_when_the_base_url_is_a_web_page(tmp_path: Any) -> None:
    """Issue 16: when every answer is a 200 with an HTML page (the base URL is a web site),
    the address is wrong: the run stops as it does on 404s, and writes nothing as final."""
    source = _job_input(tmp_path, 20)
    out = tmp_path / "out.jsonl"
    with ChatServer(latency=0.002).serve() as server:
        server.web_page = True
        client = _direct_client(server, speed=200)
        with raises(ob.OpenAIError):
            _within(15, lambda: client.run(source, out, direct=True, concurrency=4))
        assert not out.exists()
        server.web_page = False
        report = _within(15, lambda: client.run(source, out, direct=True, concurrency=4))
    assert report.succeeded == 20
    assert _questions(server, [f"q{i}" for i in range(20)]) == {f"q{i}": 1 for i in range(20)}


# ---------------------------------------------------------------- The client


def test_a_timeout_object_is_taken_by_the_client_with_options_and_a_call(api: FakeAPI) -> None:
    """Issue 17, item 5: `OpenAI(timeout=httpx.Timeout(60, connect=5))`, duck-typed."""
    api.add_batch(id="batch_1")
    client = make_client(api, timeout=_Phases(5, 60, 30, None))
    assert client.timeout == ob.Timeout(connect=5.0, read=60.0, write=30.0, pool=None)
    assert repr(client).endswith(
        "timeout=Timeout(connect=5.0, read=60.0, write=30.0, pool=None), max_retries=2)"
    )
    assert client.batches.retrieve("batch_1", timeout=_Phases(1, 2)).id == "batch_1"
    assert client.with_options(timeout=_Phases(1, 2)).timeout == ob.Timeout(5, connect=1, read=2)
    assert client.with_options(max_retries=0).timeout == client.timeout
    assert make_client(api, timeout=ob.Timeout(None)).timeout == ob.Timeout(None)
    with raises(ValueError) as info:
        make_client(api, timeout=_Phases(0, 60))
    assert str(info.value) == "timeout.connect must be seconds from 0 to 604800, or None, not 0"
    with raises(ValueError) as info:
        client.batches.retrieve("batch_1", timeout=_Phases(5, "soon"))
    assert str(info.value) == "timeout.read must be seconds from 0 to 604800, or None, not 'soon'"


def test_not_given_and_omit_are_the_official_sentinels(client: Client, api: FakeAPI) -> None:
    assert not ob.NOT_GIVEN and isinstance(ob.NOT_GIVEN, ob.NotGiven)
    assert repr(ob.NOT_GIVEN) == "NOT_GIVEN" and not ob.Omit()
    api.add_batch(id="batch_1", status="completed")
    unset = ob.NOT_GIVEN
    page = client.batches.list(after=unset, limit=unset, extra_headers=unset, timeout=unset)
    assert [batch.id for batch in page] == ["batch_1"]
    assert api.requests[-1].query == {}
    client.files.list(after=unset, limit=unset, purpose=unset, timeout=unset)
    assert api.requests[-1].query == {}
    file_id = _seeded_file(api)
    made = client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        metadata=unset,
        output_expires_after=unset,
        idempotency_key=unset,
        extra_headers=unset,
        extra_body=unset,
        timeout=unset,
    )
    assert made.status == "validating"
    client.batches.retrieve("batch_1", extra_headers={"User-Agent": ob.Omit()}, timeout=unset)
    assert "user-agent" not in api.requests[-1].headers
    assert make_client(api, timeout=unset).timeout == ob.DEFAULT_TIMEOUT
    assert client.with_options(timeout=unset).timeout == client.timeout
    assert client.batches.wait("batch_1", timeout=unset).status == "completed"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_ORG_ID", "org-env")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://example.invalid/v1/")
    client = ob.OpenAI()
    assert (client.organization, client.project) == ("org-env", "proj-env")
    assert client.base_url == "http://example.invalid/v1/"  # as the official client reads it
    assert repr(client) == (
        "Client(base_url='http://example.invalid/v1/', organization='org-env', "
        "project='proj-env', timeout=600.0, max_retries=2)"
    )
    assert ob.OpenAI is ob.Client
    assert ob.Client(organization="org-arg").organization == "org-arg"


def test_a_missing_key_is_an_error_naming_the_variable() -> None:
    with raises(ob.OpenAIError) as info:
        ob.Client()
    assert str(info.value) == (
        "The api_key client option must be set either by passing api_key to the client or by "
        "setting the OPENAI_API_KEY environment variable"
    )


def test_a_key_that_cannot_be_sent_is_refused_without_showing_it() -> None:
    with raises(ob.OpenAIError) as info:
        ob.Client(api_key=API_KEY[:10] + "\u2019" + API_KEY[10:])
    assert str(info.value) == (
        "The API key has a character that cannot be sent in an HTTP header (position 11 of 33); "
        "check how it was copied."
    )
    assert ob.Client(api_key=f"  {API_KEY}\n").api_key == API_KEY


def test_a_base_url_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    with raises(
        ob.OpenAIError, match=r"^base_url must be an http:// or https:// URL, not 'ftp://x'$"
    ):
        ob.Client(api_key=API_KEY, base_url="ftp://x")


def test_with_options_changes_only_what_it_is_given(client: Client, api: FakeAPI) -> None:
    other = client.with_options(timeout=5, max_retries=0)
    assert (other.timeout, other.max_retries, other.base_url) == (5.0, 0, client.base_url)
    assert other.api_key == client.api_key and client.copy(project="p").project == "p"
    api.arm("GET", r"/v1/batches/b", Fault.error(500))
    with raises(ob.InternalServerError):
        other.batches.retrieve("b")
    assert api.clock.sleeps == []


def test_credentials_in_the_base_url_are_refused_without_showing_them() -> None:
    with raises(ob.OpenAIError) as info:
        Client(api_key=API_KEY, base_url="https://alice:hunter2@gateway.example/v1")
    assert str(info.value) == (
        "base_url for gateway.example holds a user name or password, which this client does "
        "not send; put credentials in default_headers instead"
    )


def test_settings_that_cannot_work_are_refused_without_showing_them() -> None:
    with raises(ValueError) as info:
        Client(api_key=API_KEY, default_headers={"X-Api-Key": "gw-0123456789\n"})
    assert str(info.value) == (
        "The X-Api-Key header has a character that cannot be sent in HTTP (position 14 of 14); "
        "check how it was copied."
    )
    for timeout in (float("inf"), 1e10, 0, -1):
        with raises(ValueError, match="timeout must be seconds from 0 to 604800, or None"):
            Client(api_key=API_KEY, timeout=timeout)
    with raises(ValueError, match="max_retries must be 0 or more"):
        Client(api_key=API_KEY, max_retries=-1)


def test_client_level_with_raw_response_and_a_full_headers_mapping(
    client: Client, api: FakeAPI
) -> None:
    """Issue 17, item 6: `client.with_raw_response.batches...`; `raw.headers` reads as a
    read-only mapping in any case; `raw.http_response` as httpx's response; no key in any."""
    sent = api.add_batch(status="completed")
    raw = client.with_raw_response.batches.retrieve(sent["id"])
    assert raw.parse().id == sent["id"] and raw.status_code == 200
    headers = dict(raw.headers)
    assert headers == dict(raw.headers.items()) and list(headers) == raw.headers.keys()
    assert headers["content-type"].startswith("application/json")
    assert raw.headers.get("CONTENT-TYPE") == headers["content-type"] == raw.headers["Content-Type"]
    assert raw.headers.get("nope", "x") == "x" and "X-REQUEST-ID" in raw.headers
    with pytest.raises(TypeError):
        raw.headers["x-request-id"] = "mine"  # type: ignore[index]
    http = raw.http_response
    assert (http.status_code, http.url, http.request.method) == (200, raw.url, "GET")
    assert http.headers == raw.headers and json.loads(http.content)["id"] == sent["id"]
    assert client.with_raw_response.models.list().parse().data
    file_id = _seeded_file(api)
    assert client.with_raw_response.files.content(file_id).content == api.contents[file_id]
    assert client.with_raw_response.webhooks.list().parse().data == []  # as officially, now
    with pytest.raises(AttributeError, match="with_raw_response has no 'chat'"):
        client.with_raw_response.chat  # noqa: B018
    seen = repr(raw) + repr(http) + repr(vars(raw)) + repr(vars(http)) + repr(headers)
    assert API_KEY not in seen and API_KEY not in repr(client.with_raw_response)


def test_an_api_key_callable_is_asked_before_every_try(api: FakeAPI) -> None:
    """Issue 17, item 15: as the official client's `api_key` callable."""
    asked: list[int] = []

    def key() -> str:
        asked.append(1)
        return API_KEY

    client = make_client(api, api_key=key)
    assert client.api_key == ""  # as the official client: nothing asked before a request
    api.add_batch(id="batch_1")
    api.arm("GET", r"/v1/batches/batch_1", Fault.error(500))
    client.batches.retrieve("batch_1")
    assert len(asked) == 2 and client.api_key == API_KEY
    assert api.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"
    client.with_options(max_retries=0).batches.retrieve("batch_1")  # the copy keeps asking
    assert len(asked) == 3
    empty = make_client(api, api_key=lambda: "")
    with raises(ob.OpenAIError, match=r"^Expected the `api_key` callable to return a non-emp"):
        empty.batches.retrieve("batch_1")


def test_copy_adds_default_headers_and_query_and_set_default_replaces_them(api: FakeAPI) -> None:
    """Issue 17, item 15: the official copy()'s set_default_headers and set_default_query."""
    client = make_client(api, default_headers={"X-A": "1"}, default_query={"a": "1"})
    added = client.copy(default_headers={"X-B": "2"}, default_query={"b": "2"})
    assert added.default_headers == {"X-A": "1", "X-B": "2"}
    assert added.default_query == {"a": "1", "b": "2"}
    replaced = client.with_options(set_default_headers={"X-B": "2"}, set_default_query={})
    assert (replaced.default_headers, replaced.default_query) == ({"X-B": "2"}, {})
    api.add_batch(id="batch_1")
    replaced.batches.retrieve("batch_1")
    assert "x-a" not in api.requests[-1].headers and api.requests[-1].query == {}
    for what in ("headers", "query"):
        with raises(
            ValueError,
            match=rf"^The `default_{what}` and `set_default_{what}` arguments are mutually "
            "exclusive$",
        ):
            client.copy(**{f"default_{what}": {}, f"set_default_{what}": {}})


def test_extra_body_is_taken_by_every_call_and_sent_where_a_body_goes(
    client: Client, api: FakeAPI
) -> None:
    """Issue 17, item 15: as the official client, a GET drops extra_body; a DELETE sends it."""
    api.add_batch(id="batch_1")
    file_id = _seeded_file(api)
    extra = {"x": 1}
    client.batches.retrieve("batch_1", extra_body=extra)
    client.batches.list(extra_body=extra)
    client.files.retrieve(file_id, extra_body=extra)
    client.files.list(extra_body=extra)
    client.files.content(file_id, extra_body=extra).read()
    client.models.list(extra_body=extra)
    assert [r.body for r in api.requests] == [b""] * 6
    client.files.delete(file_id, extra_body=extra)
    assert json.loads(api.requests[-1].body) == extra


def test_a_closed_client_says_so_and_sends_nothing_more(api: FakeAPI) -> None:
    """Issue 17, item 15: is_closed(), and httpx's refusal after close()."""
    api.add_batch(id="batch_1")
    with make_client(api) as client:
        assert not client.is_closed()
        client.batches.retrieve("batch_1")
    assert client.is_closed()
    with raises(RuntimeError, match=r"^Cannot send a request, as the client has been closed\.$"):
        client.batches.retrieve("batch_1")
    assert len(api.requests) == 1


@pytest.mark.parametrize("given", ["http://h:1/v1", "http://h:1/v1/", "http://h:1"])
def test_base_url_reads_back_with_a_trailing_slash(given: str) -> None:
    """Issue 17, item 15: str(client.base_url) is the official client's."""
    client = Client(api_key=API_KEY, base_url=given)
    assert str(client.base_url) == given.rstrip("/") + "/"
    assert client.with_options(timeout=5).base_url == client.base_url


def test_a_base_url_joins_paths_without_a_double_slash(api: FakeAPI) -> None:
    api.add_batch(id="batch_1")
    make_client(api, base_url=api.base_url + "/").batches.retrieve("batch_1")
    assert api.requests[-1].path == "/v1/batches/batch_1"


def test_openai_custom_headers_go_under_default_headers(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17, item 16: OPENAI_CUSTOM_HEADERS, "Name: value" a line, as officially read."""
    monkeypatch.setenv(
        "OPENAI_CUSTOM_HEADERS", "X-Team:  search \nno colon here\nX-Both: env\r\nX-Url: a:b\n"
    )
    client = make_client(api, default_headers={"X-Both": "given"})
    client.models.list()
    sent = api.requests[-1].headers
    assert (sent["x-team"], sent["x-both"], sent["x-url"]) == ("search", "given", "a:b")
    assert client.default_headers == {"X-Team": "search", "X-Both": "given", "X-Url": "a:b"}
    client.with_options(default_headers={"X-Team": "other"}).models.list()
    assert api.requests[-1].headers["x-team"] == "other"
    # A gateway's credential given there replaces the key's, unless default_headers has one.
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", f"Authorization: Bearer {API_KEY}")
    make_client(api, api_key="sk-replaced-by-the-custom-header").files.list()
    assert api.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"
    own = {"authorization": "Bearer sk-given-in-default-headers"}
    with raises(ob.AuthenticationError):
        make_client(api, default_headers=own, max_retries=0).files.list()
    assert api.requests[-1].headers["authorization"] == own["authorization"]


def test_timeout_and_sentinels_agree_with_the_official_package(api: FakeAPI) -> None:
    openai = _official()
    theirs, ours = openai.Timeout(60, connect=5), ob.Timeout(60, connect=5)
    assert repr(ours) == repr(theirs)
    phases = ("connect", "read", "write", "pool")
    assert [getattr(ours, name) for name in phases] == [getattr(theirs, name) for name in phases]
    client = make_client(api, timeout=theirs)
    assert client.timeout == ob.Timeout(60.0, connect=5.0)
    assert (repr(ob.NOT_GIVEN), bool(ob.NOT_GIVEN)) == (repr(openai.NOT_GIVEN), False)
    assert bool(ob.Omit()) is bool(openai.Omit()) is False


def test_openai_custom_headers_agree_with_the_official_package(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai = _official()
    names = ("x-team", "x-both", "x-url", "x-other", "authorization")

    def sent(client: Any, **options: Any) -> dict[str, str]:
        client.models.list()
        headers = api.requests[-1].headers
        return {name: headers[name] for name in names if name in headers}

    def script(package: Any) -> list[Any]:
        seen = []
        for env, given in [
            ("X-Team:  search \nno colon\nX-Both: env\r\nX-Url: a:b\n", {"X-Both": "given"}),
            (f"Authorization: Bearer {API_KEY}", {}),
            (
                f"Authorization: Bearer {API_KEY}\nX-Other: 1",
                {"authorization": f"Bearer {API_KEY}"},
            ),
        ]:
            monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", env)
            key = "sk-replaced-by-the-custom-header" if not given else API_KEY
            client = package.OpenAI(api_key=key, base_url=api.base_url, max_retries=0,
                                    default_headers=given)  # fmt: skip
            seen.append(sent(client))
            seen.append(sent(client.with_options(default_headers={"X-Team": "other"})))
        return seen

    assert script(ob) == script(openai)


def test_the_small_differences_agree_with_the_official_package(api: FakeAPI) -> None:
    """Issue 17, item 15, side by side: a key callable, copy's set_default_headers, extra_body
    on a GET, a numeric error code, base_url's slash and is_closed()."""
    openai = _official()
    api.add_batch(id="batch_1")

    def run(package: Any) -> dict[str, Any]:
        keys: list[str] = []
        client = package.OpenAI(
            api_key=lambda: keys.append(API_KEY) or API_KEY,
            base_url=api.base_url,
            default_headers={"X-A": "1"},
            max_retries=0,
        )
        seen: dict[str, Any] = {"key before": client.api_key, "base_url": str(client.base_url)}
        copy = client.copy(set_default_headers={"X-B": "2"})
        copy.batches.retrieve("batch_1", extra_body={"x": 1})
        sent = api.requests[-1]
        seen["sent"] = ("x-a" in sent.headers, sent.headers.get("x-b"), sent.body)
        seen["keys"], seen["key after"] = len(keys), copy.api_key
        with pytest.raises(ValueError) as both:
            client.copy(default_headers={}, set_default_headers={})
        seen["both"] = str(both.value)
        api.arm(
            "GET", r"/v1/batches/b", Fault.raw(400, b'{"error": {"code": 7}}', "application/json")
        )
        with pytest.raises(package.BadRequestError) as refused:
            client.batches.retrieve("b")
        seen["code"] = refused.value.code
        seen["closed"] = [client.is_closed()]
        client.close()
        seen["closed"].append(client.is_closed())
        with pytest.raises(RuntimeError) as after:
            client.batches.retrieve("batch_1")
        seen["after close"] = str(after.value)
        return seen

    ours = run(ob)
    assert ours == run(openai)
    assert ours["sent"] == (False, "2", b"") and ours["code"] == "7"


# ---------------------------------------------------------------- Azure OpenAI


def test_azure_sends_every_request_to_openai_paths_with_its_api_version_and_key(
    api: FakeAPI, tmp_path: Any
) -> None:
    client = make_azure(api, azure_deployment="gpt-4o-mini-batch")
    api.seconds_validating = api.seconds_per_request = api.seconds_finalizing = 0.0
    api.add_batch(status="completed")
    api.add_batch(status="failed")
    batch = client.submit(chat_requests(3), endpoint="/v1/chat/completions")
    done = client.batches.wait(batch.id)
    assert sorted(r.custom_id for r in client.results(done)) == ["q0", "q1", "q2"]
    assert len(list(client.batches.list(limit=1))) == 3  # three pages, one batch each
    assert [f.id for f in client.files.list()] and client.files.delete(done.output_file_id)
    assert len(api.requests) > 8
    for request in api.requests:
        assert request.path.startswith("/openai/") and "/deployments/" not in request.path
        assert request.query["api-version"] == AZURE_VERSION
        assert request.headers["api-key"] == API_KEY and "authorization" not in request.headers
    pages = [r.query for r in api.requests if r.path == "/openai/batches" and r.method == "GET"]
    assert [query.get("after") is not None for query in pages[-3:]] == [False, True, True]


def test_azure_finds_a_lost_create_with_its_api_version(api: FakeAPI) -> None:
    client = make_azure(api)
    file_id = _seeded_file(api)
    api.arm("POST", r"/openai/batches", Fault.lose_response())
    batch = client.batches.create(input_file_id=file_id, endpoint="/chat/completions")
    assert _live(api) == [batch.id]
    lookups = [r for r in api.requests if r.method == "GET" and r.path == "/openai/batches"]
    assert lookups and all(r.query["api-version"] == AZURE_VERSION for r in lookups)


def test_azure_asks_the_token_provider_for_every_request(api: FakeAPI) -> None:
    tokens = iter(f"entra-token-{n}" for n in range(100))
    api.azure_tokens = {f"entra-token-{n}" for n in range(100)}
    client = make_azure(api, azure_ad_token_provider=lambda: next(tokens))
    api.add_batch(status="completed")
    batch_id = next(iter(api.batches))
    client.batches.retrieve(batch_id)
    client.batches.retrieve(batch_id)
    sent = [r.headers["authorization"] for r in api.requests]
    assert sent == ["Bearer entra-token-0", "Bearer entra-token-1"]
    assert all("api-key" not in r.headers for r in api.requests)
    fixed = make_azure(api, azure_ad_token="entra-token-50")
    assert fixed.batches.retrieve(batch_id).id == batch_id
    assert api.requests[-1].headers["authorization"] == "Bearer entra-token-50"
    with raises(ValueError) as info:  # as the official client raises it
        make_azure(api, azure_ad_token_provider=lambda: "").batches.retrieve(batch_id)
    assert str(info.value) == (
        "Expected `azure_ad_token_provider` argument to return a non-empty string."
    )


def test_azure_asks_the_token_provider_again_for_a_retry(api: FakeAPI) -> None:
    """Each try has its own headers, as in the official package: a retry after a token ran
    out gets a fresh one. A download's retries too."""
    tokens = iter(f"entra-token-{n}" for n in range(100))
    api.azure_tokens = {f"entra-token-{n}" for n in range(100)}
    client = make_azure(api, azure_ad_token_provider=lambda: next(tokens))
    file_id = _seeded_file(api)
    api.arm("GET", r"/openai/files/[^/]+", Fault.error(500), Fault.error(503))
    api.arm("GET", r"/openai/files/[^/]+/content", Fault.error(500))
    assert client.files.retrieve(file_id).id == file_id
    with client.files.content(file_id) as body:
        assert body.read()
    sent = [r.headers["authorization"] for r in api.requests]
    assert sent == [f"Bearer entra-token-{n}" for n in range(5)]


def test_azure_reads_its_settings_from_the_environment_as_the_official_client_does(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.azure_version = AZURE_VERSION
    api.add_batch(status="completed")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", api.endpoint + "/")
    monkeypatch.setenv("OPENAI_API_VERSION", AZURE_VERSION)
    client = ob.AzureOpenAI()
    assert client.base_url == api.endpoint + "/openai/"
    assert [b.id for b in client.batches.list()] == list(api.batches)
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", "entra-token-7")  # it wins over the key
    api.azure_tokens = {"entra-token-7"}
    assert [b.id for b in ob.AzureOpenAI().batches.list()] == list(api.batches)
    assert "api-key" not in api.requests[-1].headers
    again = client.with_options(max_retries=0)  # the key, endpoint and version are kept
    assert isinstance(again, ob.AzureOpenAI) and again.batches.list().data


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"api_key": "k", "azure_ad_token": "t"},
            "The `api_key`, `azure_ad_token` and `azure_ad_token_provider` arguments are "
            "mutually exclusive; only one can be passed at a time",
        ),
        (
            {},
            "Missing credentials. Please pass one of `api_key`, `azure_ad_token`, "
            "`azure_ad_token_provider`, or the `AZURE_OPENAI_API_KEY` or "
            "`AZURE_OPENAI_AD_TOKEN` environment variables.",
        ),
        (
            {"api_key": "k"},
            "Must provide either the `api_version` argument or the `OPENAI_API_VERSION` "
            "environment variable",
        ),
        (
            {"api_key": "k", "api_version": "v"},
            "Must provide one of the `base_url` or `azure_endpoint` arguments, or the "
            "`AZURE_OPENAI_ENDPOINT` environment variable",
        ),
        (
            {"api_key": "k", "api_version": "v", "base_url": "https://a", "azure_endpoint": "x"},
            "base_url and azure_endpoint are mutually exclusive",
        ),
    ],
)
def test_azure_says_what_it_is_missing(options: dict[str, Any], message: str) -> None:
    # The official client's classes: OpenAIError for credentials, ValueError for the rest.
    kind = ob.OpenAIError if "credentials" in message or "exclusive;" in message else ValueError
    with raises(kind) as info:
        ob.AzureOpenAI(**options)
    assert str(info.value) == message


def test_azure_errors_are_the_same_exceptions(api: FakeAPI) -> None:
    client = make_azure(api, max_retries=0)
    with raises(ob.NotFoundError) as info:
        client.batches.retrieve("batch_nope")
    assert (info.value.status_code, info.value.code) == (404, "404")
    assert info.value.message == "Error code: 404 - No batch found with id 'batch_nope'."
    wrong = make_azure(api, api_key="sk-wrong-key-0000", max_retries=0)
    with raises(ob.AuthenticationError) as info:
        wrong.batches.list()
    assert "Access denied due to invalid subscription key" in str(info.value)
    assert "sk-wrong-key-0000" not in repr(wrong) + str(info.value) + repr(info.value.body)
    api.azure_version = AZURE_VERSION
    bare = make_client(api, base_url=api.endpoint + "/openai", max_retries=0)  # no api-version
    with raises(ob.BadRequestError) as info:
        bare.batches.list()
    assert info.value.code == "MissingApiVersionParameter"


def test_validate_by_azure_rules(tmp_path: Any) -> None:
    bare = [request_line(f"r{i}", url="/chat/completions") for i in range(2)]
    path = write_lines(tmp_path / "bare.jsonl", bare)
    summary = ob.validate_input(path, provider="azure")
    assert (summary.endpoint, summary.requests) == ("/chat/completions", 2)
    with raises(ob.InputFileError) as info:
        ob.validate_input(path)  # OpenAI wants /v1
    assert 'url "/chat/completions" is not a batch endpoint' in str(info.value)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "bare.jsonl").read_bytes())
    with raises(ob.InputFileError) as info:
        ob.validate_input(bom, provider="azure")
    assert info.value.problems == [
        (
            1,
            "the file starts with a UTF-8 byte-order mark (BOM), which Azure OpenAI refuses; "
            "save it as UTF-8 without a BOM",
        )
    ]
    many = tmp_path / "many.jsonl"
    ob.write_jsonl(many, (BatchRequest.chat(f"r{i}", "m", "hi") for i in range(50_001)))
    assert ob.validate_input(many, provider="azure").requests == 50_001  # Azure: 100,000
    with raises(ob.InputFileError):
        ob.validate_input(many)
    no_model = write_lines(
        tmp_path / "nomodel.jsonl",
        [request_line("a", body={"messages": []}, url="/chat/completions")],
    )
    with raises(ob.InputFileError) as info:
        ob.validate_input(no_model, provider="azure")
    assert "body has no model (on Azure OpenAI, the name of a global-batch deployment)" in str(
        info.value
    )
    with raises(ValueError):
        ob.validate_input(path, provider="bedrock")


def test_cli_talks_to_azure_when_its_endpoint_is_set(api: FakeAPI, tmp_path: Any) -> None:
    api.azure_version = AZURE_VERSION
    api.add_batch(id="batch_on_azure", status="completed")
    env = {
        "AZURE_OPENAI_ENDPOINT": api.endpoint,
        "AZURE_OPENAI_API_KEY": API_KEY,
        "OPENAI_API_VERSION": AZURE_VERSION,
    }
    listed = _module("list", **env)
    assert listed.returncode == 0 and listed.stdout.startswith("batch_on_azure\tcompleted")
    assert api.requests[-1].path == "/openai/batches"
    bare = write_lines(tmp_path / "bare.jsonl", [request_line("r", url="/chat/completions")])
    checked = _module("validate", bare, **env)
    assert checked.returncode == 0, checked.stderr
    refused = _module("validate", bare)  # without Azure, OpenAI's rules
    assert refused.returncode == 1 and "not a batch endpoint" in refused.stderr
    flagged = _module("validate", bare, "--azure")
    assert flagged.returncode == 0, flagged.stderr
    early = _module(
        "create",
        "--input-file-id",
        "file-x",
        "--endpoint",
        "/chat/completions",
        "--output-expires-after",
        "3600",
        **env,
    )
    assert early.returncode == 2 and early.stderr.strip().endswith(
        "--output-expires-after must be from 1,209,600 to 2,592,000 seconds on Azure OpenAI, "
        "not 3,600"
    )


def test_an_azure_api_key_callable_goes_in_the_api_key_header(api: FakeAPI) -> None:
    api.azure_version = AZURE_VERSION
    api.add_batch(id="batch_1")
    client = ob.AzureOpenAI(
        api_key=lambda: API_KEY, azure_endpoint=api.endpoint, api_version=AZURE_VERSION
    )
    client.batches.retrieve("batch_1")
    assert api.requests[-1].headers["api-key"] == API_KEY
    client.with_options(timeout=5).batches.retrieve("batch_1")
    assert api.requests[-1].headers["api-key"] == API_KEY


def test_the_module_client_is_azure_s_when_azure_settings_are_at_hand(
    api: FakeAPI, module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.azure_version = AZURE_VERSION
    api.add_batch(id="batch_1")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_API_VERSION", AZURE_VERSION)
    module.azure_endpoint, module.max_retries = api.endpoint, 0
    assert module.batches.retrieve("batch_1").id == "batch_1"
    assert api.requests[-1].headers["api-key"] == API_KEY
    assert (module.api_type, module.api_version) == ("azure", AZURE_VERSION)
    assert isinstance(module._module_client(), ob.AzureOpenAI)


def test_cli_on_azure_says_which_setting_is_missing(api: FakeAPI) -> None:
    ran = _module("models", AZURE_OPENAI_ENDPOINT=api.endpoint, AZURE_OPENAI_API_KEY=API_KEY)
    assert ran.returncode == 2 and ran.stderr.splitlines()[-1] == (
        "hint: export OPENAI_API_VERSION=2024-10-21 (the Azure OpenAI API version to use)"
    )
    ran = _module("models", AZURE_OPENAI_ENDPOINT=api.endpoint, OPENAI_API_VERSION="v")
    assert ran.returncode == 1 and "AZURE_OPENAI_AD_TOKEN, or --api-key" in ran.stderr


# ---------------------------------------------------------------- Async


def test_the_async_client_level_with_raw_response_is_awaited(api: FakeAPI) -> None:
    """Issue 17, item 6, awaited; the client-level streaming view too (review, item 1)."""
    import asyncio

    sent = api.add_batch(status="completed")

    async def main() -> Any:
        async with ob.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url) as client:
            async with client.with_streaming_response.batches.retrieve(sent["id"]) as streamed:
                assert (await streamed.parse()).id == sent["id"]
            with pytest.raises(AttributeError):
                client.with_streaming_response.jobs  # noqa: B018
            return await client.with_raw_response.batches.retrieve(sent["id"])

    raw = asyncio.run(main())
    assert (raw.status_code, raw.parse().id, raw.http_response.status_code) == (
        200,
        sent["id"],
        200,
    )


def test_async_pages_agree_with_the_official_package(api: FakeAPI) -> None:
    """Issue 17, item 1: `async for` over three pages and more, and pages awaited one by one,
    give the same items from the same requests as the official async client."""
    openai = _official()
    import asyncio

    for _ in range(4):
        api.add_batch(status="completed")
    for n in range(5):
        api.add_file(b"{}\n", filename=f"in{n}.jsonl")

    async def script(client: Any) -> Any:
        batches = [b.id async for b in client.batches.list(limit=1)]
        files = [f.id async for f in client.files.list(limit=2)]
        page = await client.batches.list(limit=3)
        pages = [([b.id for b in page.data], page.has_next_page())]
        while page.has_next_page():
            page = await page.get_next_page()
            pages.append(([b.id for b in page.data], page.has_next_page()))
        return batches, files, pages

    def run(client: Any) -> tuple[Any, list[tuple[str, str, dict[str, str]]]]:
        del api.requests[:]
        seen = asyncio.run(script(client))
        return seen, [(r.method, r.path, dict(r.query)) for r in api.requests]

    theirs = run(openai.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0))
    ours = run(ob.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0))
    assert ours == theirs
    assert len(theirs[0][0]) == 4 and len(theirs[0][2]) == 2


async def _read_async_content(client: Any, file_id: str) -> dict[str, Any]:
    """Every way to read an async file's content, as the official async content offers: its
    `aiter_*` are coroutines that return the iterator, hence `async for ... in await`."""
    content = await client.files.content(file_id)
    return {
        "aread": await content.aread(),
        "bytes": [chunk async for chunk in await content.aiter_bytes()],
        "bytes by 7": [chunk async for chunk in await content.aiter_bytes(7)],
        "text": [chunk async for chunk in await content.aiter_text()],
        "text by 5": [chunk async for chunk in await content.aiter_text(5)],
        "lines": [line async for line in await content.aiter_lines()],
        "read": content.read(),
    }


def test_async_content_agrees_with_the_official_package(api: FakeAPI) -> None:
    """Issue 17, item 8: the same async reads of a file's content on both packages."""
    openai = _official()
    import asyncio

    file_id = str(api.add_file(_MIXED_LINES)["id"])

    def run(package: Any) -> dict[str, Any]:
        async def main() -> dict[str, Any]:
            client = package.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
            return await _read_async_content(client, file_id)

        return asyncio.run(main())

    assert run(ob) == run(openai)


def test_async_webhook_endpoints_agree_with_the_official_package(api: FakeAPI) -> None:
    openai = _official()
    import asyncio

    async def script(client: Any) -> list[Any]:
        made = await client.webhooks.create(
            url="https://a.example", name="a", event_types=["batch.failed"]
        )
        listed = [e.name async for e in client.webhooks.list(limit=1)]
        kinds = await client.webhooks.event_types.list()
        tested = await client.webhooks.test(made.id, event_type="batch.failed")
        gone = await client.webhooks.delete(made.id)
        return [listed, kinds.data, tested.status_code, gone.deleted, _wire(api, [made.id])]

    del api.requests[:]
    options = {"api_key": API_KEY, "base_url": api.base_url, "max_retries": 0}
    theirs = asyncio.run(script(openai.AsyncOpenAI(**options)))
    assert asyncio.run(script(ob.AsyncOpenAI(**options))) == theirs


def test_the_async_client_awaits_the_same_calls(api: FakeAPI, tmp_path: Any) -> None:
    import asyncio

    api.seconds_validating = api.seconds_per_request = api.seconds_finalizing = 0.0
    settings = {"clock": api.clock.time, "sleep": api.clock.sleep, "random": lambda: 0.0}

    async def main() -> dict[str, Any]:
        async with ob.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url, **settings) as client:
            batch = await client.submit(chat_requests(3))
            done = await client.batches.wait(batch.id)
            first = await client.batches.list(limit=1)
            listed = [b.id async for b in client.batches.list(limit=1)]
            together = await asyncio.gather(*(client.batches.retrieve(batch.id) for _ in "abc"))
            content = await client.files.content(done.output_file_id)
            raw = await client.batches.with_raw_response.retrieve(batch.id)
            page = await client.batches.list(limit=1)
            pages = [len(p.data) async for p in page.iter_pages()]
            quick = client.with_options(timeout=5)
            again = await quick.batches.retrieve(batch.id)
            raw_content = await client.files.with_raw_response.content(done.output_file_id)
            return {
                "status": done.status,
                "first": [b.id for b in first.data],
                "listed": listed,
                "together": {b.id for b in together},
                "results": sorted([r.custom_id async for r in client.results(done)]),
                "lines": len(content.read().splitlines()) + len(content.text.splitlines()),
                "pages": pages,
                "again": (again.id, quick.timeout, type(quick).__name__),
                "raw_content": raw_content.content == content.content,
                "raw": (raw.status_code, raw.parse().id),
                "models": [m.id async for m in client.models.list()],
                "base_url": client.base_url,
            }

    seen = asyncio.run(main())
    assert seen["status"] == "completed" and seen["first"] == [seen["raw"][1]]
    assert seen["listed"] == list(api.batches)[::-1] and seen["together"] == {seen["raw"][1]}
    assert seen["results"] == ["q0", "q1", "q2"] and seen["lines"] == 6
    assert seen["pages"] == [1] * len(api.batches) and seen["raw_content"]
    assert seen["again"] == (seen["raw"][1], 5.0, "AsyncOpenAI")
    assert seen["raw"][0] == 200 and seen["models"] == list(api.models)
    assert seen["base_url"] == api.base_url + "/"


def test_async_content_is_read_with_aread_and_async_for(api: FakeAPI) -> None:
    """Issue 17, item 8: `await content.aread()`, and `aiter_bytes()`, `aiter_text()` and
    `aiter_lines()` with `async for`, awaited first as the official package's are, or not as
    httpx's are; chunks as httpx gives them from a body already read."""
    import asyncio

    file_id = str(api.add_file(_MIXED_LINES)["id"])
    empty_id = str(api.add_file(b"", filename="empty.jsonl")["id"])

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        async with ob.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url) as client:
            return await asyncio.gather(
                _read_async_content(client, file_id), _read_async_content(client, empty_id)
            )

    async def without_await() -> list[str]:
        async with ob.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url) as client:
            content = await client.files.content(file_id)
            return [line async for line in content.aiter_lines()]  # as httpx's, too

    seen, empty = asyncio.run(main())
    assert asyncio.run(without_await()) == seen["lines"]
    text = _MIXED_LINES.decode()
    assert seen["aread"] == seen["read"] == _MIXED_LINES and seen["bytes"] == [_MIXED_LINES]
    assert b"".join(seen["bytes by 7"]) == _MIXED_LINES
    assert [len(chunk) for chunk in seen["bytes by 7"]][:-1] == [7] * 5
    assert seen["text"] == [text] and "".join(seen["text by 5"]) == text
    assert set(map(len, seen["text by 5"][:-1])) == {5}
    assert seen["lines"] == ['{"a": 1}', '{"b": "\u00e9"}', "", '{"c": 3}', '{"d": 4}']
    assert empty == {key: b"" if key in ("aread", "read") else [] for key in empty}


async def _read_async_stream(client: Any, file_id: str, batch_id: str, path: Any) -> list[Any]:
    """Every way to read an async streamed response, as the official `AsyncAPIResponse`."""
    streaming = client.files.with_streaming_response
    async with streaming.content(file_id) as response:
        head = [response.status_code, response.headers["content-type"], not response.is_closed]
        whole = [await response.read(), await response.text()]
    async with streaming.content(file_id) as response:
        chunks = [chunk async for chunk in response.iter_bytes()]
    async with streaming.content(file_id) as response:
        lines = [line async for line in response.iter_lines()]
    async with streaming.content(file_id) as response:
        text = [piece async for piece in response.iter_text()]
    async with client.with_streaming_response.files.content(file_id) as response:
        parsed = await response.parse()
    async with streaming.content(file_id) as response:
        await response.stream_to_file(path)
    async with client.batches.with_streaming_response.retrieve(batch_id) as response:
        batch = [(await response.parse()).id, (await response.json())["id"]]
    async with client.models.with_streaming_response.list() as response:
        head.append(response.status_code)
    async with client.webhooks.with_streaming_response.list() as response:
        head.append(response.status_code)
    return [head, whole, chunks, lines, text, (type(parsed), parsed), path.read_bytes(), batch]


def test_the_async_client_streams_responses(api: FakeAPI, tmp_path: Any) -> None:
    """Issue 17 review, item 1: `with_streaming_response` on every async resource and on the
    client, read with `await` and `async for` as the official async client's is."""
    import asyncio

    file_id = str(api.add_file(_MIXED_LINES)["id"])
    batch_id = str(api.add_batch(status="completed")["id"])

    async def main() -> list[Any]:
        async with ob.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url) as client:
            seen = await _read_async_stream(client, file_id, batch_id, tmp_path / "out")
            with pytest.raises(AttributeError):
                client.files.with_streaming_response.nope  # noqa: B018
            async with client.files.with_streaming_response.content(file_id) as response:
                pass  # never read: closed, and the next call still works
            assert response.is_closed
            return seen

    head, whole, chunks, lines, text, parsed, saved, batch = asyncio.run(main())
    assert head == [200, "application/octet-stream", True, 200, 200]
    assert whole == [_MIXED_LINES, _MIXED_LINES.decode()] and b"".join(chunks) == _MIXED_LINES
    assert lines == ['{"a": 1}', '{"b": "\u00e9"}', "", '{"c": 3}', '{"d": 4}']
    assert text == [_MIXED_LINES.decode()]
    assert parsed == (bytes, _MIXED_LINES) and saved == _MIXED_LINES
    assert batch == [batch_id, batch_id]


def test_async_streaming_agrees_with_the_official_package(api: FakeAPI, tmp_path: Any) -> None:
    """Issue 17 review, item 1: the same streamed reads on both async clients."""
    openai = _official()
    import asyncio

    file_id = str(api.add_file(_MIXED_LINES)["id"])
    batch_id = str(api.add_batch(status="completed")["id"])

    def run(package: Any) -> list[Any]:
        async def main() -> list[Any]:
            client = package.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
            return await _read_async_stream(client, file_id, batch_id, tmp_path / package.__name__)

        return asyncio.run(main())

    assert run(ob) == run(openai)


def test_the_async_client_reads_metadata_back_as_given(api: FakeAPI) -> None:
    """Issue 17, item 2, awaited: the key apart from the caller's metadata."""
    import asyncio

    file_id = _seeded_file(api)

    async def main() -> list[tuple[Any, str | None, Any]]:
        async with ob.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url) as client:
            seen = []
            for given in ({"job": "x"}, None):
                made = await client.batches.create(
                    input_file_id=file_id, endpoint="/v1/chat/completions", metadata=given
                )
                got = await client.batches.retrieve(made.id)
                listed = [b async for b in client.batches.list(limit=100) if b.id == made.id]
                for batch in (made, got, *listed):
                    seen.append((batch.metadata, batch.idempotency_key, batch.model_dump()))
            return seen

    seen = asyncio.run(main())
    assert [metadata for metadata, _, _ in seen] == [{"job": "x"}] * 3 + [None] * 3
    assert all(key is not None and dumped["metadata"] == m for m, key, dumped in seen)
    assert {key for _, key, _ in seen} == {_key_of(b) for b in api.batches.values()}


def test_the_async_azure_client(api: FakeAPI) -> None:
    import asyncio

    api.azure_version = AZURE_VERSION
    api.add_batch(status="completed")

    async def main() -> list[str]:
        client = ob.AsyncAzureOpenAI(
            api_key=API_KEY, azure_endpoint=api.endpoint, api_version=AZURE_VERSION
        )
        try:
            return [b.id async for b in client.batches.list()]
        finally:
            await client.close()

    assert asyncio.run(main()) == list(api.batches)
    assert api.requests[-1].path == "/openai/batches" and "api-key" in api.requests[-1].headers


@pytest.mark.parametrize("kind", ["openai", "azure"])
def test_async_for_walks_every_page_of_a_list(api: FakeAPI, kind: str) -> None:
    """Issue 17, item 1: the second page was a coroutine that nothing awaited."""
    import asyncio

    for _ in range(4):
        api.add_batch(status="completed")
    files = {api.add_file(b"{}\n", filename=f"in{n}.jsonl")["id"] for n in range(5)}

    async def main() -> tuple[list[str], list[str]]:
        async with _async_client(api, kind) as client:
            batches = [b.id async for b in client.batches.list(limit=1)]
            return batches, [f.id async for f in client.files.list(limit=2)]

    batches, listed = asyncio.run(main())
    assert batches == list(api.batches)[::-1]  # newest first, one page each
    assert sorted(listed) == sorted(files)
    gets = [r for r in api.requests if r.method == "GET"]
    assert [r.query.get("after") for r in gets if r.path.endswith("/batches")] == [
        None,
        *batches[:3],
    ]
    assert [r.query.get("after") for r in gets if r.path.endswith("/files")] == [
        None,
        listed[1],
        listed[3],
    ]


@pytest.mark.parametrize("kind", ["openai", "azure"])
def test_an_awaited_async_page_awaits_each_next_page(api: FakeAPI, kind: str) -> None:
    import asyncio

    for _ in range(3):
        api.add_batch(status="completed")

    async def main() -> tuple[list[list[str]], list[bool], str, list[int]]:
        async with _async_client(api, kind) as client:
            page = await client.batches.list(limit=1)
            assert type(page) is ob.AsyncCursorPage and repr(page).startswith("<Async")
            pages, more = [[b.id for b in page.data]], [page.has_next_page()]
            while page.has_next_page():
                page = await page.get_next_page()
                pages.append([b.id for b in page.data])
                more.append(page.has_next_page())
            try:
                await page.get_next_page()
            except RuntimeError as exc:
                last = str(exc)
            first = await client.batches.list(limit=2)
            sizes = [len(p.data) async for p in first.iter_pages()]
            return pages, more, last, sizes

    pages, more, last, sizes = asyncio.run(main())
    assert pages == [[b] for b in list(api.batches)[::-1]]
    assert more == [True, True, False]  # the last page says has_more false
    assert last == "No next page; check has_next_page() first."
    assert sizes == [2, 1]


def test_the_async_azure_client_awaits_an_async_token_provider_on_its_loop(
    api: FakeAPI,
) -> None:
    """Issue 17, item 4: the documented `azure.identity.aio` provider, an `async def`; a token
    for every request, a retry's and each page's included, as the blocking client asks."""
    import asyncio

    api.azure_tokens = {f"entra-token-{n}" for n in range(1, 100)}
    loops: list[asyncio.AbstractEventLoop] = []

    async def provider() -> str:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)  # it does I/O on the caller's loop, as a credential does
        return f"entra-token-{len(loops)}"

    for _ in range(3):
        api.add_batch(status="completed")
    batch_id = next(iter(api.batches))
    api.arm("GET", r"/openai/batches/[^/]+", Fault.error(500))

    async def main() -> tuple[asyncio.AbstractEventLoop, str]:
        async with _async_client(api, "azure", azure_ad_token_provider=provider) as client:
            await client.batches.retrieve(batch_id)  # a 500, then again
            assert len([b async for b in client.batches.list(limit=1)]) == 3
            await client.with_options(timeout=5).batches.retrieve(batch_id)
            return asyncio.get_running_loop(), repr(client)

    loop, shown = asyncio.run(main())
    sent = [r.headers["authorization"] for r in api.requests]
    assert sent == [f"Bearer entra-token-{n}" for n in range(1, 7)]  # 2 + 3 pages + 1
    assert all(seen is loop for seen in loops) and "entra-token" not in shown
    assert all("api-key" not in r.headers for r in api.requests)


def test_the_async_azure_client_still_calls_a_plain_token_provider(api: FakeAPI) -> None:
    import asyncio

    tokens = iter(f"entra-token-{n}" for n in range(100))
    api.azure_tokens = {f"entra-token-{n}" for n in range(100)}
    api.add_batch(status="completed")
    batch_id = next(iter(api.batches))

    async def main() -> None:
        plain = lambda: next(tokens)  # noqa: E731
        async with _async_client(api, "azure", azure_ad_token_provider=plain) as client:
            await client.batches.retrieve(batch_id)
            await client.batches.retrieve(batch_id)

    asyncio.run(main())
    sent = [r.headers["authorization"] for r in api.requests]
    assert sent == ["Bearer entra-token-0", "Bearer entra-token-1"]


def test_an_async_token_provider_outside_the_async_client_is_refused(api: FakeAPI) -> None:
    async def provider() -> str:
        return "entra-token-1"

    client = make_azure(api, azure_ad_token_provider=ob._LoopTokenProvider(provider))
    with raises(ob.OpenAIError) as info:
        client.batches.list()
    assert str(info.value) == (
        "An async `azure_ad_token_provider` can be awaited only by a call of "
        "AsyncAzureOpenAI, from the event loop it was made on."
    )
    assert api.requests == []


def test_an_async_token_provider_serves_a_job_run_by_the_async_client(
    api: FakeAPI, tmp_path: Any
) -> None:
    import asyncio

    api.seconds_validating = api.seconds_per_request = api.seconds_finalizing = 0.0
    api.azure_tokens = {f"entra-token-{n}" for n in range(1, 1000)}
    asked: list[int] = []

    async def provider() -> str:
        asked.append(threading.get_ident())
        return f"entra-token-{len(asked)}"

    async def main() -> ob.JobReport:
        async with _async_client(api, "azure", azure_ad_token_provider=provider) as client:
            return await client.run(_job_input(tmp_path, 3), tmp_path / "out.jsonl")

    report = asyncio.run(main())
    assert _output_ids(tmp_path / "out.jsonl") == ["q0", "q1", "q2"] and report
    sent = [r.headers["authorization"] for r in api.requests]
    assert sent == [f"Bearer entra-token-{n}" for n in range(1, len(sent) + 1)]
    assert set(asked) == {threading.main_thread().ident}  # each on the loop, not a worker


def test_an_async_token_provider_serves_a_thread_that_a_call_started(api: FakeAPI) -> None:
    """A direct job's workers are threads of its own, started by no call of the async client:
    they use the loop of the latest call."""
    import asyncio

    api.azure_tokens = {"entra-token-1"}
    api.add_batch(status="completed")
    batch_id = next(iter(api.batches))

    async def provider() -> str:
        return "entra-token-1"

    async def main() -> str:
        client = _async_client(api, "azure", azure_ad_token_provider=provider)
        found: list[str] = []

        def on_a_thread_of_its_own() -> None:
            worker = threading.Thread(
                target=lambda: found.append(client._client.batches.retrieve(batch_id).id)
            )
            worker.start()
            worker.join()

        await client._run(on_a_thread_of_its_own)
        await client.close()
        return found[0]

    assert asyncio.run(main()) == batch_id
    assert api.requests[-1].headers["authorization"] == "Bearer entra-token-1"


def test_async_calls_are_not_capped_by_the_loops_thread_pool(api: FakeAPI) -> None:
    """Issue 17, item 15: 200 calls awaited together are 200 requests in flight, as the
    official client's are; the loop's default pool would hold them to min(32, cores + 4)."""
    import asyncio

    api.add_batch(id="batch_1")
    together = threading.Barrier(100, timeout=10)  # a third of the calls past the default
    api.arm("GET", r"/v1/batches/batch_1", *[Fault.gather(together)] * 200)

    async def main() -> list[str]:
        client = ob.AsyncOpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
        calls = [client.batches.retrieve("batch_1") for _ in range(200)]
        return [batch.id for batch in await asyncio.gather(*calls)]

    assert asyncio.run(main()) == ["batch_1"] * 200
    assert not together.broken


def test_the_async_client_awaits_an_async_api_key_callable_on_its_loop(api: FakeAPI) -> None:
    """Issue 17, item 15: the official AsyncOpenAI takes `api_key` as an async callable."""
    import asyncio

    api.add_batch(id="batch_1")
    loops: list[Any] = []

    async def key() -> str:
        loops.append(asyncio.get_running_loop())
        return API_KEY

    async def main() -> list[str]:
        client = ob.AsyncOpenAI(api_key=key, base_url=api.base_url, max_retries=0)
        first = await client.batches.retrieve("batch_1")
        again = await client.with_options(timeout=5).batches.retrieve("batch_1")
        assert loops == [asyncio.get_running_loop()] * 2
        return [first.id, again.id]

    assert asyncio.run(main()) == ["batch_1"] * 2
    assert api.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"


# ---------------------------------------------------------------- The module client


def test_the_module_client_serves_batches_files_and_models(api: FakeAPI, module: Any) -> None:
    """Issue 17, item 14: `openai.api_key = ...`, then `openai.batches.create(...)`."""
    module.api_key, module.base_url, module.max_retries = API_KEY, api.base_url, 0
    file = module.files.create(file=("in.jsonl", b'{"custom_id": "a"}\n'), purpose="batch")
    batch = module.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert module.batches.retrieve(batch.id).id == batch.id
    assert [m.id for m in module.models.list()] == list(api.models)
    assert module.webhooks.verify_signature is not None  # the client's own webhooks
    assert module.api_type == "openai"  # decided at first use, and kept, as the official one
    assert repr(module.batches) == "<openai_batch.batches of the module client>"
    assert api.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_a_module_setting_changed_after_first_use_is_seen(api: FakeAPI, module: Any) -> None:
    module.api_key, module.base_url, module.max_retries = API_KEY, api.base_url, 0
    api.add_batch(id="batch_1")
    batches = module.batches  # kept, as `from openai import batches` keeps it
    batches.retrieve("batch_1")
    first = module._module_client()
    module.default_headers = {"X-A": "1"}
    module.organization = "org-1"
    batches.retrieve("batch_1")
    assert api.requests[-1].headers["x-a"] == "1"
    assert api.requests[-1].headers["openai-organization"] == "org-1"
    module.default_headers["X-A"] = "2"  # changed in place, too
    batches.retrieve("batch_1")
    assert api.requests[-1].headers["x-a"] == "2"
    assert module._module_client() is module._module_client() is not first  # made once a change
    module.api_key = "sk-another-key-entirely-0000"
    with raises(ob.AuthenticationError):
        batches.retrieve("batch_1")


def test_the_module_settings_default_as_the_official_ones_and_import_makes_nothing() -> None:
    probe = (
        "import openai_batch as ob\n"
        "names = ob._MODULE_SETTINGS\n"
        "print(sorted(n for n in names if getattr(ob, n) is not None), ob._MODULE_CLIENT)\n"
        "print(ob.timeout == ob.DEFAULT_TIMEOUT, ob.max_retries == ob.DEFAULT_MAX_RETRIES)\n"
        "batches = ob.batches\n"
        "try:\n"
        "    batches.retrieve\n"
        "except ob.OpenAIError as error:\n"
        "    print(error)\n"
        "try:\n"
        "    ob.nothing\n"
        "except AttributeError as error:\n"
        "    print(error)\n"
    )
    folder = os.path.dirname(os.path.abspath(ob.__file__))
    env = {k: v for k, v in os.environ.items() if k not in _ENV_NAMES and "OPENAI" not in k}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=folder, env=env, capture_output=True, text=True
    )
    assert out.stdout.splitlines() == [
        "['max_retries', 'timeout'] {}",
        "True True",
        "The api_key client option must be set either by passing api_key to the client or by "
        "setting the OPENAI_API_KEY environment variable",
        "module 'openai_batch' has no attribute 'nothing'",
    ]


def test_the_module_client_refuses_ambiguous_credentials_and_an_http_client(
    module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", API_KEY)
    with raises(ob.OpenAIError) as info:
        module.batches.retrieve("batch_1")
    assert str(info.value) == (
        "Ambiguous use of module client; please set `openai_batch.api_type` or the "
        "`OPENAI_API_TYPE` environment variable to `openai` or `azure`"
    )
    module.api_type, module.http_client = "openai", object()
    with raises(ob.OpenAIError, match=r"^openai_batch.http_client is not used: this module "):
        module.files.list()


def test_the_module_client_agrees_with_the_official_package(
    api: FakeAPI, module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17, item 14: the same lines of code against both modules, and the same wire."""
    openai = _official()
    monkeypatch.setattr(openai, "_client", None)
    api.add_batch(id="batch_1")
    seen = {}
    for package in (openai, module):
        for name in ("api_key", "base_url", "max_retries", "default_headers", "api_type"):
            monkeypatch.setattr(package, name, getattr(package, name))
        assert package.api_key is package.organization is package.default_headers is None
        assert package.max_retries == 2
        # with its slash: the official module client joins "v1" and "batches" without one
        package.api_key, package.base_url, package.max_retries = API_KEY, api.base_url + "/", 0
        package.batches.retrieve("batch_1")
        package.default_headers = {"X-A": "1"}
        batch = package.batches.retrieve("batch_1")
        seen[package.__name__] = (batch.model_dump(), package.api_type, api.requests[-1])
    (ours, our_type, our_request), (theirs, their_type, their_request) = (
        seen["openai_batch"],
        seen["openai"],
    )
    assert ours == theirs and our_type == their_type == "openai"
    assert our_request.headers["x-a"] == their_request.headers["x-a"] == "1"
    assert our_request.path == their_request.path == "/v1/batches/batch_1"


# ---------------------------------------------------------------- Command line: output helpers


def test_cli_list_fits_a_narrow_terminal_and_colours_the_status(
    client: Client, api: FakeAPI
) -> None:
    _seed_list(api)
    ran = cli(client, "list", tty=True, color=True, width=72)
    lines = ran.out.splitlines()
    assert lines[0] == "ID            STATUS       ENDPOINT  MODEL         PROGRESS   CREATED"
    assert lines[1] == (
        "batch_chat    \x1b[36min_progress\x1b[0m  /v1/cha…  gpt-4o-mini   7/1/20     3h ago"
    )
    assert "\x1b[32mcompleted  \x1b[0m" in lines[2] and "\x1b[31mfailed" in lines[3]
    assert max(len(re.sub(r"\x1b\[\d+m", "", line)) for line in lines) <= 72


def test_cli_errors_say_what_and_hint_at_a_fix(client: Client, api: FakeAPI) -> None:
    ran = cli(client, "get", "batch_nope")
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == (
        "error: Error code: 404 - No batch found with id 'batch_nope'. (request id req_1)\n"
        "hint: check the id; `openai-batch list` shows your batches\n"
    )
    wrong = make_client(api, api_key="sk-wrong-key-000000000000")
    ran = cli(wrong, "list")
    assert ran.code == 1 and ran.err.endswith(
        "hint: check the key in OPENAI_API_KEY (and --organization/--project if you use them)\n"
    )
    api.arm("GET", r"/v1/batches", *[Fault.error(429)] * 3)
    assert cli(client, "list").err.endswith(
        "hint: the API is limiting requests; try again in a while\n"
    )
    api.arm("GET", r"/v1/batches", *[Fault.drop()] * 4)  # one more: a kept-alive connection
    assert cli(client, "list").err.endswith("hint: check the network, HTTPS_PROXY and --base-url\n")


def test_an_ascii_only_stdout_gets_ascii_symbols(tmp_path: Any) -> None:
    long_id = "é" + "x" * 100
    path = write_lines(tmp_path / "in.jsonl", [request_line(long_id), request_line(long_id)])
    ran = _module("validate", path, PYTHONIOENCODING="ascii")
    assert ran.returncode == 1 and "Traceback" not in ran.stderr
    assert f'line 2: custom_id "\\xe9{"x" * 77}... repeats line 1\n' in ran.stderr


def test_a_narrow_terminal_keeps_the_colour_reset_of_the_live_line() -> None:
    import io

    out = io.StringIO()
    console = ob._Console(out, io.StringIO(), tty=True, color=True, width=12, clock=lambda: _T0)
    counts = {"total": 4, "completed": 1, "failed": 0}
    batch = ob.Batch.from_dict({"id": "b", "status": "in_progress", "request_counts": counts})
    ob._LiveProgress(console)(batch)
    assert out.getvalue() == "\r\x1b[2K\x1b[36min_progress\x1b[0m"
    del counts["failed"]  # a server that leaves a count out
    console.width = 60
    ob._LiveProgress(console)(
        ob.Batch.from_dict({"status": "finalizing", "request_counts": counts})
    )
    assert out.getvalue().endswith("\x1b[0m [======                  ]  25%  1/0/4  finaliz")


def test_cli_an_unknown_outcome_hints_at_the_key(client: Client, api: FakeAPI) -> None:
    file_id = _seeded_file(api)
    api.arm("POST", r"/v1/batches", *[Fault.error(502)] * 3)
    ran = cli(client, "create", "--input-file-id", file_id, "--endpoint", "chat/completions")
    key = json.loads(requests_to(api, "POST", r"/v1/batches")[0].body)["metadata"][KEY_FIELD]
    assert ran.code == 1 and ran.err.endswith(
        f"hint: run the same command again with --idempotency-key {key}\n"
    )
    assert {r.headers["idempotency-key"] for r in requests_to(api, "POST", r"/v1/batches")} == {key}


def test_the_live_line_estimates_from_created_at_when_in_progress_at_is_missing() -> None:
    import io

    out = io.StringIO()
    console = ob._Console(out, io.StringIO(), tty=True, color=False, width=100, clock=lambda: _T0)
    counts = {"total": 4, "completed": 1, "failed": 0}
    data = {"id": "b", "status": "in_progress", "created_at": _T0 - 30, "request_counts": counts}
    ob._LiveProgress(console)(ob.Batch.from_dict(data))
    assert out.getvalue().endswith("1/0/4  ~1m 30s left")


def test_hints_fit_the_command(client: Client, api: FakeAPI) -> None:
    api.arm("GET", r"/v1/batches", Fault.error(404, message="Not Found"))
    ran = cli(client, "list")
    assert ran.err.splitlines()[-1] == (
        "hint: this server has no Batch API; send the file straight to it with `run --direct`"
    )
    ran = cli(client, "files", "get", "file-nope")
    assert ran.err.splitlines()[-1] == (
        "hint: check the file id; `openai-batch files list` shows your files"
    )
    api.add_batch(id="batch_done", status="completed")
    ran = cli(client, "cancel", "batch_done")
    assert ran.code == 1 and ran.err == (
        "error: Error code: 409 - Cannot cancel a batch with status 'completed'. (request id "
        "req_5)\nhint: the batch has already finished, so there is nothing to cancel "
        "(openai-batch get ID)\n"
    )


def test_narrow_tables_keep_the_end_of_file_names(client: Client, api: FakeAPI) -> None:
    for kind in ("output", "error"):
        api.add_file(
            b"x\n", filename=f"batch_84f0a1b2c3d4e5f6_{kind}.jsonl", purpose="batch_output"
        )
    ran = cli(client, "files", "list", tty=True, width=80)
    names = re.findall(r"batch_\S*jsonl", ran.out)
    assert len(names) == 2 and all("…" in name for name in names)
    assert names[0].endswith("_error.jsonl") and names[1].endswith("output.jsonl")


def test_tsv_leaves_a_missing_value_empty(client: Client, api: FakeAPI) -> None:
    api.add_batch(id="batch_nc", request_counts=None)
    ran = cli(client, "list")
    assert ran.out.split("\t")[3:5] == ["", ""]


def test_more_hints_that_fit_the_situation(client: Client, api: FakeAPI, tmp_path: Any) -> None:
    api.arm("GET", r"/v1/batches/b1", Fault.error(404, message="Invalid URL (GET /batches/b1)"))
    ran = cli(client, "get", "b1")
    assert ran.err.endswith("usually ends in /v1 (--base-url http://host:8000/v1)\n")
    batch_id = _finished(client, api, tmp_path)
    del api.files[api.batches[batch_id]["output_file_id"]]  # expired
    ran = cli(client, "results", batch_id)
    assert ran.code == 1 and ran.err.endswith(
        "hint: the batch's files have expired or been deleted (they are kept 30 days)\n"
    )


def _last_hint(ran: Ran) -> str:
    """The hint a failed command ends with (the test fails if it has none)."""
    assert ran.code == 1 and ran.err.splitlines()[-1].startswith("hint: "), ran.err
    return ran.err.splitlines()[-1][len("hint: ") :]


_NO_BATCH_API = "this server has no Batch API; send the file straight to it with `run --direct`"
_ADD_V1 = (
    "the server has no such endpoint here; an OpenAI-compatible server's base URL usually ends "
    "in /v1 (--base-url http://host:8000/v1)"
)


def test_hints_on_a_server_with_no_batch_api_point_at_run_direct(tmp_path: Any) -> None:
    """Issue 18: a 404 or 405 on /batches or /files from a base URL ending in /v1 is a server
    with no Batch API; without /v1, or with an endpoint after it, the base URL is wrong."""
    source = _job_input(tmp_path, 3)
    out = str(tmp_path / "out.jsonl")
    with ChatServer().serve() as server:
        client = _direct_client(server)
        commands = (["list"], ["files", "list"], ["submit", source], ["run", source, "-o", out])
        for command in commands:
            assert _last_hint(cli(client, *command)) == _NO_BATCH_API, command
        server.no_route_status = 405
        assert _last_hint(cli(client, "list")) == _NO_BATCH_API
        server.no_route_status = 404
        bare = _direct_client(server, base_url=server.base_url[: -len("/v1")])
        for command in (["list"], ["submit", source], ["run", source, "-o", out]):
            ran = cli(bare, *command)
            assert _last_hint(ran) == _ADD_V1, command
            assert "resume" not in ran.err  # the same command again cannot help
        chat = _direct_client(server, base_url=server.base_url + "/chat/completions")
        for command in (["list"], ["get", "batch_1"], ["submit", source]):
            assert _last_hint(cli(chat, *command)) == (
                "the base URL goes on past /v1 to an endpoint; give it only up to /v1 "
                "(--base-url http://host:8000/v1)"
            ), command
    assert not os.path.exists(out)


def test_hints_for_a_model_the_server_does_not_have(tmp_path: Any) -> None:
    """Issue 18: a 404 that names a model points at the models list, not at --base-url."""
    source = _job_input(tmp_path, 3)
    with ChatServer().serve() as server:
        client = _direct_client(server)
        server.unknown_models = {"gpt-4o-mini"}
        server.lists_models = False  # the requests alone cannot tell the address is right
        ran = cli(client, "run", source, "-o", str(tmp_path / "a.jsonl"), "--direct")
        assert ran.err.splitlines()[0] == (
            "error: the first 3 requests all failed (Error code: 404 - The model `gpt-4o-mini` "
            "does not exist.), and none succeeded, so nothing more was sent and none of them "
            "was written: the server does not know the model they name"
        )
        assert _last_hint(ran) == (
            "that model is not on this server; `openai-batch models` lists what is"
        )
        server.lists_models = True  # the address works: each 404 is the request's own
        ran = cli(client, "run", source, "-o", str(tmp_path / "b.jsonl"), "--direct")
        assert ran.code == 1 and ran.err.splitlines()[1:] == [
            f"next: openai-batch results {tmp_path / 'b.jsonl'} --failed shows them and why",
            "hint: 3 requests got HTTP 404 (The model `gpt-4o-mini` does not exist.): that model "
            "is not on this server; `openai-batch models` lists what is",
        ]


def test_hints_after_the_review_of_issue_18(tmp_path: Any) -> None:
    """Issue 18's review: a base URL that is not a URL, or a web page, is no job to resume;
    a 404 that names no model points at the base URL; a rate limit goes with --direct."""
    source = _job_input(tmp_path, 2)
    out = str(tmp_path / "out.jsonl")
    with ChatServer().serve() as server:
        bad = _direct_client(server, base_url="http://127.0.0.1:99999/v1")
        ran = cli(bad, "run", source, "-o", out)
        assert (
            _last_hint(ran)
            == "check the base URL (--base-url, or OPENAI_BASE_URL): nothing was sent"
        )
        server.web_page = True
        ran = cli(
            _direct_client(server, base_url=server.base_url[: -len("/v1")]),
            "run",
            source,
            "-o",
            out,
        )
        assert _last_hint(ran) == (
            "the server answers with a web page, not its API; an OpenAI-compatible server's base "
            "URL usually ends in /v1 (--base-url http://host:8000/v1)"
        )
        assert "resume" not in ran.err.splitlines()[-1]
        server.web_page = False
        ran = cli(
            _direct_client(server), "run", source, "-o", out, "--max-requests-per-minute", "5"
        )
        assert (ran.code, ran.err.splitlines()[0]) == (
            2,
            "error: --max-requests-per-minute goes with --direct (a batch has no such limit)",
        )
    assert ob._not_found_hint(
        3, _answered_404(tmp_path, "Invalid URL (POST /v1/chat/completions)")
    ) == (
        "hint: 3 requests got HTTP 404 (Invalid URL (POST /v1/chat/completions)): the base URL "
        "may not be the server's API; it usually ends in /v1"
    )


def _answered_404(tmp_path: Any, message: str) -> str:
    """A RESULTS file whose one line was answered 404 with ``message``."""
    path = tmp_path / "answered.jsonl"
    body = {"error": {"message": message, "type": "invalid_request_error"}}
    line = {
        "id": "r1",
        "custom_id": "a",
        "response": {"status_code": 404, "body": body},
        "error": None,
    }
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    return str(path)


def test_hints_never_say_resume_for_a_configuration_error(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 18: a missing input file is no job to resume."""
    out = str(tmp_path / "out.jsonl")
    ran = cli(client, "run", str(tmp_path / "nope.jsonl"), "-o", out)
    assert (ran.code, ran.err) == (1, f"error: No such file: {tmp_path / 'nope.jsonl'}\n")


def test_the_hint_for_a_missing_key_names_a_keyless_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 18: a local server that takes no key still needs one set."""
    assert ob.main(["--base-url", "http://127.0.0.1:9/v1", "models"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "hint: export OPENAI_API_KEY=sk-... (or see --api-key); a local server that takes no key "
        "needs one set all the same: OPENAI_API_KEY=unused"
    )


def test_results_never_send_terminal_escapes_from_a_reply(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    body = {"choices": [{"message": {"content": "\x1b[31mred\x1b[0m \x07"}}]}
    line = {"custom_id": "a", "response": {"status_code": 200, "body": body}}
    output = api.add_file(json.dumps(line).encode() + b"\n", purpose="batch_output")["id"]
    api.add_batch(id="batch_e", status="completed", output_file_id=output)
    requests = write_lines(tmp_path / "in.jsonl", [request_line("a")])
    ran = cli(client, "results", "batch_e", "--input", requests, tty=True)
    assert "\x1b" not in ran.out and "\\x1b[31mred\\x1b[0m \\x07" in ran.out


# ---------------------------------------------------------------- Command line: commands


def test_the_cli_lists_by_the_idempotency_key_and_shows_it_apart(
    client: Client, api: FakeAPI
) -> None:
    file_id = _seeded_file(api)
    made = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions")
    ran = cli(client, "list", "--metadata", f"{KEY_FIELD}={made.idempotency_key}")
    assert ran.code == 0 and [line.split("\t")[0] for line in ran.out.splitlines()] == [made.id]
    shown = [line.split("\t") for line in cli(client, "retrieve", made.id).out.splitlines()]
    assert ["idempotency_key", str(made.idempotency_key)] in shown
    assert not any(row[0] == "metadata" for row in shown)


GOLDEN_LIST_TTY = """\
ID            STATUS       ENDPOINT              MODEL                   PROGRESS   CREATED
batch_chat    in_progress  /v1/chat/completions  gpt-4o-mini             7/1/20     3h ago
batch_embed   completed    /v1/embeddings        text-embedding-3-small  100/0/100  2d ago
batch_failed  failed       /v1/chat/completions  -                       0/0/0      2023-10-05
"""


def test_cli_list_on_a_terminal(client: Client, api: FakeAPI) -> None:
    _seed_list(api)
    ran = cli(client, "list", tty=True)
    assert (ran.code, ran.err) == (0, "")
    assert ran.out == GOLDEN_LIST_TTY


GOLDEN_LIST_PIPED = (
    "batch_chat\tin_progress\t/v1/chat/completions\tgpt-4o-mini\t7/1/20\t2023-11-14T19:13:20Z\n"
    "batch_embed\tcompleted\t/v1/embeddings\ttext-embedding-3-small\t100/0/100\t"
    "2023-11-12T22:13:20Z\n"
    "batch_failed\tfailed\t/v1/chat/completions\t\t0/0/0\t2023-10-05T22:13:20Z\n"
)


def test_cli_list_in_a_pipe(client: Client, api: FakeAPI) -> None:
    _seed_list(api)
    ran = cli(client, "list")
    assert (ran.code, ran.err) == (0, "")
    assert ran.out == GOLDEN_LIST_PIPED


def test_cli_list_fits_a_60_column_terminal_and_says_what_was_cut(
    client: Client, api: FakeAPI
) -> None:
    """Issue 18: the table never wraps; what it leaves out, `| cat` or --json shows."""
    _seed_list(api)
    api.add_batch(id="batch_" + "f" * 32, status="completed", created_at=int(api.clock.now))
    ran = cli(client, "list", tty=True, width=60)
    assert ran.out == (
        "ID                                      STATUS\n"
        "batch_ffffffffffffffffffffffffffffffff  completed\n"
        "batch_chat                              in_progress\n"
        "batch_embed                             completed\n"
        "batch_failed                            failed\n"
    )
    assert ran.err == "(cut to fit 60 columns; `| cat` or --json shows all)\n"
    ran = cli(client, "list", tty=True, width=80)
    assert max(len(line) for line in ran.out.splitlines()) <= 80
    assert cli(client, "list", tty=True, width=120).err == ""


def test_cli_list_json_is_the_api_json_a_line_each(client: Client, api: FakeAPI) -> None:
    _seed_list(api)
    ran = cli(client, "list", "--json")
    assert [json.loads(line) for line in ran.out.splitlines()] == [
        api.batches[i] for i in ("batch_chat", "batch_embed", "batch_failed")
    ]


def test_cli_list_filters_page_lazily_and_stop_early(client: Client, api: FakeAPI) -> None:
    for i in range(250):
        status = "completed" if i % 3 else "failed"
        api.add_batch(id=f"batch_{i:03d}", status=status, created_at=_T0 - 60 * (250 - i))
    ran = cli(client, "list", "--status", "failed", "--limit", "3", "--json")
    shown = [json.loads(line)["id"] for line in ran.out.splitlines()]
    assert shown == ["batch_249", "batch_246", "batch_243"]
    assert [r.query for r in api.requests] == [{"limit": "100"}]
    api.requests.clear()
    ran = cli(client, "list", "--since", str(_T0 - 60 * 120))
    ids = [line.split("\t")[0] for line in ran.out.splitlines()]
    assert ids == [f"batch_{i:03d}" for i in range(249, 229, -1)]  # the default 20
    ran = cli(client, "list", "--all", "--since", str(_T0 - 60 * 120))
    ids = [line.split("\t")[0] for line in ran.out.splitlines()]
    assert ids == [f"batch_{i:03d}" for i in range(249, 129, -1)]
    assert len(api.requests) == 1 + 2  # the second page shows the rest are older
    api.requests.clear()
    assert len(cli(client, "list", "--all").out.splitlines()) == 250
    assert len(api.requests) == 3


def test_cli_list_filters_by_endpoint_and_metadata(client: Client, api: FakeAPI) -> None:
    _seed_list(api)
    ran = cli(client, "list", "--endpoint", "embeddings")
    assert [line.split("\t")[0] for line in ran.out.splitlines()] == ["batch_embed"]
    ran = cli(client, "list", "--metadata", "team=evals", "--metadata", "run=7")
    assert [line.split("\t")[0] for line in ran.out.splitlines()] == ["batch_chat"]
    assert cli(client, "list", "--metadata", "team=none", tty=True).err == "No batches found.\n"


def test_cli_since_takes_durations_dates_and_unix_times(client: Client, api: FakeAPI) -> None:
    assert ob._since("2h") == (7200.0, None) and ob._since("1.5d") == (129600.0, None)
    assert ob._since("2023-11-14") == (0.0, 1699920000.0)
    assert ob._since("2023-11-14T22:13:20Z") == (0.0, _T0)
    assert ob._since(str(_T0)) == (0.0, _T0)
    import argparse

    with raises(argparse.ArgumentTypeError, match="expected a duration like 2h"):
        ob._since("yesterday")
    _seed_list(api)
    ran = cli(client, "list", "--since", "2d")  # on the client's clock
    assert [line.split("\t")[0] for line in ran.out.splitlines()] == ["batch_chat", "batch_embed"]


GOLDEN_GET_TTY = """\
id              batch_embed
status          completed
endpoint        /v1/embeddings
model           text-embedding-3-small
progress        100/0/100 (completed/failed/total)
input_file_id   file-in
output_file_id  file-out
error_file_id   -
created         2d ago
expires         1d ago
completed       1d ago
metadata        team=search
"""


def test_cli_get_on_a_terminal_and_in_a_pipe(client: Client, api: FakeAPI) -> None:
    _seed_list(api)
    ran = cli(client, "get", "batch_embed", tty=True)
    assert ran.out == GOLDEN_GET_TTY
    piped = cli(client, "retrieve", "batch_failed")
    assert piped.out.splitlines()[:2] == ["id\tbatch_failed", "status\tfailed"]
    assert "error\tline 3: x: bad line" in piped.out.splitlines()
    assert json.loads(cli(client, "get", "batch_chat", "--json").out) == api.batches["batch_chat"]


def test_cli_create_and_cancel(client: Client, api: FakeAPI) -> None:
    file_id = api.add_file(b"".join(r.to_json().encode() + b"\n" for r in chat_requests(2)))["id"]
    ran = cli(
        client,
        "create",
        "--input-file-id",
        file_id,
        "--endpoint",
        "chat/completions",
        "--metadata",
        "job=nightly",
        "--output-expires-after",
        "7200",
        "--json",
    )
    batch = json.loads(ran.out)
    key = batch["metadata"].pop(KEY_FIELD)
    assert (ran.code, batch["status"], batch["metadata"]) == (0, "validating", {"job": "nightly"})
    sent = json.loads(requests_to(api, "POST", r"/v1/batches")[0].body)
    assert sent["metadata"] == {"job": "nightly", KEY_FIELD: key}
    assert sent["output_expires_after"] == {"anchor": "created_at", "seconds": 7200}
    assert sent["endpoint"] == "/v1/chat/completions"
    ran = cli(client, "cancel", batch["id"])
    assert ran.code == 0 and "status\tcancelling" in ran.out.splitlines()


def test_cli_upload_and_files(client: Client, api: FakeAPI, tmp_path: Any) -> None:
    path = tmp_path / "in.jsonl"
    ob.write_jsonl(path, chat_requests(2))
    uploaded = json.loads(cli(client, "upload", str(path), "--json").out)
    assert api.contents[uploaded["id"]] == path.read_bytes()
    listed = cli(client, "files", "list", "--purpose", "batch")
    assert (
        listed.out
        == f"{uploaded['id']}\tbatch\t{path.stat().st_size}\tin.jsonl\t2023-11-14T22:13:20Z\n"
    )
    table = cli(client, "files", "list", "--all", tty=True)
    assert table.out.splitlines()[0].split() == ["ID", "PURPOSE", "SIZE", "FILENAME", "CREATED"]
    assert f"{path.stat().st_size} B" in table.out
    shown = cli(client, "files", "get", uploaded["id"], tty=True)
    assert shown.out.splitlines()[1:4] == [
        "filename  in.jsonl",
        "purpose   batch",
        f"bytes     {path.stat().st_size} B",
    ]
    assert cli(client, "files", "get", uploaded["id"], "--json").out.startswith("{\n")
    content = cli(client, "files", "content", uploaded["id"])
    assert content.out.encode() == path.read_bytes()
    saved = cli(client, "files", "content", uploaded["id"], "-o", str(tmp_path / "copy.jsonl"))
    assert saved.err == f"wrote {tmp_path / 'copy.jsonl'}\n"
    assert (tmp_path / "copy.jsonl").read_bytes() == path.read_bytes()
    deleted = cli(client, "files", "delete", uploaded["id"])
    assert (deleted.code, deleted.out) == (0, f"deleted {uploaded['id']}\n")
    assert cli(client, "files", "list", tty=True).err == "No files found.\n"
    assert json.loads(cli(client, "files", "list", "--json").out or "null") is None


def test_cli_validate_reports_a_summary_or_every_problem(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    path = tmp_path / "in.jsonl"
    ob.write_jsonl(path, chat_requests(3))
    size = path.stat().st_size
    ran = cli(client, "validate", str(path), tty=True)
    assert ran.out == (
        f"ok  {path}: 3 requests, {size} B, /v1/chat/completions, model gpt-4o-mini\n"
        "    input   ~30 tokens, under $0.01\n"
        "    output  unbounded (3/3 requests set no output limit), so no upper cost\n"
        f"    at {PRICES}\n"
    )
    ran = cli(client, "validate", str(path))
    assert ran.out == (  # issue 18: "ok", and each number labelled
        f"ok\t{path}\trequests=3\tbytes={size}\tendpoint=/v1/chat/completions\t"
        "model=gpt-4o-mini\tembedding_inputs=0\tinput_tokens=30\toutput_tokens=\t"
        f"input_usd=0.000002\toutput_usd=\tprices={PRICES}\n"
    )
    assert json.loads(cli(client, "validate", str(path), "--json").out)["requests"] == 3
    bad = write_lines(
        tmp_path / "bad.jsonl", [request_line("a", method="GET"), "{", request_line("a")]
    )
    ran = cli(client, "validate", bad)
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == (
        f"error: {bad}: 3 problems\n"
        '  line 1: method must be "POST", got "GET"\n'
        "  line 2: not valid JSON: Expecting property name enclosed in double quotes (column 2)\n"
        '  line 3: custom_id "a" repeats line 1\n'
    )
    missing = cli(client, "validate", str(tmp_path / "nope.jsonl"))
    assert (missing.code, missing.err) == (1, f"error: No such file: {tmp_path}/nope.jsonl\n")
    assert api.requests == []


def test_cli_validate_needs_no_key(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "in.jsonl"
    ob.write_jsonl(path, chat_requests(1))
    assert ob.main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"ok\t{path}\trequests=1\t")


def test_cli_submit_and_wait_with_exit_codes(client: Client, api: FakeAPI, tmp_path: Any) -> None:
    path = tmp_path / "in.jsonl"
    ob.write_jsonl(path, chat_requests(4, fail=(1,)))
    ran = cli(client, "submit", str(path), "--metadata", "k=v", "--wait", "--interval", "5")
    lines = ran.out.splitlines()
    batch_id = lines[0].split("\t")[1]
    assert ran.code == 0 and lines[1] == "status\tvalidating"
    progress = [line.split("\t")[2:] for line in lines if line.startswith("2023-")]
    assert progress == [
        ["validating", "0/0/0"],
        ["in_progress", "0/0/4"],
        ["finalizing", "3/1/4"],
        ["completed", "3/1/4"],
    ]
    file_id = api.batches[batch_id]["input_file_id"]
    assert ran.err == (
        f"uploaded {path} as {file_id}\n"
        f"{batch_id} completed after 19s: 3/1/4 completed/failed/total\n"
        f"next: openai-batch results {batch_id} --failed, then openai-batch retry {batch_id} -o "
        "retry.jsonl\n"
    )
    api.clock.advance(19 * 60)  # the duration is the batch's own, however late one asks
    ran = cli(client, "wait", batch_id)
    assert ran.err.startswith(f"{batch_id} completed after 19s: 3/1/4 completed/failed/total\n")
    assert cli(client, "wait", batch_id).code == 0
    cancelled = api.add_batch(id="batch_c", status="cancelled")
    assert cli(client, "wait", cancelled["id"]).code == 1
    ran = cli(client, "wait", cancelled["id"], "--json")
    assert (ran.code, json.loads(ran.out), ran.err) == (1, cancelled, "")
    ran = cli(client, "submit", str(path), "--wait", "--json")
    assert ran.code == 0 and json.loads(ran.out)["status"] == "completed"


def test_cli_wait_times_out_with_its_own_code(client: Client, api: FakeAPI) -> None:
    batch = client.submit(chat_requests(50))
    ran = cli(client, "wait", batch.id, "--interval", "10", "--timeout", "30")
    assert ran.code == 124
    assert ran.err == (  # issue 18: one message, as the README promises
        f"error: gave up waiting after 30 s: {batch.id} is still in_progress (20/0/50 "
        f"completed/failed/total) on the server; resume with `openai-batch wait {batch.id}`, "
        f"stop it with `openai-batch cancel {batch.id}`\n"
    )


def test_cli_wait_stops_on_interrupt_with_130(api: FakeAPI) -> None:
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    client = make_client(api, sleep=interrupted)
    batch = client.submit(chat_requests(2))
    ran = cli(client, "wait", batch.id, tty=True)
    assert ran.code == 130 and ran.out.endswith("\n") and "\r\x1b[2K" in ran.out
    assert ran.err == (
        f"{batch.id} is still validating (0/0/0 completed/failed/total) on the server; resume "
        f"with `openai-batch wait {batch.id}`, stop it with `openai-batch cancel {batch.id}`\n"
    )
    ran = cli(client, "wait", batch.id, "--json")
    assert ran.code == 130 and ran.err.startswith(f"{batch.id} may still be running on the server")


def test_cli_submit_json_and_a_bad_file(client: Client, api: FakeAPI, tmp_path: Any) -> None:
    path = tmp_path / "in.jsonl"
    ob.write_jsonl(path, chat_requests(2))
    assert json.loads(cli(client, "submit", str(path), "--json").out)["object"] == "batch"
    bad = write_lines(tmp_path / "bad.jsonl", [request_line("a", body={})])
    ran = cli(client, "submit", bad)
    assert ran.code == 1 and "line 1: body has no model" in ran.err
    assert len(requests_to(api, "POST", r"/v1/files")) == 1


GOLDEN_RESULTS_TTY = """\
CUSTOM_ID  RESULT  STATUS  DETAIL
q0         ok      200     echo: question 0
fail-1     failed  400     Request failed by fail_rule
q2         ok      200     echo: question 2
fail-3     failed  400     Request failed by fail_rule
q4         ok      200     echo: question 4
"""


def test_cli_results_on_a_terminal_and_in_a_pipe(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    batch_id = _finished(client, api, tmp_path)
    ran = cli(client, "results", batch_id, tty=True)
    assert ran.out == GOLDEN_RESULTS_TTY
    piped = cli(client, "results", batch_id, "--failed")
    assert piped.out == (
        "fail-1\tfailed\t400\tRequest failed by fail_rule\n"
        "fail-3\tfailed\t400\tRequest failed by fail_rule\n"
    )
    lines = [
        json.loads(line) for line in cli(client, "results", batch_id, "--json").out.splitlines()
    ]
    assert [line["custom_id"] for line in lines] == ["q0", "fail-1", "q2", "fail-3", "q4"]


def test_cli_results_with_a_given_input_and_without_any(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    batch_id = _finished(client, api, tmp_path)
    extra = tmp_path / "more.jsonl"
    ob.write_jsonl(extra, chat_requests(6, fail=(1, 3)))
    ran = cli(client, "results", batch_id, "--input", str(extra), "--failed", "--json")
    assert json.loads(ran.out.splitlines()[-1]) == {
        "id": None,
        "custom_id": "q5",
        "response": None,
        "error": None,
    }
    client.files.delete(api.batches[batch_id]["input_file_id"])
    ran = cli(client, "results", batch_id)
    assert ran.code == 0 and len(ran.out.splitlines()) == 5
    assert ran.err.startswith(
        "note: the input file is not available (Error code: 404 - No such File object"
    )


def test_cli_download_and_retry(client: Client, api: FakeAPI, tmp_path: Any) -> None:
    batch_id = _finished(client, api, tmp_path)
    ran = cli(client, "download", batch_id, "-o", str(tmp_path / "dl"))
    assert ran.out.splitlines() == [
        str(tmp_path / "dl" / f"{batch_id}_output.jsonl"),
        str(tmp_path / "dl" / f"{batch_id}_errors.jsonl"),
    ]
    retry = tmp_path / "retry.jsonl"
    ran = cli(client, "retry", batch_id, "-o", str(retry))
    assert ran.err == (  # issue 18: a 400 is final, as `run` holds it
        f"left out 2 requests refused with HTTP 400, which would fail the same way again; "
        f"`openai-batch results {batch_id} --failed` shows why\n"
        f"nothing to retry: every other request of {batch_id} succeeded\n"
    )
    assert not retry.exists()
    api.flaky_rule = lambda line: line["custom_id"] == "q2"  # a 500, which may pass next time
    flaky = _finished(client, api, tmp_path)
    ran = cli(client, "retry", flaky, "-o", str(retry))
    assert ran.err == (
        f"left out 2 requests refused with HTTP 400, which would fail the same way again; "
        f"`openai-batch results {flaky} --failed` shows why\n"
        f"wrote 1 request to {retry}\nnext: openai-batch submit {retry}\n"
    )
    assert [line["custom_id"] for line in ob.read_jsonl(retry)] == ["q2"]
    assert ob.write_failed_requests(tmp_path / "in.jsonl", client.results(flaky), retry) == 3
    clean = _finished(client, api, tmp_path, fail=())
    ran = cli(client, "retry", clean, "-o", str(tmp_path / "none.jsonl"))
    assert ran.err == f"nothing to retry: every request of {clean} succeeded\n"


def test_cli_download_of_a_batch_with_no_files(client: Client, api: FakeAPI) -> None:
    api.add_batch(id="batch_running", status="in_progress")
    ran = cli(client, "download", "batch_running")
    assert (ran.code, ran.err) == (
        1,
        "batch_running is in_progress and has no files to download.\n",
    )
    api.add_batch(id="batch_failed", status="failed")
    assert cli(client, "download", "batch_failed").code == 0


def test_cli_retry_refuses_a_batch_that_is_still_running(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    api.add_batch(id="batch_run", status="in_progress")
    ran = cli(client, "retry", "batch_run", "-o", str(tmp_path / "r.jsonl"))
    assert (ran.code, ran.err) == (
        1,
        "error: batch_run is still in_progress; its unfinished requests may yet run. "
        "Retry once it has finished, or cancel it first.\n",
    )
    assert not (tmp_path / "r.jsonl").exists()


def test_cli_list_asks_for_pages_of_100_past_100(client: Client, api: FakeAPI) -> None:
    for i in range(150):
        api.add_batch(created_at=_T0 - i)
    assert len(cli(client, "list", "--limit", "150").out.splitlines()) == 150
    assert [r.query["limit"] for r in api.requests] == ["100", "100"]


def test_cli_submit_says_which_file_it_uploaded_when_create_fails(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    path = tmp_path / "in.jsonl"
    ob.write_jsonl(path, chat_requests(2))
    api.arm("POST", r"/v1/batches", Fault.error(400, message="Project quota exceeded"))
    ran = cli(client, "submit", str(path))
    file_id = next(iter(api.files))
    assert ran.code == 1
    assert ran.err.splitlines()[:2] == [
        f"uploaded {path} as {file_id}",
        "error: Error code: 400 - Project quota exceeded (request id req_2)",
    ]


def test_results_and_retry_ride_out_a_broken_download(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    batch_id = _finished(client, api, tmp_path)
    batch = api.batches[batch_id]
    output = rf"/v1/files/{batch['output_file_id']}/content"
    api.arm("GET", output, Fault.cut_body(0.5))
    ran = cli(client, "results", batch_id)
    assert ran.code == 0 and [row.split("\t")[1] for row in ran.out.splitlines()] == [
        "ok",
        "failed",
        "ok",
        "failed",
        "ok",
    ]
    api.arm("GET", output, Fault.cut_body(0.3))
    ran = cli(client, "retry", batch_id, "-o", str(tmp_path / "retry.jsonl"))
    assert ran.code == 0 and ran.err.startswith("left out 2 requests refused with HTTP 400")
    api.arm("GET", output, Fault.cut_body(0.6))
    assert len(list(client.results(batch_id))) == 5


def test_cli_results_with_a_null_custom_id(client: Client, api: FakeAPI, tmp_path: Any) -> None:
    line = {"id": "r1", "custom_id": None, "response": {"status_code": 200, "body": {}}}
    output = api.add_file(json.dumps(line).encode() + b"\n", purpose="batch_output")["id"]
    api.add_batch(id="batch_n", status="completed", output_file_id=output)
    requests = write_lines(tmp_path / "in.jsonl", [request_line("a")])
    ran = cli(client, "results", "batch_n", "--input", requests)
    assert ran.code == 0 and ran.out.splitlines() == [
        "a\tmissing\t\tno result: the request did not run",
        "\tok\t200\t{}",
    ]


def test_cli_since_the_epoch_shows_every_batch(client: Client, api: FakeAPI) -> None:
    _seed_list(api)
    ran = cli(client, "list", "--since", "1970-01-01")
    assert len(ran.out.splitlines()) == len(api.batches)


def test_retry_with_nothing_to_retry_leaves_no_stale_file(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    clean = _finished(client, api, tmp_path, fail=())
    stale = tmp_path / "retry.jsonl"
    ob.write_jsonl(stale, chat_requests(2))
    ran = cli(client, "retry", clean, "-o", str(stale))
    assert (
        ran.err
        == f"nothing to retry: every request of {clean} succeeded; removed the old {stale}\n"
    )
    assert not stale.exists()


def test_cli_create_and_submit_with_an_idempotency_key_run_once(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    file_id = _seeded_file(api)
    argv = ["create", "--input-file-id", file_id, "--endpoint", "chat/completions"]
    first = cli(client, *argv, "--metadata", "job=nightly", "--idempotency-key", "run-7")
    again = cli(client, *argv, "--idempotency-key", "run-7")
    assert first.code == again.code == 0 and first.out == again.out and len(api.batches) == 1
    rows = [line.split("\t") for line in first.out.splitlines()]
    assert ["metadata", "job=nightly"] in rows and rows[-1] == ["idempotency_key", "run-7"]
    path = write_lines(tmp_path / "in.jsonl", [request_line("a")])
    submitted = [cli(client, "submit", path, "--idempotency-key", "run-8") for _ in range(2)]
    assert [ran.code for ran in submitted] == [0, 0] and submitted[0].out == submitted[1].out
    assert len(api.batches) == 2 and len(api.files) == 2  # the second submit uploaded nothing


def test_cli_wait_explains_a_failed_batch_in_a_pipe_and_on_a_terminal(
    client: Client, api: FakeAPI
) -> None:
    lines = [request_line(f"r{i}") for i in range(8)]
    for line in lines[1:]:
        line["body"] = {**line["body"], "model": "gpt-5-nope"}
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    file_id = api.add_file(content)["id"]
    batch = api.add_batch(id="batch_bad", input_file_id=file_id)
    api.clock.advance(400)  # asked long after the batch failed: its own clock still counts
    piped = cli(client, "wait", batch["id"])
    assert piped.code == 1
    mismatch = "mismatched_model: The model for this request does not match the batch's model"
    assert piped.err == (
        "batch_bad failed after 10s: 0/0/0 completed/failed/total\n"
        f"  lines 2–8: {mismatch} 'gpt-4o-mini'.\n"  # issue 18: once, not once a line
        "hint: fix what the errors name, then submit again; openai-batch get batch_bad\n"
    )
    assert cli(client, "wait", batch["id"], tty=True).err == piped.err


def test_cli_wait_explains_the_enqueued_token_limit(client: Client, api: FakeAPI) -> None:
    message = (
        "Enqueued token limit reached for gpt-4o in organization org-1. Limit: 90,000 enqueued "
        "tokens. Please try submitting fewer tasks or wait for other batch jobs to complete."
    )
    error = {"code": "token_limit_exceeded", "message": message, "param": None, "line": None}
    now = int(api.clock.now)
    api.add_batch(
        id="batch_tl",
        status="failed",
        created_at=now - 6,
        failed_at=now - 5,
        errors={"object": "list", "data": [error]},
    )
    ran = cli(client, "wait", "batch_tl")
    assert (ran.code, ran.err) == (
        1,
        "batch_tl failed after 1s: 0/0/0 completed/failed/total\n"
        f"  token_limit_exceeded: {message}\n"
        "hint: the organization's queue of enqueued tokens for this model is full; wait for "
        "running batches to finish (openai-batch list --status in_progress), or split the file "
        "(split_jsonl) and submit the parts one at a time\n",
    )


def test_cli_wait_on_an_expired_batch_says_what_did_not_run(client: Client, api: FakeAPI) -> None:
    counts = {"total": 10, "completed": 6, "failed": 1}
    now = int(api.clock.now)
    api.add_batch(
        id="batch_x",
        status="expired",
        created_at=now - 86400,
        expired_at=now,
        request_counts=counts,
    )
    ran = cli(client, "wait", "batch_x")
    assert ran.err == (
        "batch_x expired after 1d: 6/1/10 completed/failed/total\n"
        "hint: 3 requests did not run; openai-batch retry batch_x -o retry.jsonl writes them to "
        "a new file\n"
    )


def test_cli_wait_says_when_polls_fail_instead_of_freezing(client: Client, api: FakeAPI) -> None:
    batch = client.submit(chat_requests(2))
    api.arm("GET", rf"/v1/batches/{batch.id}", Fault.slow(0), *[Fault.error(503)] * 3)
    piped = cli(client, "wait", batch.id, "--interval", "4")
    assert piped.code == 0
    assert "note: the server answered 503, polling again in 4s\n" in piped.err
    api2 = cli(client, "wait", batch.id)  # a finished batch: nothing fails, nothing noted
    assert "note:" not in api2.err
    later = client.submit(chat_requests(2))
    api.arm("GET", rf"/v1/batches/{later.id}", Fault.slow(0), *[Fault.drop()] * 6)
    shown = cli(client, "wait", later.id, "--interval", "4", tty=True, width=100)
    assert "\r\x1b[2Kvalidating  (connection lost, polling again in 4s)" in shown.out


def test_results_of_a_running_batch_are_refused_unless_partial(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    batch = client.submit(chat_requests(3))
    with raises(ob.BatchNotFinishedError) as info:
        client.results(batch.id)
    assert str(info.value) == (
        f"{batch.id} is still validating: its results are not all in yet. Wait for it to "
        "finish, or ask for what has arrived (partial=True)."
    )
    assert info.value.batch.id == batch.id and list(client.results(batch, partial=True)) == []
    ran = cli(client, "results", batch.id)
    assert (ran.code, ran.out) == (1, "")
    assert ran.err.endswith(
        f"hint: openai-batch wait {batch.id}, then again; or add --partial for what has arrived\n"
    )
    partial = cli(client, "results", batch.id, "--partial")
    assert (partial.code, partial.out, partial.err) == (
        0,
        "",
        f"no results yet: {batch.id} is still validating, and a batch writes its results when "
        "it ends\n",
    )
    # A server that writes results as it goes: what has arrived, and the rest pending.
    line = {"custom_id": "q0", "response": {"status_code": 200, "body": {"choices": []}}}
    output = api.add_file(json.dumps(line).encode() + b"\n", purpose="batch_output")["id"]
    inputs = api.add_file(b"".join(r.to_json().encode() + b"\n" for r in chat_requests(3)))
    seeded = api.add_batch(status="in_progress", input_file_id=inputs["id"], output_file_id=output)
    partial = cli(client, "results", seeded["id"], "--partial")
    assert [row.split("\t")[:2] for row in partial.out.splitlines()] == [
        ["q0", "ok"],
        ["q1", "pending"],
        ["q2", "pending"],
    ]
    assert cli(client, "results", seeded["id"], "--partial", "--failed").out == ""
    stale = ob.Batch.from_dict(seeded)  # as it was seen while it ran
    seeded["status"] = "completed"
    assert [r.custom_id for r in client.results(stale)] == ["q0"]  # fetched again, not refused


def test_results_of_a_failed_batch_show_its_errors(client: Client, api: FakeAPI) -> None:
    error = {"code": "missing_model", "message": "The body must name a model.", "line": 2}
    api.add_batch(id="batch_f", status="failed", errors={"object": "list", "data": [error]})
    ran = cli(client, "results", "batch_f")
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == (
        "batch_f failed: -/-/- completed/failed/total\n".replace("-/-/-", "0/0/0")
        + "  line 2: missing_model: The body must name a model.\n"
        "hint: fix what the errors name, then submit again; openai-batch get batch_f\n"
    )


def test_results_warn_when_the_input_matches_no_result(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    batch_id = _finished(client, api, tmp_path, fail=())
    other = write_lines(tmp_path / "other.jsonl", [request_line("zz")])
    ran = cli(client, "results", batch_id, "--input", other)
    assert ran.code == 0 and ran.err == (
        f"warning: none of the 5 results of {batch_id} matches a request in {other}; is it the "
        "batch's input file?\n"
    )
    ran = cli(client, "results", batch_id, "--failed")
    assert (ran.out, ran.err) == (
        "",
        f"no failed requests: every request of {batch_id} succeeded\n",
    )


def test_retry_of_a_batch_that_failed_validation_warns(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    file_id = _seeded_file(api)
    error = {"code": "invalid_value", "message": "Unknown model 'gpt-5-nope'.", "line": 1}
    errors = {"object": "list", "data": [error]}
    api.add_batch(id="batch_v", status="failed", input_file_id=file_id, errors=errors)
    ran = cli(client, "retry", "batch_v", "-o", str(tmp_path / "retry.jsonl"))
    assert ran.err.splitlines()[0] == (
        "warning: batch_v failed before any request ran (line 1: invalid_value: Unknown model "
        "'gpt-5-nope'.); its lines will fail the same way again unless you fix them first"
    )


def test_wait_after_a_failed_first_poll_says_the_batch_goes_on(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 18: `wait` right after `submit`, its first poll a 503 (after its retries)."""
    api.add_batch(id="batch_w", status="in_progress")
    api.arm("GET", r"/v1/batches/batch_w", *[Fault.error(503)] * 3)
    ran = cli(client, "wait", "batch_w")
    assert ran.err == (
        "error: Error code: 503 - Injected 503 (request id req_3)\n"
        "hint: batch_w goes on running on the server; wait for it again with "
        "`openai-batch wait batch_w`\n"
    )
    path = tmp_path / "in.jsonl"
    ob.write_jsonl(path, chat_requests(2))
    api.arm("GET", r"/v1/batches/batch_[0-9a-f]+", *[Fault.error(503)] * 3)
    ran = cli(client, "submit", str(path), "--wait", "--json")
    batch_id = next(iter(b for b in api.batches if b != "batch_w"))
    assert ran.err.splitlines()[-1] == (
        f"hint: {batch_id} goes on running on the server; wait for it again with "
        f"`openai-batch wait {batch_id}`"
    )


def test_how_a_batch_ended_reads_cleanly(client: Client, api: FakeAPI, tmp_path: Any) -> None:
    """Issue 18: no "- completed/failed/total" for a batch with no counts; the next step is a
    whole command, with one space before its alternative."""
    now = int(api.clock.now)
    errors = {"object": "list", "data": [{"code": "x", "message": "bad line", "line": 3}]}
    api.add_batch(id="batch_nc", status="failed", created_at=now, failed_at=now, errors=errors)
    api.batches["batch_nc"].pop("request_counts", None)
    ran = cli(client, "wait", "batch_nc")
    assert ran.err.splitlines()[0] == "batch_nc failed after 0s"
    batch_id = _finished(client, api, tmp_path, fail=())
    ran = cli(client, "wait", batch_id)
    assert ran.err.splitlines()[-1] == (
        f"next: openai-batch results {batch_id} (or: openai-batch download {batch_id})"
    )


def test_results_refuses_an_input_file(client: Client, tmp_path: Any) -> None:
    """Issue 18: `results` given the requests, not their results, says so and exits 1."""
    source = _job_input(tmp_path, 3)
    ran = cli(client, "results", source)
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == (
        f"error: {source} holds requests (its lines have method and url, and no response), not "
        "results\nhint: give the batch's id (openai-batch results BATCH_ID --input FILE), or the "
        "RESULTS file that `openai-batch run` wrote\n"
    )


def test_retry_of_a_batch_over_the_token_limit_says_the_lines_are_fine(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    file_id = _seeded_file(api)
    error = {"code": "token_limit_exceeded", "message": "Enqueued token limit reached."}
    errors = {"object": "list", "data": [error]}
    api.add_batch(id="batch_q", status="failed", input_file_id=file_id, errors=errors)
    ran = cli(client, "retry", "batch_q", "-o", str(tmp_path / "retry.jsonl"))
    assert ran.err == (
        f"wrote 2 requests to {tmp_path / 'retry.jsonl'}\n"
        f"next: once running batches finish, openai-batch submit {tmp_path / 'retry.jsonl'} (the "
        "lines are fine; the enqueued-token limit was full)\n"
    )


def test_retry_with_the_wrong_input_file_writes_nothing(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    batch_id = _finished(client, api, tmp_path)
    other = write_lines(tmp_path / "other.jsonl", [request_line("zz")])
    target = tmp_path / "retry.jsonl"
    ran = cli(client, "retry", batch_id, "--input", other, "-o", str(target))
    assert ran.code == 1 and not target.exists()
    assert ran.err == (
        f"error: {other}: 1 problem\n  none of the 5 results matches a request here; is it "
        "the batch's input file? (nothing was written)\n"
    )


def test_submit_shows_warnings_and_strict_refuses_them(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    path = write_lines(tmp_path / "in.jsonl", [request_line("a"), ""])
    ran = cli(client, "submit", path, "--strict")
    assert ran.code == 1 and "blank, at the end of the file" in ran.err and api.files == {}
    ran = cli(client, "submit", path)
    assert ran.code == 0 and ran.err.startswith(
        f"warning: {path}: line 2: blank, at the end of the file\nuploaded "
    )


def test_a_wait_that_outlasts_an_outage_limit_says_the_batch_goes_on(
    client: Client, api: FakeAPI
) -> None:
    batch = client.submit(chat_requests(2))
    api.arm("GET", rf"/v1/batches/{batch.id}", Fault.slow(0), *[Fault.error(503)] * 200)
    ran = cli(client, "wait", batch.id, "--interval", "60")
    assert ran.code == 1 and ran.err.splitlines()[-1].startswith(
        f"{batch.id} is still validating (0/0/0 completed/failed/total) on the server; resume "
    )


def test_cli_lists_models_and_validate_checks_them(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    listed = cli(client, "models")
    assert listed.code == 0 and listed.out.splitlines()[0].split("\t")[0] == "gpt-4o-mini"
    good = write_lines(tmp_path / "good.jsonl", [request_line("a")])
    assert cli(client, "validate", good, "--check-models").code == 0
    bad = tmp_path / "bad.jsonl"
    ob.write_jsonl(bad, [BatchRequest.chat("a", "gpt-4o-mnii", "hi")])
    ran = cli(client, "validate", str(bad), "--check-models")
    assert ran.code == 0 and (
        "warning: model 'gpt-4o-mnii' is not among the 3 models the server lists; "
        "`openai-batch models` lists them" in ran.err
    )
    ran = cli(client, "validate", str(bad), "--check-models", "--json")  # issue 18
    assert json.loads(ran.out)["warnings"] == [
        "model 'gpt-4o-mnii' is not among the 3 models the server lists"
    ]


_STORE_IT = (
    "note: store the signing secret now (as OPENAI_WEBHOOK_SECRET, for one): "
    "it is not shown again\n"
)


def test_cli_webhooks_create_shows_the_secret_once(client: Client, api: FakeAPI) -> None:
    """Issue 17, item 16: the secret at creation (and rotation), with a note to keep it now,
    on stdout so that a pipe can take it; never again after."""
    ran = cli(client, "webhooks", "create", "https://hooks.example.com/openai", tty=True)
    [(made, secret)] = api.secrets.items()
    assert (ran.code, ran.err) == (0, _STORE_IT)
    assert ran.out == (
        f"id              {made}\n"
        "name            hooks.example.com\n"
        "url             https://hooks.example.com/openai\n"
        "event_types     batch.completed,batch.failed,batch.expired,batch.cancelled\n"
        "created         just now\n"
        f"signing_secret  {secret}\n"
    )
    ran = cli(client, "webhooks", "create", "https://b.example/x", "--name", "nightly",
              "--event-type", "batch.failed", "--event-type", "batch.expired")  # fmt: skip
    other = list(api.endpoints)[-1]
    assert (ran.code, ran.err) == (0, _STORE_IT)
    assert ran.out == (
        f"id\t{other}\nname\tnightly\nurl\thttps://b.example/x\n"
        "event_types\tbatch.failed,batch.expired\ncreated\t2023-11-14T22:13:20Z\n"
        f"signing_secret\t{api.secrets[other]}\n"
    )
    made_json = cli(client, "webhooks", "create", "https://c.example", "--json")
    shown = json.loads(made_json.out)
    assert shown == {**api.endpoints[shown["id"]], "signing_secret": api.secrets[shown["id"]]}
    assert made_json.err == _STORE_IT
    rotated = cli(client, "webhooks", "rotate-secret", made, "--keep-old-secret")
    assert rotated.out.splitlines()[-1] == f"signing_secret\t{api.secrets[made]}"
    assert rotated.err == _STORE_IT and api.secrets[made] != secret
    assert json.loads(api.requests[-1].body) == {"keep_old_secret_active_for_24_hours": True}
    later = [
        cli(client, "webhooks", "get", made, tty=True),
        cli(client, "webhooks", "list"),
        cli(client, "webhooks", "list", "--json"),
        cli(client, "webhooks", "test", made),
    ]
    assert later[0].out.splitlines()[-1] == f"secret_hint  whsec_...{api.secrets[made][-4:]}"
    for ran in later:
        assert ran.code == 0 and all(s not in ran.out + ran.err for s in api.secrets.values())
        assert secret not in ran.out + ran.err


def test_cli_webhooks_list_test_and_delete(client: Client, api: FakeAPI) -> None:
    for name in ("a", "b"):
        client.webhooks.create(url=f"https://{name}.example/hook", name=name, event_types=[
            "batch.completed"])  # fmt: skip
    first, second = list(api.endpoints)
    ran = cli(client, "webhooks", "list", tty=True)
    assert (ran.code, ran.err) == (0, "")
    assert ran.out == (
        "ID                           NAME  URL                     EVENT TYPES      CREATED\n"
        f"{second}  b     https://b.example/hook  batch.completed  just now\n"
        f"{first}  a     https://a.example/hook  batch.completed  just now\n"
    )
    ran = cli(client, "webhooks", "list", "--limit", "1", "--all")
    assert ran.out == (
        f"{second}\tb\thttps://b.example/hook\tbatch.completed\t2023-11-14T22:13:20Z\n"
        f"{first}\ta\thttps://a.example/hook\tbatch.completed\t2023-11-14T22:13:20Z\n"
    )
    tested = cli(client, "webhooks", "test", first, tty=True)
    assert (tested.code, tested.out) == (
        0, f"sent batch.completed to {first}: the endpoint answered 200\n")  # fmt: skip
    api.endpoint_status = 500  # the endpoint's own server fails: the command does too
    tested = cli(client, "webhooks", "test", first, "--event-type", "batch.failed")
    assert (tested.code, tested.out) == (1, f"{first}\tbatch.failed\t500\n")
    assert api.deliveries == [(first, "batch.completed"), (first, "batch.failed")]
    deleted = cli(client, "webhooks", "delete", first)
    assert (deleted.code, deleted.out) == (0, f"deleted {first}\n")
    deleted = cli(client, "webhooks", "delete", second, "--json")
    assert json.loads(deleted.out) == {
        "id": second, "object": "webhook_endpoint.deleted", "deleted": True}  # fmt: skip
    assert cli(client, "webhooks", "list", tty=True).err == "No webhook endpoints found.\n"


def test_cli_webhooks_errors_are_one_line_with_a_hint(client: Client, api: FakeAPI) -> None:
    ran = cli(client, "webhooks", "delete", "we_nope")
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == (
        "error: Error code: 404 - No webhook endpoint found with id 'we_nope'. (request id req_1)\n"
        "hint: check the id; `openai-batch webhooks list` shows your webhook endpoints\n"
    )
    ran = cli(client, "webhooks", "create", "http://plain.example")
    assert (ran.code, ran.err) == (1, "error: Error code: 400 - Invalid 'url': the URL must use "
                                   "https. (request id req_2)\n")  # fmt: skip
    ran = cli(client, "webhooks", "test", "we_x", "--event-type", "nope")
    assert ran.code == 1 and ran.err.startswith("error: Error code: 404")
    assert cli(client, "webhooks").code == 2 and cli(client, "webhooks", "get").code == 2
    assert api.secrets == {}


def test_cli_run_dedupe_and_cache_say_what_was_not_sent_and_cache_stats_and_prune(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    """Issue 19, item 5: run --dedupe --cache, its report line; cache stats on a terminal,
    in a pipe and as JSON; cache prune by model and by age; a cache that is not there."""
    source, _ = _with_copies(tmp_path)
    cache = str(tmp_path / "answers.sqlite")
    price = ["--price", "gpt-4o-mini=10000,20000"]
    ran = cli(client, "run", source, "-o", str(tmp_path / "one.jsonl"), "--dedupe", *price)
    assert ran.code == 0 and ran.err.splitlines()[-1] == (
        "0 requests answered from the cache, 3 duplicates not sent; saved $0.24 at your --price"
    )
    args = ["run", source, "-o", str(tmp_path / "two.jsonl"), "--dedupe", "--cache", cache]
    assert cli(client, *args, *price).code == 0
    again = cli(client, *args[:3], str(tmp_path / "three.jsonl"), *args[4:], *price)
    assert again.code == 0 and again.err.splitlines()[-1] == (
        "6 requests answered from the cache, 0 duplicates not sent; saved $0.48 at your --price"
    )
    shown = cli(client, "cache", "stats", cache, *price, tty=True)
    lines = shown.out.splitlines()
    assert lines[0].startswith(f"{cache}: 3 answers, ") and lines[1:] == [
        "MODEL        ANSWERS  TOKENS              OLDEST    NEWEST    HITS  SAVED",
        "gpt-4o-mini  3        6 tokens in, 9 out  just now  just now  6     $0.48",
    ]
    piped = cli(client, "cache", "stats", cache).out.split("\t")  # at the table's prices
    assert piped[:4] + piped[6:] == ["gpt-4o-mini", "3", "6", "9", "6", "0.000006\n"]
    assert piped[4] == piped[5] and piped[4].endswith("Z")
    figures = json.loads(cli(client, "cache", "stats", cache, "--json").out)
    assert (figures["entries"], figures["models"]["gpt-4o-mini"]["hits"]) == (3, 6)
    kept = cli(client, "cache", "prune", cache, "--older-than", "1")
    assert (kept.out, kept.err) == ("", f"{cache}: 0 answers removed, " + kept.err.split(", ")[1])
    pruned = cli(client, "cache", "prune", cache, "--model", "gpt-4o-mini", "--vacuum", "--json")
    assert json.loads(pruned.out)["removed"] == {"gpt-4o-mini": 3}
    assert json.loads(cli(client, "cache", "stats", cache, "--json").out)["entries"] == 0
    nothing = cli(client, "cache", "prune", cache)
    assert (nothing.code, nothing.err) == (
        2,
        "error: say what to prune: --older-than DAYS, --model MODEL, or both\n",
    )
    missing = cli(client, "cache", "stats", str(tmp_path / "none.sqlite"))
    assert missing.code == 1 and missing.err == (
        f"error: there is no cache at {tmp_path / 'none.sqlite'}; `openai-batch run INPUT -o "
        f"RESULTS --cache {tmp_path / 'none.sqlite'}` makes one\n"
    )


# ---------------------------------------------------------------- Command line: arguments and main


def test_cli_usage_errors_exit_2(client: Client, api: FakeAPI) -> None:
    ran = cli(client, "create", "--input-file-id", "f", "--endpoint", "e", "--metadata", "novalue")
    assert ran.code == 2 and "argument --metadata: expected KEY=VALUE, got 'novalue'" in ran.err
    many = [arg for i in range(17) for arg in ("--metadata", f"k{i}=v")]
    ran = cli(client, "create", "--input-file-id", "f", "--endpoint", "e", *many)
    # Refused before sending as the API refuses it (a BadRequestError), so not a usage error.
    assert (ran.code, ran.err) == (1, f"error: Error code: 400 - {_TOO_MANY}\n")
    assert cli(client, "wait", "b", "--interval", "-1").code == 2
    assert cli(client, "frobnicate").code == 2
    assert cli(client).code == 2
    assert api.requests == []


def test_cli_version_and_help(client: Client) -> None:
    ran = cli(client, "--version")
    assert (ran.code, ran.out) == (0, f"openai-batch {ob.__version__}\n")
    ran = cli(client, "--help")
    assert ran.code == 0 and "OPENAI_API_KEY" in ran.out and "retry" in ran.out
    assert "process list" in cli(client, "list", "--help").out


def test_cli_without_a_key_explains_how_to_set_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert ob.main(["list"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "error: The api_key client option must be set either by passing api_key to the client or "
        "by setting the OPENAI_API_KEY environment variable\n"
        "hint: export OPENAI_API_KEY=sk-... (or see --api-key); a local server that takes no "
        "key needs one set all the same: OPENAI_API_KEY=unused\n"
    )


def test_cli_never_echoes_a_key_given_on_the_command_line(
    api: FakeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    api.add_batch(id="batch_1")
    code = ob.main(["--api-key", API_KEY, "--base-url", api.base_url, "get", API_KEY])
    out, err = capsys.readouterr()
    _SEEN.extend([out, err])
    assert code == 1 and "[redacted]" in err
    assert (
        ob.main(
            [
                "get",
                "batch_1",
                "--api-key",
                API_KEY,
                "--base-url",
                api.base_url,
                "--max-retries",
                "0",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("id\tbatch_1\n")


def test_module_help_runs_on_this_interpreter() -> None:
    done = _module("--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: openai-batch ")
    assert done.stderr == ""


def test_module_without_a_key_fails_clearly_without_a_traceback() -> None:
    done = _module("list")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: The api_key client option must be set")
    assert "Traceback" not in done.stderr


def test_module_results_prints_an_unpaired_surrogate_as_its_escape(tmp_path: Any) -> None:
    body = {"content": "cut \ud83d"}  # a server's, in a result: read as written
    line = {"custom_id": "a", "response": {"status_code": 200, "body": body}}
    path = write_lines(tmp_path / "out.jsonl", [line])
    done = _module("results", "--json", path)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == json.dumps(line) + "\n"  # the escape is JSON's own: "cut \\ud83d"
    assert _module("results", path).stdout == 'a\tok\t200\t{"content": "cut \\ud83d"}\n'


def test_module_list_into_a_reader_that_stops_early(api: FakeAPI) -> None:
    for i in range(1500):
        api.add_batch(id=f"batch_{i:05d}", created_at=_T0 - i)
    process = subprocess.Popen(
        [sys.executable, "-m", "openai_batch", "list", "--all"],
        env=_module_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    code = process.wait(timeout=60)
    err = process.stderr.read().decode()
    process.stderr.close()
    _SEEN.append(err)
    assert first.startswith(b"batch_00000\tvalidating\t")
    assert (code, err) == (141, "")


def _read_terminal(leader: int, process: subprocess.Popen[bytes], api: FakeAPI) -> str:
    """What the program wrote to its terminal, while the fake's clock runs a second a tick.

    The clock starts once the program has drawn its first line, so a slow start-up cannot let
    the batch finish before the program has watched it run.
    """
    import select

    chunks: list[bytes] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.03)
        if not ready:
            if chunks:
                api.clock.advance(1)
            if process.poll() is not None:
                break
            continue
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the program closed its side
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_wait_on_a_terminal_redraws_one_live_line(api: FakeAPI) -> None:
    import pty  # noqa: F401  (the standard library's terminal support)

    batch = make_client(api).submit(chat_requests(20, fail=(4,)))
    leader, follower = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "openai_batch", "wait", batch.id, "--interval", "0.1"],
        env=_module_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url, COLUMNS="100"),
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    screen = _read_terminal(leader, process, api)
    code = process.wait(timeout=30)
    _SEEN.append(screen)
    assert code == 0
    redraws = screen.count("\r\x1b[2K")
    assert redraws >= 3
    assert "\x1b[34mvalidating " in screen and "\x1b[32mcompleted  " in screen
    assert "[========================] 100%  19/1/20" in screen
    tail = screen.rsplit("\r\x1b[2K", 1)[1]
    assert tail.count("\n") == 3  # the live line ends once, then the summary and the hint
    assert f"{batch.id} completed after" in tail


def test_cli_bad_arguments_exit_2_and_runtime_errors_1(
    client: Client, api: FakeAPI, tmp_path: Any
) -> None:
    assert cli(client, "get", "").code == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\n")
    ran = cli(client, "validate", str(bad))
    assert ran.code == 1 and "not UTF-8" in ran.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--timeout", "inf", "list"], "argument --timeout: expected a number of seconds from 0"),
        (["--timeout", "1e10", "list"], "argument --timeout: expected a number of seconds from 0"),
        (["wait", "b", "--interval", "inf"], "argument --interval: expected a number of seconds"),
        (["wait", "b", "--timeout", "nan"], "argument --timeout: expected a number of seconds"),
        (["--max-retries", "-1", "list"], "argument --max-retries: expected a whole number from 0"),
        (["list", "--limit", "0"], "argument --limit: expected a whole number from 1 to 1e+06"),
        (
            ["create", "--input-file-id", "f", "--endpoint", "e", "--output-expires-after", "5"],
            "argument --output-expires-after: expected a whole number from 3600 to 2.592e+06",
        ),
    ],
)
def test_cli_number_flags_take_only_finite_sane_values(
    client: Client, api: FakeAPI, argv: list[str], message: str
) -> None:
    ran = cli(client, *argv)
    assert ran.code == 2 and message in ran.err and "Traceback" not in ran.err
    assert api.requests == []


def test_cli_with_stdout_closed_says_so(api: FakeAPI) -> None:
    api.add_batch(id="batch_1")
    env = _module_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
    command = f"{shlex.quote(sys.executable)} -m openai_batch get batch_1 >&-"
    ran = subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60
    )
    assert (ran.returncode, ran.stderr) == (
        1,
        "openai-batch: error: standard output is closed; nothing was done\n",
    )
    assert api.requests == []


def test_cli_an_unexpected_failure_is_a_message_not_a_traceback(
    client: Client, api: FakeAPI
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("something odd")

    client.batches.retrieve = broken  # type: ignore[method-assign]
    ran = cli(client, "get", "batch_1")
    assert (ran.code, ran.err) == (
        1,
        "error: RuntimeError: something odd (unexpected; please report it)\n",
    )


def test_cli_expands_a_tilde_where_a_shell_would(
    client: Client, api: FakeAPI, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch_id = _finished(client, api, tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    ran = cli(client, "download", batch_id, "--output-dir=~/x")
    assert ran.code == 0 and not (tmp_path / "~").exists()
    assert sorted(os.listdir(tmp_path / "home" / "x")) == [
        f"{batch_id}_errors.jsonl",
        f"{batch_id}_output.jsonl",
    ]


def test_no_command_lists_them_and_a_typo_gets_the_closest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert ob.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: openai-batch") and "  validate " in err and "  results " in err
    assert ob.main(["lst"]) == 2
    assert capsys.readouterr().err.endswith("; did you mean 'list'?\n")
    assert ob.main(["files", "lst"]) == 2
    assert capsys.readouterr().err.endswith("; did you mean 'list'?\n")
    assert ob.main(["files"]) == 2
    assert "  content " in capsys.readouterr().err


def test_wait_takes_deadline_and_validate_takes_the_connection_options(
    client: Client, api: FakeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = client.submit(chat_requests(50))
    ran = cli(client, "wait", batch.id, "--interval", "10", "--deadline", "30")
    assert ran.code == 124 and ran.err.startswith("error: gave up waiting after 30 s: ")
    assert len(ran.err.splitlines()) == 1
    with pytest.raises(SystemExit):  # issue 18: --check-models needs them; any command takes them
        ob._parser().parse_args(["validate", "--help"])
    shown = capsys.readouterr().out
    assert "--base-url" in shown and "--api-key" in shown and "--endpoint" in shown
    with pytest.raises(SystemExit):
        ob._parser().parse_args(["wait", "--help"])
    assert "--deadline S" in capsys.readouterr().out


def test_sigterm_during_a_download_leaves_no_partial_file(api: FakeAPI, tmp_path: Any) -> None:
    import signal

    file_id = api.add_file(b"x" * 4_000_000)["id"]
    api.arm("GET", rf"/v1/files/{file_id}/content", Fault.stall(30))
    env = _module_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
    target = tmp_path / "out.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "openai_batch", "files", "content", file_id, "-o", str(target)],
        env=env,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while not any(name.startswith(".out.jsonl.") for name in os.listdir(tmp_path)):
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.02)  # real time: a real process, half a body in, waiting for the rest
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 128 + signal.SIGTERM
    assert os.listdir(tmp_path) == []


def test_global_options_work_before_or_after_any_command(
    api: FakeAPI, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18: --base-url and the rest, before or after the command's name, validate too."""
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    bad = tmp_path / "bad.jsonl"
    ob.write_jsonl(bad, [BatchRequest.chat("a", "gpt-4o-mnii", "hi")])
    parser = ob._parser()
    options = ["--base-url", api.base_url, "--organization", "org", "--project", "proj"]
    options += ["--max-retries", "0", "--azure", "--api-key", "sk-other-0000000000"]
    commands = [["validate", str(bad)], ["list"], ["files", "list"], ["models"], ["get", "b"]]
    commands += [["run", str(bad), "-o", "out.jsonl"], ["wait", "b"], ["results", "b"]]
    for command in commands:
        for argv in ([*options, *command], [*command, *options]):
            args = parser.parse_args(argv)
            got = (args.base_url, args.organization, args.project, args.max_retries, args.azure)
            assert got == (api.base_url, "org", "proj", 0, True), argv
            assert args.api_key == "sk-other-0000000000"
        if command[0] != "wait":  # after wait and submit, --timeout is the deadline
            assert parser.parse_args([*command, "--timeout", "5"]).timeout == 5
    code = ob.main(["validate", str(bad), "--check-models", "--json", "--base-url", api.base_url])
    assert code == 0 and [r.path for r in api.requests] == ["/v1/models"]


# ---------------------------------------------------------------- The README runs


def test_the_readme_gives_the_two_commands_and_ci_runs_the_second() -> None:
    folder = os.path.dirname(os.path.abspath(ob.__file__))
    with open(os.path.join(folder, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    first, second = [line.split("  #")[0].strip() for line in block.strip().splitlines()]
    assert first == "python -m openai_batch validate examples/requests.jsonl"
    assert second == "python -m pip install pytest && python -m pytest -q"
    with open(os.path.join(folder, ".ci", "run"), encoding="utf-8") as handle:
        assert f"TEST_COMMAND='{second}'" in handle.read()
    ran = subprocess.run(
        [sys.executable, *first.split()[1:]],
        cwd=folder,
        env=_module_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (ran.returncode, ran.stderr) == (0, "")
    assert ran.stdout.split("\t")[:3] == ["ok", "examples/requests.jsonl", "requests=4"]


def test_every_python_example_in_the_readme_runs(
    api: FakeAPI, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api.seconds_validating = api.seconds_per_request = api.seconds_finalizing = 0.0
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)
    monkeypatch.chdir(tmp_path)
    blocks = _readme_blocks("python")
    assert len(blocks) >= 3
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, _README, "exec"), namespace)
    printed = capsys.readouterr().out
    _SEEN.append(printed)
    assert "q0 echo: What is 2+2?" in printed and "q2 echo: Capital of France?" in printed
    assert "404 req_" in printed and (tmp_path / "output.jsonl").exists()
    assert "\nTrue\n" in printed and "\nFalse\n" not in printed  # the tour's status check
    assert "\n120000 120000 0 6 1\n" in printed  # the worked example: 120,000 in 6 batches
    assert "\nmax_cost {'max_cost': 6} 0.1\n6 True\n" in printed  # Money: the cap
    assert "\n5 5 2\n" in printed and "\n0 4 1\n" in printed  # dedupe; a cache, one line edited


_README_VARIES = re.compile(r"(?<![\w-])[0-9a-f]{32}(?![\w-])|\breq_[0-9]+")


def _readme_commands() -> list[tuple[str, str]]:
    """Each `$ ` line of README.md's console blocks, in order, with the output shown under it."""
    found = []
    for block in _readme_blocks("console"):
        for chunk in re.split(r"^\$ ", block, flags=re.MULTILINE)[1:]:
            command, _, output = chunk.partition("\n")
            found.append((command, output.rstrip("\n")))
    return found


def _readme_session(api: FakeAPI, folder: Any) -> Client:
    """What the README's shell examples start from: two input files and two older batches."""
    prompts = ["What is 2+2?", "Name a prime.", "Capital of Italy?", "Capital of France?"]
    ids = ["q0", "q1", "fail-2", "q3"]
    ob.write_jsonl(
        folder / "requests.jsonl",
        [BatchRequest.chat(i, "gpt-4o-mini", p) for i, p in zip(ids, prompts)],
    )
    bad = [request_line("a"), request_line("a", method="GET"), '{"custom_id": "b", url: 1}']
    bad.append(request_line("c", body={"model": "gpt-4o", "messages": []}))
    write_lines(folder / "bad.jsonl", bad)
    asked = [0, 1, 0, 2, 3, 1, 0]  # four questions in seven requests
    copies = [BatchRequest.chat(f"d{n}", "gpt-4o-mini", prompts[i]) for n, i in enumerate(asked)]
    ob.write_jsonl(folder / "duplicates.jsonl", copies)
    now = int(api.clock.now)
    counts = {"total": 5000, "completed": 4998, "failed": 2}
    api.add_batch(
        id="batch_6f1c0e2a",
        status="completed",
        endpoint="/v1/embeddings",
        model="text-embedding-3-small",
        created_at=now - 2 * 86400 + 26,
        request_counts=counts,
    )
    counts = {"total": 800, "completed": 640, "failed": 0}
    api.add_batch(
        id="batch_93ab77d0",
        status="expired",
        model="gpt-4o",
        created_at=now - 9 * 86400 + 26,
        request_counts=counts,
    )
    return make_client(api)


def _readme_run(client: Client, command: str) -> tuple[int, str]:
    """Run one README command line in-process: its exit code and what a terminal would show."""
    import contextlib
    import io

    line = command.partition("  #")[0]
    line, _, pipe = line.strip().partition(" | ")
    argv = shlex.split(line)
    assert argv[0] == "openai-batch", command
    shown = io.StringIO()
    patch = pytest.MonkeyPatch()
    patch.setenv("OPENAI_BATCH_FORCE_TTY", "0" if pipe else "1")
    patch.setenv("COLUMNS", "100")
    patch.setenv("NO_COLOR", "1")
    try:
        with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(shown):
            code = ob.main(argv[1:], client=client)
    finally:
        patch.undo()
    lines = _screen(shown.getvalue())  # a redrawn live line leaves what was drawn last
    if pipe.strip().startswith("head -"):
        lines = lines[: int(pipe.split("-")[1].split()[0])]
    elif pipe.startswith("cut -c1-"):
        lines = [line[: int(pipe[len("cut -c1-") :].split()[0])] for line in lines]
    return code, "\n".join(lines).rstrip("\n")


def _readme_expected_code(command: str) -> int:
    found = re.search(r"#.*\bexit ([0-9]+)", command)
    return int(found.group(1)) if found else 0


def test_every_shell_example_in_the_readme_runs(
    api: FakeAPI, tmp_path: Any, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    client = _readme_session(api, tmp_path)
    commands = _readme_commands()
    assert len(commands) >= 15
    for command, shown in commands:
        code, output = _readme_run(client, command)
        _SEEN.append(output)
        assert code == _readme_expected_code(command), command
        assert _README_VARIES.sub("…", output) == _README_VARIES.sub("…", shown), command


def _update_readme() -> None:
    """Write into README.md the outputs its shell examples give now."""
    import pathlib
    import tempfile

    text = _readme_text()
    with tempfile.TemporaryDirectory() as folder, FakeAPI().serve() as api:
        os.chdir(folder)
        client = _readme_session(api, pathlib.Path(folder))
        for command, shown in _readme_commands():
            _, output = _readme_run(client, command)
            before = f"$ {command}\n{shown}\n" if shown else f"$ {command}\n"
            after = f"$ {command}\n{output}\n" if output else f"$ {command}\n"
            assert before in text, command
            text = text.replace(before, after, 1)
    with open(_README, "w", encoding="utf-8") as handle:
        handle.write(text)


if __name__ == "__main__" and sys.argv[1:] == ["--update-readme"]:
    _update_readme()
