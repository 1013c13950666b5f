"""The OpenAI Batch API from one standard-library file.

Upload a JSONL file of requests, start a batch, wait for it and read the results::

    from openai_batch import OpenAI

    client = OpenAI()  # the key comes from OPENAI_API_KEY
    upload = client.files.create(file="requests.jsonl", purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    print(batch.id, batch.status)

The calls, field names and exceptions are those of the official ``openai`` package, so code
moves between the two by changing an import; as there, the module is a client too
(``openai_batch.api_key = "..."``, then ``openai_batch.batches.retrieve(batch_id)``). From a
shell: ``python -m openai_batch --help``.

Map: the sections of this file, in order. Each uses only those above it; the command line
comes last and only parses, calls the library and prints. ``grep -n '^# ' openai_batch.py``
prints the same titles, with their lines.

    Constants
        DEFAULT_BASE_URL, MAX_REQUESTS, IDEMPOTENCY_METADATA_KEY -- defaults and the API's limits
    Exceptions
        OpenAIError, APIStatusError, OutcomeUnknownError, InputFileError -- errors with fields
    Text and JSON lines: one line read strictly and written compactly; words for messages
        _decode_line, _dumps_line, _clip, _plural -- no NaN, no Infinity, no lone surrogate
    Enums and API objects
        BatchStatus, Batch, FileObject, BatchRequest, BatchResult, CursorPage -- JSON in, objects
    HTTP transport: timeouts, retries, connections and the waiting policy
        Timeout, _Transport, _Pool, _RetryPolicy, _Backoff, _Outage -- keys never leave their host
    Downloads and atomic files: content read as it arrives, files written whole or not at all
        BinaryContent, _AtomicFile, _PartFile -- a download resumes; a file is never half written
    Resources: client.batches and client.files
        Batches, Files, Models, _Create, LegacyAPIResponse -- the calls; create exactly once
    Webhooks: OpenAI's signed event notices, verified; the endpoints that receive them
        Webhooks, WebhookEvent, WebhookEndpoint -- unwrap, verify_signature, endpoints managed
    Prices and costs: what a batch will cost, by the model's batch price
        _Prices, _TokenTally, InputEstimate, _spend -- prices; tokens without a tokenizer; spend
    JSONL helpers: write, read, validate and split input files; read and join results
        validate_input, split_jsonl, iter_results, join_results -- the batch file's workflow
    Jobs: work of any size in rounds, resumed after a crash; the engine and its record
        _Job, _Record, _BatchRounds, _CostCap, _Sieve, _Cache, JobReport -- client.run, its record
    Direct rounds: the same batch file, straight to a server with no Batch API
        _DirectRounds, _DirectPolicy, _WorkQueue, _Answers -- run --direct's round driver
    The client
        Client, OpenAI -- the resources and jobs behind one object
    Azure OpenAI: the same client, with Azure's address, api-version and credentials
        AzureOpenAI -- deployments, api-version, api-key or Entra ID tokens
    Async: AsyncOpenAI and AsyncAzureOpenAI, the same calls awaited
        AsyncOpenAI, AsyncAzureOpenAI, AsyncPaginator -- each call run on a thread
    The module client: openai_batch.api_key = "...", then openai_batch.batches.create(...)
        __getattr__, _ModuleResource, _module_client -- made at first use, again on a change
    Command line: output helpers
        _Console, _table, _LiveProgress -- a table on a terminal, tab-separated lines in a pipe
    Command line: commands
        _cmd_list, _cmd_validate, _cmd_run, _cmd_results -- one function a command
    Command line: arguments and main
        main, _parser, _hint -- parse, dispatch, and one place that turns errors into hints
"""

from __future__ import annotations

import _thread
import enum
import io
import json
import math
import os
import sys
import time

#: `typing` costs as much to import as `json` does; annotations are strings here
#: (`from __future__ import annotations`), so it is needed only by type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    import http.client
    from typing import (
        IO,
        Any,
        Awaitable,
        Callable,
        Dict,
        Iterable,
        Iterator,
        Mapping,
        NoReturn,
        Optional,
        Protocol,
        Tuple,
        TypeVar,
        Union,
    )
    from typing import Generic as _Generic

    from typing_extensions import dataclass_transform

    _M = TypeVar("_M", bound="_Model")
    _E = TypeVar("_E", bound="APIError")
    _T = TypeVar("_T")
    _AnyStr = TypeVar("_AnyStr", str, bytes)
    # how an async call runs a blocking one: `_in_thread`, or a client's own `_run`
    _Run = Callable[..., Awaitable[Any]]
    # a sent request's line for RESULTS: custom_id, request, line, succeeded, why not
    _Answered = Tuple[str, bytes, bytes, bool, str]
    _Headers = Mapping[str, Optional[str]]

    class _TimeoutLike(Protocol):
        """Anything with httpx.Timeout's four phases: httpx's own, or this module's."""

        @property
        def connect(self) -> float | None: ...
        @property
        def read(self) -> float | None: ...
        @property
        def write(self) -> float | None: ...
        @property
        def pool(self) -> float | None: ...

    # A timeout as callers give it; as the transport keeps it (seconds, or seconds by phase).
    _TimeoutArg = Union[float, None, _TimeoutLike, "NotGiven"]
    _Seconds = Union[float, None, "Timeout"]
    _Query = Mapping[str, object]
    # model_dump's include and exclude: field names, or a mapping of a field to its own
    _Pick = Union[Iterable[str], Mapping[str, Any]]
    _FileContent = Union[bytes, IO[bytes]]
    _FileInput = Union[
        str,
        "os.PathLike[str]",
        _FileContent,
        # (filename, content[, content type]); a str content is sent as UTF-8, as httpx does
        Tuple[Optional[str], Union[_FileContent, str]],
        Tuple[Optional[str], Union[_FileContent, str], str],
    ]
else:

    class _Generic:
        """Run-time stand-in for typing.Generic: the generic classes only need `[]` to work."""

        def __class_getitem__(cls, item: object) -> type:
            return cls

    _M, _T = "_M", "_T"

__all__ = [
    # the client and its resources
    "Client",
    "OpenAI",
    "AzureOpenAI",
    "AsyncOpenAI",
    "AsyncAzureOpenAI",
    "AsyncPaginator",
    "AsyncCursorPage",
    "AsyncBatches",
    "AsyncFiles",
    "AsyncModels",
    "Batches",
    "Files",
    "Models",
    "Model",
    "ModelDeleted",
    "LegacyAPIResponse",
    "Webhooks",
    "AsyncWebhooks",
    "WebhookEndpoint",
    "WebhookEndpointWithSecret",
    "DeletedWebhookEndpoint",
    "WebhookEndpointTestResult",
    "WebhookEventTypeList",
    "WebhookEvent",
    "WebhookEventData",
    "BatchWebhookEventData",
    "BatchCompletedWebhookEvent",
    "BatchFailedWebhookEvent",
    "BatchExpiredWebhookEvent",
    "BatchCancelledWebhookEvent",
    "InvalidWebhookSignatureError",
    # API objects
    "Batch",
    "BatchError",
    "BatchErrors",
    "BatchRequestCounts",
    "BatchUsage",
    "InputTokensDetails",
    "OutputTokensDetails",
    "FileObject",
    "FileDeleted",
    "CursorPage",
    "PageInfo",
    "BinaryContent",
    # arguments, as the official package spells them
    "Timeout",
    "NotGiven",
    "NOT_GIVEN",
    "Omit",
    # enums
    "BatchStatus",
    "BatchEndpoint",
    "CompletionWindow",
    # batch input and output lines
    "BatchRequest",
    "BatchResult",
    "BatchResultError",
    "InputSummary",
    "InputEstimate",
    # JSONL helpers
    "write_jsonl",
    "read_jsonl",
    "validate_input",
    "split_jsonl",
    "iter_results",
    "join_results",
    "write_failed_requests",
    # jobs
    "JobReport",
    "JobStoppedError",
    # errors, named as in the official package, then this module's own
    "OpenAIError",
    "APIError",
    "APIStatusError",
    "APIResponseValidationError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "APIConnectionError",
    "APITimeoutError",
    "OutcomeUnknownError",
    "DuplicateBatchError",
    "InputFileError",
    "WaitTimeoutError",
    "BatchNotFinishedError",
    "HTTPStatusError",
    # constants
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_RETRIES",
    "MAX_REQUESTS",
    "MAX_INPUT_BYTES",
    "MAX_EMBEDDING_INPUTS",
    "IDEMPOTENCY_METADATA_KEY",
    "DEFAULT_MAX_ACTIVE",
    "DEFAULT_ROUNDS",
    "DEFAULT_CONCURRENCY",
    # command line
    "main",
]

__version__ = "0.1.0"

###############################################################################################
# Constants
###############################################################################################

#: Where requests go unless ``base_url`` or ``OPENAI_BASE_URL`` says otherwise.
DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Seconds a request may wait on the network before it times out (as in the official package).
DEFAULT_TIMEOUT = 600.0
#: How many times a failed request is sent again (as in the official package).
DEFAULT_MAX_RETRIES = 2
#: The most requests an input file may hold (the Batch API's limits, as documented in 2025).
MAX_REQUESTS = 50_000
#: The most bytes an input file may hold.
MAX_INPUT_BYTES = 200 * 1024 * 1024
#: The most embedding inputs, across all requests, of a /v1/embeddings batch.
MAX_EMBEDDING_INPUTS = 50_000

#: How many of a job's batches run at once unless told otherwise: enough to keep the service
#: busy, few enough that one job does not take an organisation's whole queue.
DEFAULT_MAX_ACTIVE = 4
#: How many rounds a job runs: the first, and one more for what failed in a way that may pass
#: (a 5xx or 429 line, a batch that expired or was cancelled) and then a last chance.
DEFAULT_ROUNDS = 3
#: How many requests a direct job (``run --direct``) keeps in flight at most: fewer when the
#: server answers 429.
DEFAULT_CONCURRENCY = 16
_CONNECT_TIMEOUT = 5.0  # the official package's connect timeout
_MAX_TIMEOUT = 7 * 86400.0  # a socket cannot wait longer than about 24 days; a week is plenty
_INITIAL_RETRY_DELAY = 0.5
_MAX_RETRY_DELAY = 8.0
_MAX_RETRY_AFTER = 120.0  # a server asking for a longer wait gets an error, not a hung process
_RETRY_STATUSES = frozenset({408, 409, 429})
_EARLIEST_DATE, _LATEST_DATE = 631_152_000.0, 7_258_118_400.0  # 1990 and 2200: sane HTTP dates
_MAX_REDIRECTS = 5
_POOL_IDLE_SECONDS = 30.0  # servers close idle keep-alive connections; don't reuse old ones
_CHUNK = 1024 * 1024
#: The metadata key under which ``batches.create`` stores each call's idempotency key, so that
#: the batch a call made can be told from every other by identity, never by time or file.
IDEMPOTENCY_METADATA_KEY = "openai_batch_idempotency_key"
#: Stored beside the key when the caller's metadata was {}, so that it reads back as {} (the key
#: alone reads back as None, as a batch made without metadata).
_EMPTY_METADATA = ("openai_batch_metadata", "{}")
#: After a create call's outcome is unknown, the batch list is read for its key at these pauses
#: (30 s in all): the list can lag creation by seconds, and a request that timed out may still
#: be on its way to the server.
_SETTLE_PAUSES = (0.0, 1.0, 2.0, 4.0, 8.0, 15.0)
#: How far back, on the server's clock, the list is read for a key: for a caller's own key, 30
#: days; for a call's recovery, its own duration plus an hour, which no clock's rounding or a
#: fleet's skew comes near.
_KEY_HORIZON, _KEY_SLACK = 30 * 86400.0, 3600.0
_MAX_KEY_LENGTH = 255
_METADATA_MAX_KEYS, _METADATA_MAX_KEY, _METADATA_MAX_VALUE = 16, 64, 512
_MAX_CONCURRENCY = 1000  # threads, one a request in flight
_FIRST_POLL, _MAX_POLL = 2.0, 60.0  # seconds between polls, growing by half each time (_Backoff)
_MAX_OUTAGE = 600.0  # seconds a server that has stopped answering is waited for (_Outage)
_FIRST_ANSWER_WAIT = 30.0  # ... and one that has not answered once in this run

###############################################################################################
# Exceptions
###############################################################################################


class _RequestInfo:
    """The request an error belongs to: method and URL, never headers (they hold the key).

    Private classes here are plain, not dataclasses: ``@dataclass`` takes most of the time
    this module needs to import, and is kept for the public API objects.
    """

    __slots__ = ("method", "url")

    def __init__(self, method: str, url: str) -> None:
        self.method = method
        self.url = url

    def __repr__(self) -> str:
        return f"_RequestInfo({self.method!r}, {self.url!r})"


class OpenAIError(Exception):
    """Base of every error this module raises on purpose."""


class APIError(OpenAIError):
    """An error from the API, or on the way to it.

    ``body`` is the decoded JSON error object when the server sent one, its text when it sent
    something else, and None when there was no response; ``code``, ``param`` and ``type`` come
    from the JSON error object.
    """

    message: str
    request: _RequestInfo | None
    body: object
    code: str | None
    param: str | None
    type: str | None

    def __init__(
        self, message: str, request: _RequestInfo | None = None, *, body: object = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request = request
        self.body = body
        fields_ = body if isinstance(body, dict) else {}
        code = fields_.get("code")
        # as the official package: a code is text, even one a server sent as a number
        self.code = None if code is None else str(code)
        self.param = fields_.get("param")
        self.type = fields_.get("type")

    def __str__(self) -> str:
        request_id = getattr(self, "request_id", None)
        return f"{self.message} (request id {request_id})" if request_id else self.message


class APIResponseValidationError(APIError):
    """The server answered, but not with what the API promises (not JSON, wrong shape)."""

    status_code: int
    request_id: str | None

    def __init__(
        self,
        message: str,
        request: _RequestInfo | None = None,
        *,
        body: object = None,
        status_code: int = 200,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, request, body=body)
        self.status_code = status_code
        self.request_id = request_id


class APIStatusError(APIError):
    """The server answered with a 4xx or 5xx status."""

    status_code: int = 0
    request_id: str | None
    headers: dict[str, str]

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
        body: object = None,
        request: _RequestInfo | None = None,
        response: _ErrorResponse | None = None,
    ) -> None:
        super().__init__(message, request, body=body)
        if status_code is not None:
            self.status_code = status_code
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.request_id = self.headers.get("x-request-id")
        self.response = response or _ErrorResponse(self.status_code, self.headers, b"", request)


class _AnyCase:
    """Response headers, read by name in any case, as httpx's ``Headers`` are read: ``get``,
    ``[]``, ``in``, ``keys()``, ``items()`` and ``dict(...)``; names come out lower-case."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = {name.lower(): value for name, value in headers.items()}

    def __getitem__(self, name: str) -> str:
        return self._headers[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._headers.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._headers

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers)

    def __len__(self) -> int:
        return len(self._headers)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _AnyCase):
            return self._headers == other._headers
        if isinstance(other, dict):
            return self._headers == {str(k).lower(): v for k, v in other.items()}
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a dict, so unhashable as one is

    def keys(self) -> list[str]:
        return list(self._headers)

    def values(self) -> list[str]:
        return list(self._headers.values())

    def items(self) -> list[tuple[str, str]]:
        return list(self._headers.items())

    def __repr__(self) -> str:
        return f"Headers({self._headers!r})"


class _ErrorResponse:
    """The response of an error (or a raw call's ``http_response``), read as the official
    package's ``httpx.Response`` is:
    ``status_code``, ``headers``, ``content``, ``text``, ``json()``, ``url``,
    ``reason_phrase``, ``request`` and ``http_version``.

    ``request`` is the method and URL alone: the headers sent carry the key.
    """

    def __init__(
        self,
        status_code: int,
        headers: Mapping[str, str],
        content: bytes,
        request: _RequestInfo | None = None,
    ) -> None:
        self.status_code = status_code
        self.headers = _AnyCase(headers)
        self.content = content
        self.request = request
        self.http_version = "HTTP/1.1"  # all that http.client speaks

    def __repr__(self) -> str:
        return f"<Response [{self.status_code} {self.reason_phrase}]>"

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    @property
    def url(self) -> str:
        return self.request.url if self.request is not None else ""

    @property
    def reason_phrase(self) -> str:
        import http.client  # loaded by then, unless the error was made by hand

        return http.client.responses.get(self.status_code, "")

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> _ErrorResponse:
        """Raise ``HTTPStatusError`` unless the status is 2xx, with httpx's message."""
        if self.request is None:
            raise RuntimeError(
                "Cannot call `raise_for_status` as the request instance has not been set on "
                "this response."
            )
        if 200 <= self.status_code < 300:
            return self
        kind = {1: "Informational response", 3: "Redirect response", 4: "Client error"}
        kind[5] = "Server error"
        message = (
            f"{kind.get(self.status_code // 100, 'Invalid status code')} "
            f"'{self.status_code} {self.reason_phrase}' for url '{self.url}'\n"
        )
        if self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers:
            message += f"Redirect location: '{self.headers['location']}'\n"
        message += (
            "For more information check: "
            f"https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/{self.status_code}"
        )
        raise HTTPStatusError(message, request=self.request, response=self)


class HTTPStatusError(OpenAIError):
    """What ``e.response.raise_for_status()`` raises, named as httpx's error is and carrying
    its ``request`` and ``response``; there is no httpx here to raise httpx's own."""

    def __init__(self, message: str, *, request: _RequestInfo, response: _ErrorResponse) -> None:
        super().__init__(message)
        self.request, self.response = request, response


class BadRequestError(APIStatusError):
    status_code = 400


class AuthenticationError(APIStatusError):
    status_code = 401


class PermissionDeniedError(APIStatusError):
    status_code = 403


class NotFoundError(APIStatusError):
    status_code = 404


class ConflictError(APIStatusError):
    status_code = 409


class UnprocessableEntityError(APIStatusError):
    status_code = 422


class RateLimitError(APIStatusError):
    status_code = 429


class InternalServerError(APIStatusError):
    status_code = 500


class APIConnectionError(APIError):
    """No usable response arrived: the connection failed, broke off or was refused."""

    _retryable = True  # False when sending again cannot help (a certificate is not trusted)
    _unsent = False  # True when the request certainly never left: the connection failed

    def __init__(
        self, *, message: str = "Connection error.", request: _RequestInfo | None = None
    ) -> None:
        super().__init__(message, request, body=None)


class APITimeoutError(APIConnectionError):
    """The server took longer than the timeout to answer."""

    def __init__(
        self, request: _RequestInfo | None = None, *, message: str = "Request timed out."
    ) -> None:
        super().__init__(message=message, request=request)


class OutcomeUnknownError(APIConnectionError):
    """A create call may or may not have made its batch, and that could not be found out.

    ``idempotency_key`` is the call's key when the batch would carry it: creating again with
    ``idempotency_key=`` that key returns the batch if it exists and makes it if not. It is
    None when the metadata had no room for the key.
    """

    _retryable = False

    def __init__(
        self, message: str, *, idempotency_key: str | None, request: _RequestInfo | None = None
    ) -> None:
        super().__init__(message=message, request=request)
        self.idempotency_key = idempotency_key


class InputFileError(OpenAIError, ValueError):
    """A JSONL file with problems, each with its line number; found before anything is sent.

    ``problems`` lists ``(line, message)`` pairs (line is None for the file as a whole), up to
    a cap; ``more`` counts the problems left out. A problem met on many lines is listed once,
    at its first line, and ``lines[i]`` holds every line of ``problems[i]``.
    """

    def __init__(
        self,
        path: str,
        problems: list[tuple[int | None, str]],
        more: int = 0,
        lines: list[list[int]] | None = None,
    ) -> None:
        self.path = path
        self.problems = problems
        self.more = more
        self.lines = lines or [[] if line is None else [line] for line, _ in problems]
        super().__init__(self._describe())

    def entries(self) -> list[str]:
        """Each problem as a line for a person: "lines 1–200: message"."""
        return [
            f"{_line_ranges(lines)}: {message}" if lines else message
            for lines, (_, message) in zip(self.lines, self.problems)
        ]

    def _describe(self) -> str:
        lines = [f"{self.path}: {entry}" for entry in self.entries()]
        if self.more:
            noun = "problem" if self.more == 1 else "problems"
            lines.append(f"{self.path}: ... and {self.more:,} more {noun}")
        if len(lines) == 1:
            return lines[0]
        count = sum(max(len(lines), 1) for lines in self.lines) + self.more
        return f"{self.path}: {count:,} problems\n" + "\n".join(lines)


def _line_ranges(numbers: list[int]) -> str:
    """Line numbers for a person: line 3, lines 1–200, lines 2, 5, 9–12 (five runs at most)."""
    if len(numbers) == 1:
        return f"line {numbers[0]}"
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    shown = [f"{a}" if a == b else f"{a}–{b}" for a, b in runs[:5]]
    if len(runs) > 5:
        shown.append(f"and {sum(b - a + 1 for a, b in runs[5:]):,} more")
    return "lines " + ", ".join(shown)


class DuplicateBatchError(OpenAIError):
    """A create call found a twin of its batch (the same idempotency key) that would not
    cancel; ``batch`` is the batch kept, ``duplicate_id`` the one to cancel by hand."""

    def __init__(self, message: str, batch: Batch, duplicate_id: str) -> None:
        super().__init__(message)
        self.batch = batch
        self.duplicate_id = duplicate_id


class BatchNotFinishedError(OpenAIError):
    """A batch's results were asked for while it still runs; ``batch`` is as it was seen."""

    def __init__(self, message: str, batch: Batch) -> None:
        super().__init__(message)
        self.batch = batch


class WaitTimeoutError(OpenAIError, TimeoutError):
    """A batch was still running when ``wait`` ran out of time; ``batch`` is the last seen."""

    def __init__(self, message: str, batch: Batch) -> None:
        super().__init__(message)
        self.batch = batch


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    cls.status_code: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        UnprocessableEntityError,
        RateLimitError,
    )
}


class _ArgumentError(ValueError):
    """A bad argument, refused before any request (the command line's usage error);
    ``setting`` names the argument, when one alone is at fault."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


###############################################################################################
# Text and JSON lines: one line read strictly and written compactly; words for messages
###############################################################################################
#
#: JSON has no NaN or Infinity, yet json.loads reads them, and it reads a number too large for
#: a float (1e400, or 309 digits) as inf. Every reader of lines refuses all three at next to no
#: cost: NaN and Infinity through parse_constant, which runs only when they appear; a number
#: too large through a parse_float that checks each float, or, on a line dense with numbers (an
#: embedding, where a call per float would double the time), through sum() over its lists.


class _NotFinite(ValueError):
    """NaN, Infinity or a number too large for a float, met in JSON text."""

    def __init__(self, reason: str, literal: str) -> None:
        super().__init__(reason)
        self.literal = literal

    def at(self, text: str | bytes) -> str:
        """The reason and the literal's column in ``text``, counted as json's errors count it."""
        import re

        if isinstance(text, bytes):
            text = text.decode(json.detect_encoding(text), "surrogatepass")  # as json.loads does
        # Strings are matched whole, so that a literal inside one is passed over: the first one
        # outside them is where the parser stopped.
        for match in re.finditer(_JSON_TOKEN, text):
            if match.group() == self.literal:
                column = match.start() - text.rfind("\n", 0, match.start())
                return f"{self} (column {column})"
        return str(self)


#: A string, NaN, Infinity or a number: enough of JSON to find where a literal stands in a line.
_JSON_TOKEN = (
    r'"(?:[^"\\]|\\.)*"'
    r"|-?Infinity|NaN"
    r"|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"  # json.scanner.NUMBER_RE
)


def _refuse_constant(literal: str) -> NoReturn:
    raise _NotFinite(f"{literal} is not a JSON number", literal)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise _NotFinite(f"{_clip(literal, 24)} is out of range for a float", literal)
    return value


_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


_FINITE_JSON = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


_NUMBER_CHARACTERS = "0123456789+-.eE,[] "  # all a list of numbers is made of


def _decode_line(text: str) -> tuple[Any, int]:
    """json's raw_decode of a line, refusing what JSON or a float cannot hold (_NotFinite)."""
    middle = len(text) // 2
    if len(text) < 1024 or text[middle - 32 : middle + 32].strip(_NUMBER_CHARACTERS):
        return _FINITE_JSON.raw_decode(text)
    # The middle of the line is all numbers (an embedding, token ids): its floats are read as
    # they come and checked after, list by list.
    data, end = _JSON.raw_decode(text)
    if type(data) is dict and _may_hold_infinity(data):
        return _FINITE_JSON.raw_decode(text)  # raises _NotFinite, unless only a sum overflowed
    return data, end


def _may_hold_infinity(value: dict[str, Any] | list[Any]) -> bool:
    """Whether parsed JSON may hold an infinite float: never false when it does."""
    if isinstance(value, list) and value and isinstance(value[0], (int, float)):
        try:
            return not math.isfinite(sum(value))  # a list of numbers in one pass, in C
        except (TypeError, OverflowError):  # not all numbers, or ints too large for a float
            pass
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, (dict, list)):
            if _may_hold_infinity(item):
                return True
        elif isinstance(item, float) and math.isinf(item):
            return True
    return False


def _plain_json_error(text: str | bytes) -> ValueError | None:
    """What json.loads finds wrong with ``text``, NaN and infinity allowed; None for nothing.

    Text that is not JSON for another reason keeps the verdict it had before they were refused.
    """
    try:
        json.loads(text)
    except ValueError as exc:
        return exc
    return None


def _body_json(text: str) -> Any:
    """A response body sent as a JSON string, decoded; a plain-text body stays text.

    Raises ``_NotFinite`` (a ValueError) for a body that is JSON but for a number that JSON or
    a float cannot hold.
    """
    try:
        return _FINITE_JSON.decode(text)
    except _NotFinite as exc:
        if _plain_json_error(text) is not None:
            return text
        reason = f"the response body is not valid JSON: {exc.at(text)}"
        raise _NotFinite(reason, exc.literal) from None
    except ValueError:
        return text


def _json_text(value: object) -> str:
    """A custom_id that is not a string, as text: "" for a missing one, else its JSON."""
    return "" if value is None else json.dumps(value)


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _dumps_line(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _line_bytes(data: Any) -> bytes:
    """A JSONL line's bytes, newline and all. Text that UTF-8 cannot hold (an unpaired
    surrogate that a server sent as an escape) stays an escape, as it came."""
    try:
        return _dumps_line(data).encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        dumped = json.dumps(data, separators=(",", ":"), allow_nan=False)
        return dumped.encode("ascii") + b"\n"


def _clip(text: str, width: int = 200) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


###############################################################################################
# Enums and API objects
###############################################################################################


class _StrEnum(str, enum.Enum):
    """A string enum whose str() is its value on every Python (3.11 changed the default)."""

    def __str__(self) -> str:
        return str(self.value)


class BatchStatus(_StrEnum):
    """Where a batch is in its life; ``is_terminal`` tells whether it can still change."""

    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for completed, failed, expired and cancelled: nothing more will happen."""
        return self in _TERMINAL_STATUSES


_TERMINAL_STATUSES = frozenset(
    {BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
)


class BatchEndpoint(_StrEnum):
    """The API endpoints a batch can call."""

    RESPONSES = "/v1/responses"
    CHAT_COMPLETIONS = "/v1/chat/completions"
    EMBEDDINGS = "/v1/embeddings"
    COMPLETIONS = "/v1/completions"
    MODERATIONS = "/v1/moderations"
    IMAGES_GENERATIONS = "/v1/images/generations"
    IMAGES_EDITS = "/v1/images/edits"
    VIDEOS = "/v1/videos"


class CompletionWindow(_StrEnum):
    """How long a batch may take."""

    HOURS_24 = "24h"


def _known(enum_cls: type[_StrEnum]) -> Callable[[Any], Any]:
    """Parser that turns a known value into the enum member and keeps an unknown one as is."""

    def parse(value: Any) -> Any:
        try:
            return enum_cls(value)
        except ValueError:
            return value

    return parse


def _nested(model: type[_Model]) -> Callable[[Any], Any]:
    """Parser for a nested object; anything but a dict is kept as it came."""
    return lambda value: model.from_dict(value) if isinstance(value, dict) else value


def _nested_list(model: type[_Model]) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [model.from_dict(item) if isinstance(item, dict) else item for item in value]

    return parse


def _text(value: object) -> str:
    """A field for people to read: an enum's value, or the value as it came."""
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


def _to_json_value(value: Any) -> Any:
    """A fresh JSON-ready copy of a field's value."""
    if isinstance(value, _Model):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [_to_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_json_value(item) for key, item in value.items()}
    return value


#: The API objects and records are dataclasses, made cheap to import in two ways.
#: - @dataclass writes each class's __init__, __repr__ and __eq__ as source text and compiles
#:   it. `_Fields` writes the three once, for every class.
#: - `dataclasses` imports `inspect`, which imports `ast`, `dis` and `tokenize`. With the
#:   decorators' work, that was 40% of this module's import time, for introspection that most
#:   programs never do. So `_dataclass` only notes each class's fields, as @dataclass collects
#:   them, and the class is made a dataclass when first asked: fields(), asdict(),
#:   is_dataclass() and replace() read `__dataclass_fields__`, and `_DataclassFields`, which
#:   answers for it, runs @dataclass then.
#: Type checkers see @dataclass itself.
class _Factory:
    """``dataclasses.field(default_factory=...)``, until the class is made a dataclass."""

    def __init__(self, *, default_factory: Callable[[], Any]) -> None:
        self.default_factory = default_factory


if TYPE_CHECKING:
    from dataclasses import field as _field

    @dataclass_transform(eq_default=True, field_specifiers=(_field,))
    def _dataclass(cls: type[_T]) -> type[_T]: ...

else:
    _field = _Factory

    def _dataclass(cls):
        names = dict.fromkeys(cls._init_names)  # the bases' fields first, as @dataclass has them
        defaults = dict(cls._init_defaults)
        # A class's own annotations, on 3.8 to 3.13 (inspect.get_annotations is 3.10's, and
        # importing inspect is the cost all this avoids).
        for name in cls.__dict__.get("__annotations__", {}):  # noqa: RUF063
            names[name] = None
            defaults.pop(name, None)
            if name in cls.__dict__:
                defaults[name] = cls.__dict__[name]
        cls._init_names, cls._init_defaults = tuple(names), defaults
        required = [name for name in names if name not in defaults]
        if required and names and list(names).index(required[-1]) >= len(required):
            # as @dataclass refuses it, at once rather than when first asked
            raise TypeError(f"non-default argument {required[-1]!r} follows default argument")
        cls._made_by = cls
        cls.__match_args__ = cls._init_names
        return cls


def _default(value: Any) -> Any:
    """A field's default, made afresh where a factory gives it."""
    return value.default_factory() if isinstance(value, _Factory) else value


class _DataclassFields:
    """``__dataclass_fields__`` of a `_dataclass`: runs @dataclass on it the first time."""

    def __get__(self, obj: object, owner: type[_Fields]) -> dict[str, Any]:
        made_by = owner._made_by  # the class that declared the fields: owner, or a base
        if made_by is None:
            raise AttributeError("__dataclass_fields__")  # not a dataclass: _Fields, _Model
        with _DATACLASS_LOCK:
            if "__dataclass_fields__" not in made_by.__dict__:
                import dataclasses

                for name, value in made_by._init_defaults.items():
                    if isinstance(value, _Factory) and name in made_by.__dict__:
                        setattr(
                            made_by, name, dataclasses.field(default_factory=value.default_factory)
                        )
                dataclasses.dataclass(made_by, init=False, repr=False, eq=False)
        fields_: dict[str, Any] = made_by.__dict__["__dataclass_fields__"]
        return fields_


_DATACLASS_LOCK = _thread.RLock()  # a base is made before the class that extends it


class _Fields:
    """``__init__``, ``__repr__`` and ``__eq__`` of a ``_dataclass``, as @dataclass writes them."""

    __hash__ = None  # type: ignore[assignment]  # equal by value, so not hashable
    # each _dataclass's fields in order, and the defaults of those that have one
    _init_names: tuple[str, ...] = ()
    _init_defaults: dict[str, Any] = {}
    _made_by: type[_Fields] | None = None
    _hidden: tuple[str, ...] = ()  # fields a repr masks: secrets, which a log must not keep
    if not TYPE_CHECKING:
        __dataclass_fields__ = _DataclassFields()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self._init_names
        if not kwargs and len(args) == len(names):  # every field, in order: a parser's call
            self.__dict__.update(zip(names, args))
        else:
            self.__dict__.update(self._arguments(args, kwargs))
        self.__post_init__()

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Each field's value from the call, or its default; TypeError as @dataclass gives it."""
        name, names = type(self).__name__, self._init_names
        if len(args) > len(names):
            counts = f"takes {len(names) + 1} positional arguments but {len(args) + 1} were given"
            raise TypeError(f"{name}.__init__() {counts}")
        values = dict(zip(names, args))
        for key, value in kwargs.items():
            if key in values or key not in names:
                problem = "multiple values for" if key in values else "an unexpected keyword"
                raise TypeError(f"{name}.__init__() got {problem} argument {key!r}")
            values[key] = value
        for key in names:
            if key not in values:
                if key not in self._init_defaults:
                    raise TypeError(f"{name}.__init__() missing 1 required argument: {key!r}")
                values[key] = _default(self._init_defaults[key])
        return values

    def __post_init__(self) -> None:
        """What a class does once its fields are set: nothing, unless it says otherwise."""

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{key}='********'" if key in self._hidden else f"{key}={getattr(self, key)!r}"
            for key in self._init_names
        )
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, key) == getattr(other, key) for key in self._init_names)


class _ModelFields:
    """``model_fields`` on a class or an object: each field's name, in the official package's
    order, with its ``dataclasses.Field`` (where pydantic has a ``FieldInfo``)."""

    def __get__(self, obj: object, owner: type[_Model]) -> dict[str, Any]:
        from dataclasses import fields

        by_name = {f.name: f for f in fields(owner)}  # type: ignore[arg-type]
        return {name: by_name[name] for name in owner._order or by_name}


class _Model(_Fields):
    """Base of the API objects: built from the server's dict, and back to exactly that dict.

    Parsing never fails on what a newer server may send: unknown fields are kept (``to_dict``
    returns them), a missing field is None, and an enum value this module does not know stays
    a plain string.
    """

    _raw: dict[str, Any] | None = None
    _parsers: dict[str, Callable[[Any], Any]] = {}
    #: the x-request-id of the response that made the object; None for one built by hand
    _request_id: str | None = None
    _fields_set: set[str] | None = None
    model_fields = _ModelFields()

    # As pydantic does, ``Batch(**data)`` makes the nested objects of nested dicts. from_dict
    # has parsed its values already, so this finds nothing to do for it.
    def __post_init__(self) -> None:
        for name, parse in self._parsers.items():
            value = getattr(self, name)
            if isinstance(value, dict) or (
                isinstance(value, list) and any(isinstance(item, dict) for item in value)
            ):
                setattr(self, name, parse(value))

    @classmethod
    def from_dict(cls: type[_M], data: Mapping[str, Any]) -> _M:
        """Build the object from the API's JSON object."""
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict() needs a dict, not {type(data).__name__}")
        values = {}
        for name in cls._init_names:
            value = data.get(name)
            parse = cls._parsers.get(name)
            values[name] = parse(value) if parse is not None and value is not None else value
        build: Any = cls
        obj: _M = build(**values)
        obj._raw = data
        return obj

    def to_dict(
        self,
        *,
        mode: str = "python",
        use_api_names: bool = True,
        exclude_unset: bool = True,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        warnings: bool = True,
    ) -> dict[str, Any]:
        """The JSON object: what the server sent (unknown fields too), with any later changes.

        The official keywords are taken. ``mode``, ``use_api_names`` and ``warnings`` change
        nothing here (the values are JSON's already, and no field has an alias);
        ``exclude_unset=False``, ``exclude_defaults`` or ``exclude_none`` give ``model_dump()``
        with them, as the official ``to_dict`` does.
        """
        if not _as_sent(exclude_unset, exclude_defaults, exclude_none):
            return self.model_dump(
                exclude_unset=exclude_unset,
                exclude_defaults=exclude_defaults,
                exclude_none=exclude_none,
            )
        raw = self._raw
        out = {key: _to_json_value(value) for key, value in (raw or {}).items()}
        for name in self._init_names:
            value = getattr(self, name)
            if raw is not None and value is None and name not in raw:
                continue  # the server left it out; so do we
            out[name] = _to_json_value(value)
        return out

    def to_json(
        self,
        *,
        indent: int | None = 2,
        use_api_names: bool = True,
        exclude_unset: bool = True,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        warnings: bool = True,
    ) -> str:
        """``to_dict()`` as JSON text (the same keywords); compact when ``indent`` is None."""
        out = self.to_dict(
            exclude_unset=exclude_unset,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
        )
        separators = (",", ":") if indent is None else None
        return json.dumps(out, indent=indent, separators=separators, ensure_ascii=False)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        """Each field and its value, then the fields this module does not know, as pydantic's
        objects iterate: ``dict(batch)``."""
        for name in self._order or self._init_names:
            yield name, getattr(self, name)
        yield from self.model_extra.items()

    def _deprecated_dict(self, **options: Any) -> dict[str, Any]:
        """``model_dump()``, under pydantic 1's name (deprecated, with pydantic's warning)."""
        _warn_deprecated("The `dict` method is deprecated; use `model_dump` instead.")
        return self.model_dump(**options)

    def _deprecated_json(self, **options: Any) -> str:
        """``model_dump_json()``, under pydantic 1's name (deprecated, as ``dict``)."""
        _warn_deprecated("The `json` method is deprecated; use `model_dump_json` instead.")
        return self.model_dump_json(**options)

    @property
    def __fields_set__(self) -> set[str]:
        """``model_fields_set``, under pydantic 1's name (deprecated, as ``dict``)."""
        _warn_deprecated(
            "The `__fields_set__` attribute is deprecated, use `model_fields_set` instead."
        )
        return self.model_fields_set

    #: the official package's order of the fields, where this class's differs
    _order: tuple[str, ...] = ()

    @property
    def model_fields_set(self) -> set[str]:
        """The fields the server sent, or that the caller gave (for an object built by hand,
        those that differ from their defaults: a dataclass keeps no record of its arguments).
        Unknown fields are in ``model_extra``, as for the official client's objects."""
        if self._fields_set is not None:
            return set(self._fields_set)
        if self._raw is not None:
            return {name for name in self._init_names if name in self._raw}
        defaults = self._init_defaults
        return {
            name
            for name in self._init_names
            if name not in defaults or getattr(self, name) != _default(defaults[name])
        }

    @property
    def model_extra(self) -> dict[str, Any]:
        """The fields the server sent that this class does not declare."""
        known = set(self._init_names)
        return {key: value for key, value in (self._raw or {}).items() if key not in known}

    def model_copy(self: _M, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> _M:
        """A copy, with the fields in ``update`` changed (not validated, as in pydantic)."""
        import copy

        made = copy.deepcopy(self) if deep else copy.copy(self)
        if update:
            known = set(made._init_names)
            extra = {key: value for key, value in update.items() if key not in known}
            if extra:
                made._raw = {**(made._raw or {}), **extra}
            for key, value in update.items():
                if key in known:
                    setattr(made, key, value)
            made._fields_set = self.model_fields_set | set(update)
        return made

    @classmethod
    def model_validate_json(cls: type[_M], json_data: str | bytes) -> _M:
        """The object from the API's JSON text."""
        return cls.from_dict(json.loads(json_data))

    @classmethod
    def construct(cls: type[_M], _fields_set: set[str] | None = None, **values: Any) -> _M:
        """The object from its fields' values, nested dicts made objects, unknown ones kept."""
        made = cls.from_dict(values)
        if _fields_set is not None:
            made._fields_set = set(_fields_set)
        return made

    model_construct = construct

    def model_dump(
        self,
        *,
        mode: str = "python",
        include: _Pick | None = None,
        exclude: _Pick | None = None,
        by_alias: bool = False,
        exclude_unset: bool = False,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        round_trip: bool = False,
        warnings: bool = True,
    ) -> dict[str, Any]:
        """Every field, None where the server sent none, in the official package's order,
        then the fields the server sent that this module does not know: what the official
        package's ``model_dump()`` gives for the same response. ``exclude_unset`` leaves out
        what the server did not send, ``exclude_none`` every None, and ``include`` and
        ``exclude`` name top-level fields; ``mode`` and ``by_alias`` change nothing here (the
        values are JSON's already, and no field has an alias). ``include`` and ``exclude``
        nest as pydantic's do: ``exclude={"request_counts": {"failed"}}`` drops one field of
        the nested object."""
        names = self._order or self._init_names
        raw = self._raw
        if exclude_unset:
            given = self.model_fields_set
            names = tuple(name for name in names if name in given)
        values = {name: getattr(self, name) for name in names}
        for key, value in (raw or {}).items():
            values.setdefault(key, value)
        if exclude_defaults:  # the official fields default to None, or have no default
            known = self._init_names
            values = {k: v for k, v in values.items() if v is not None or k not in known}
        out = {}
        for key, value in values.items():
            inner, outer = _picked(include, key), _picked(exclude, key)
            if inner is False or outer is True:
                continue
            flags = {"exclude_unset": exclude_unset, "exclude_none": exclude_none}
            flags["exclude_defaults"] = exclude_defaults
            out[key] = _dumped(value, flags, _nested_pick(inner), _nested_pick(outer))
        if exclude_none:
            out = {key: value for key, value in out.items() if value is not None}
        return out

    def model_dump_json(
        self,
        *,
        indent: int | None = None,
        include: _Pick | None = None,
        exclude: _Pick | None = None,
        exclude_unset: bool = False,
        exclude_none: bool = False,
        exclude_defaults: bool = False,
        by_alias: bool = False,
        round_trip: bool = False,
        warnings: bool = True,
    ) -> str:
        """``model_dump()`` as JSON: compact unless ``indent``, non-ASCII as it is."""
        separators = (",", ":") if indent is None else None
        dumped = self.model_dump(
            include=include,
            exclude=exclude,
            exclude_unset=exclude_unset,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
        )
        return json.dumps(dumped, indent=indent, separators=separators, ensure_ascii=False)

    @classmethod
    def model_validate(cls: type[_M], obj: Mapping[str, Any]) -> _M:
        """The object from the API's JSON object (the official package's name for it)."""
        return cls.from_dict(obj)


#: pydantic 1's names, deprecated: set after the class, since a method named `dict` would stand
#: for the builtin in the annotations of the class's other methods.
_Model.dict = _Model._deprecated_dict  # type: ignore[attr-defined]
_Model.json = _Model._deprecated_json  # type: ignore[attr-defined]


def _as_sent(
    exclude_unset: bool = True,
    exclude_defaults: bool = False,
    exclude_none: bool = False,
    **unused: Any,  # mode, use_api_names, warnings
) -> bool:
    """Whether ``to_dict``'s keywords ask for what the server sent, not ``model_dump()``."""
    return exclude_unset and not exclude_defaults and not exclude_none


def _warn_deprecated(message: str) -> None:
    import warnings

    warnings.warn(message, DeprecationWarning, stacklevel=3)


def _picked(pick: _Pick | None, key: str) -> Any:
    """What an ``include`` or ``exclude`` says of one field: None when not given, False when
    the field is not named, True when named whole, or the names within the nested object."""
    if pick is None:
        return None
    if isinstance(pick, dict):
        if key not in pick:
            return False
        inner = pick[key]
        return True if inner is True or inner is Ellipsis else inner
    return key in set(pick) or False


def _nested_pick(pick: Any) -> Any:
    """The ``include`` or ``exclude`` to hand a nested object: none for a whole field."""
    return None if pick is None or isinstance(pick, bool) else pick


def _dumped(
    value: Any,
    flags: dict[str, bool] | None = None,
    include: _Pick | None = None,
    exclude: _Pick | None = None,
) -> Any:
    """A field's value as ``model_dump`` gives it: nested objects dumped whole, or as much of
    them as ``include`` and ``exclude`` name."""
    if isinstance(value, _Model):
        flags = flags or {}
        return value.model_dump(
            include=include,
            exclude=exclude,
            exclude_unset=flags.get("exclude_unset", False),
            exclude_defaults=flags.get("exclude_defaults", False),
            exclude_none=flags.get("exclude_none", False),
        )
    if isinstance(value, list):
        return [_dumped(item, flags) for item in value]
    if isinstance(value, dict) and (include is not None or exclude is not None):
        kept = {
            key: item
            for key, item in value.items()
            if _picked(include, key) is not False and _picked(exclude, key) is not True
        }
        return _to_json_value(kept)
    return _to_json_value(value)


@_dataclass
class BatchError(_Model):
    """One problem the server found with a batch's input file."""

    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None

    _order = ("code", "line", "message", "param")


@_dataclass
class BatchErrors(_Model):
    """The list of problems that made a batch fail validation."""

    object: str | None = None
    data: list[BatchError] | None = None

    _parsers = {"data": _nested_list(BatchError)}
    _order = ("data", "object")


@_dataclass
class BatchRequestCounts(_Model):
    """How many of a batch's requests there are, and how many have finished or failed."""

    total: int = 0
    completed: int = 0
    failed: int = 0

    _order = ("completed", "failed", "total")


@_dataclass
class InputTokensDetails(_Model):
    cached_tokens: int = 0


@_dataclass
class OutputTokensDetails(_Model):
    reasoning_tokens: int = 0


@_dataclass
class BatchUsage(_Model):
    """Tokens a batch used (batches created after September 2025)."""

    input_tokens: int = 0
    input_tokens_details: InputTokensDetails | None = None
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails | None = None
    total_tokens: int = 0

    _parsers = {
        "input_tokens_details": _nested(InputTokensDetails),
        "output_tokens_details": _nested(OutputTokensDetails),
    }


def _split_identity(metadata: Any) -> tuple[Any, str | None]:
    """A batch's metadata as its caller gave it, and the idempotency key that create stored
    beside it (``IDEMPOTENCY_METADATA_KEY``). Metadata that was only the key is None, as the
    official package reads a batch made without metadata."""
    if not isinstance(metadata, dict) or not isinstance(
        metadata.get(IDEMPOTENCY_METADATA_KEY), str
    ):
        return metadata, None
    own = {key: value for key, value in metadata.items() if key != IDEMPOTENCY_METADATA_KEY}
    if own == dict([_EMPTY_METADATA]):
        return {}, metadata[IDEMPOTENCY_METADATA_KEY]  # the caller gave {}
    return own or None, metadata[IDEMPOTENCY_METADATA_KEY]


def _stored_metadata(own: Mapping[str, str] | None, key: str) -> dict[str, str]:
    """The metadata a batch is made with: the caller's and the idempotency key, and a mark
    when the caller gave {} (see ``_split_identity``)."""
    mark = dict([_EMPTY_METADATA]) if own == {} else {}
    return {**(own or mark), IDEMPOTENCY_METADATA_KEY: key}


@_dataclass
class Batch(_Model):
    """A batch: its status, counts, timestamps and the files it reads and writes.

    ``metadata`` is what the caller gave, as the official package reads it back: the
    idempotency key that every ``batches.create`` stores in the metadata is
    ``idempotency_key`` instead (None on a batch made without one), and neither ``repr``
    nor ``model_dump`` shows it. ``to_dict()`` is the server's JSON, the key included.
    """

    id: str = ""
    object: str = "batch"
    endpoint: BatchEndpoint | str = ""
    model: str | None = None
    errors: BatchErrors | None = None
    input_file_id: str = ""
    completion_window: CompletionWindow | str = CompletionWindow.HOURS_24
    status: BatchStatus | str = BatchStatus.VALIDATING
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int = 0
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts | None = None
    usage: BatchUsage | None = None
    metadata: dict[str, str] | None = None

    _parsers = {
        "endpoint": _known(BatchEndpoint),
        "errors": _nested(BatchErrors),
        "completion_window": _known(CompletionWindow),
        "status": _known(BatchStatus),
        "request_counts": _nested(BatchRequestCounts),
        "usage": _nested(BatchUsage),
    }
    _order = (
        *("id", "completion_window", "created_at", "endpoint", "input_file_id", "object"),
        *("status", "cancelled_at", "cancelling_at", "completed_at", "error_file_id", "errors"),
        *("expired_at", "expires_at", "failed_at", "finalizing_at", "in_progress_at"),
        *("metadata", "model", "output_file_id", "request_counts", "usage"),
    )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Batch:
        """Build the batch from the API's JSON object, its metadata as the caller gave it."""
        batch = super().from_dict(data)
        batch.metadata = _split_identity(batch.metadata)[0]
        return batch

    @property
    def idempotency_key(self) -> str | None:
        """The idempotency key of the create call that made the batch; None without one."""
        stored = self.metadata if self._raw is None else self._raw.get("metadata")
        return _split_identity(stored)[1]

    def to_dict(self, **options: Any) -> dict[str, Any]:
        """The JSON object: what the server sent (the idempotency key in its metadata too),
        with any later changes; see ``_Model.to_dict`` for its keywords."""
        out = super().to_dict(**options)
        if not _as_sent(**options):
            return out  # model_dump's, the key apart
        stored = (self._raw or {}).get("metadata")
        own, key = _split_identity(stored)
        if key is not None:
            # Unchanged, the server's metadata as it came (its order too); changed, the key
            # stays with the batch it names.
            metadata = stored if self.metadata == own else _stored_metadata(self.metadata, key)
            out["metadata"] = _to_json_value(metadata)
        return out

    @property
    def is_terminal(self) -> bool:
        """True once the batch can no longer change (an unknown status counts as running)."""
        return isinstance(self.status, BatchStatus) and self.status.is_terminal

    @property
    def ended_at(self) -> int | None:
        """When the batch completed, failed, expired or was cancelled; None while it runs."""
        if not self.is_terminal:
            return None
        ended = getattr(self, f"{_text(self.status)}_at", None)
        return ended if isinstance(ended, int) else None


def _batch_errors(batch: Batch) -> list[str]:
    """The batch's own errors, a line each: where, the code, and the server's message; the
    same error on many lines is one entry ("lines 1–5: ..."), not five."""
    lines: dict[str, list[int]] = {}  # an error's text -> the lines it was met on
    for error in _error_list(batch):
        code = f"{error.code}: " if error.code and error.message else ""
        text = f"{code}{error.message or error.code or 'no detail given'}"
        lines.setdefault(text, []).extend([error.line] if error.line else [])
    return [f"{_line_ranges(where)}: {text}" if where else text for text, where in lines.items()]


def _error_list(batch: Batch) -> list[BatchError]:
    errors = batch.errors.data if isinstance(batch.errors, BatchErrors) else None
    return [error for error in errors or [] if isinstance(error, BatchError)]


_SHOWN_ERRORS = 5  # a failed batch's first errors shown by wait; the rest are counted


@_dataclass
class FileObject(_Model):
    """A file stored by the API: a batch's input, output or error file."""

    id: str = ""
    bytes: int = 0
    created_at: int = 0
    filename: str = ""
    object: str = "file"
    purpose: str = ""
    status: str | None = None
    expires_at: int | None = None
    status_details: str | None = None


@_dataclass
class FileDeleted(_Model):
    """The answer to deleting a file."""

    id: str = ""
    object: str = "file"
    deleted: bool = False

    _order = ("id", "deleted", "object")


@_dataclass
class Model(_Model):
    """A model the API serves (on Azure OpenAI, a model the resource can deploy)."""

    id: str = ""
    created: int = 0
    object: str = "model"
    owned_by: str = ""
    shutdown_date: str | None = None


@_dataclass
class ModelDeleted(_Model):
    """The answer to deleting a fine-tuned model."""

    id: str = ""
    deleted: bool = False
    object: str = ""


@_dataclass
class BatchRequest(_Fields):
    """One line of a batch input file: a request to ``url`` with a ``custom_id`` to find it by.

    The class methods write the common cases briefly::

        BatchRequest.chat("q1", "gpt-4o-mini", "What is 2+2?", max_tokens=50)
        BatchRequest.embedding("doc-7", "text-embedding-3-small", ["first text", "second"])
        BatchRequest.response("r1", "gpt-4.1-mini", "Summarise: ...")
    """

    custom_id: str
    body: dict[str, Any]
    url: BatchEndpoint | str = BatchEndpoint.CHAT_COMPLETIONS
    method: str = "POST"

    @classmethod
    def chat(
        cls, custom_id: str, model: str, messages: str | list[dict[str, Any]], **params: Any
    ) -> BatchRequest:
        """A chat completion; a string is one user message."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        body = {"model": model, "messages": messages, **params}
        return cls(custom_id, body, BatchEndpoint.CHAT_COMPLETIONS)

    @classmethod
    def embedding(
        cls, custom_id: str, model: str, input: str | list[Any], **params: Any
    ) -> BatchRequest:
        """An embeddings request for one text or a list of them."""
        return cls(custom_id, {"model": model, "input": input, **params}, BatchEndpoint.EMBEDDINGS)

    @classmethod
    def response(
        cls, custom_id: str, model: str, input: str | list[Any], **params: Any
    ) -> BatchRequest:
        """A Responses API request."""
        return cls(custom_id, {"model": model, "input": input, **params}, BatchEndpoint.RESPONSES)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchRequest:
        """The request of one parsed input line."""
        url = data.get("url", "")
        return cls(
            data.get("custom_id", ""),
            data.get("body", {}),
            _known(BatchEndpoint)(url),
            data.get("method", "POST"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "custom_id": self.custom_id,
            "method": self.method,
            "url": _to_json_value(self.url),
            "body": self.body,
        }

    def to_json(self) -> str:
        """The input line: compact JSON, non-ASCII text kept readable, no newline."""
        return _dumps_line(self.to_dict())


@_dataclass
class BatchResultError(_Fields):
    """Why a request failed without an HTTP response (``code`` may come as ``type``)."""

    code: str | None = None
    message: str | None = None


@_dataclass
class BatchResult(_Model):
    """One line of a batch's output or error file: the outcome of one request.

    ``ok`` is true for a 2xx response with no error. ``body`` is the response's JSON body,
    decoded even when a server sends it as a JSON string.
    """

    custom_id: str
    id: str | None = None
    status_code: int | None = None
    request_id: str | None = None
    body: Any = None
    error: BatchResultError | None = None

    @property
    def ok(self) -> bool:
        code = self.status_code
        return self.error is None and isinstance(code, int) and 200 <= code < 300

    @property
    def error_message(self) -> str | None:
        """Why the request failed, from the error or from the response body; None if ok."""
        if self.ok:
            return None
        if self.error is not None:
            return self.error.message or self.error.code or "failed"
        inner = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        return f"HTTP {self.status_code}" if self.status_code is not None else "no response"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchResult:
        """Parse an output line, as OpenAI and the servers that copy its API write them."""
        response = data.get("response") or {}
        if not isinstance(response, dict):
            response = {}
        body = response.get("body")
        if isinstance(body, str):
            body = _body_json(body)
        error = data.get("error")
        if isinstance(error, dict):
            code = error.get("code") or error.get("type")
            error = BatchResultError(None if code is None else str(code), error.get("message"))
        elif error is not None:
            error = BatchResultError(None, str(error))
        custom_id = data.get("custom_id")
        if not isinstance(custom_id, str):
            custom_id = _json_text(custom_id)
        # In field order: keywords would double the cost of this call, on every line of a file.
        status_code, request_id = response.get("status_code"), response.get("request_id")
        result = cls(custom_id, data.get("id"), status_code, request_id, body, error)
        result._raw = dict(data)
        return result

    def _line(self) -> dict[str, Any]:
        """The line as it was read, not copied: only to write it out again."""
        return self._raw if self._raw is not None else self.to_dict()

    def to_dict(self, **options: Any) -> dict[str, Any]:
        """The line as it was read (or as the fields say, for a result built by hand); see
        ``_Model.to_dict`` for its keywords."""
        if not _as_sent(**options):
            return super().to_dict(**options)
        if self._raw is not None:
            return _to_json_value(self._raw)  # type: ignore[no-any-return]
        error = self.error
        return {
            "id": self.id,
            "custom_id": self.custom_id,
            "response": None
            if self.status_code is None
            else {
                "status_code": self.status_code,
                "request_id": self.request_id,
                "body": self.body,
            },
            "error": None if error is None else {"code": error.code, "message": error.message},
        }


@_dataclass
class InputSummary(_Fields):
    """What ``validate_input`` found in a valid input file."""

    path: str
    requests: int
    bytes: int
    endpoint: str | None
    model: str | None
    embedding_inputs: int
    #: what the server may refuse though its rule is uncertain, a line each with where
    warnings: list[str] = _field(default_factory=list)
    #: tokens and money, before anything is sent (None when not asked for)
    estimate: InputEstimate | None = None


def _check_not_seen(page: CursorPage[Any], seen: set[str | None]) -> None:
    """Refuse a page that ends where an earlier page ended, and remember where this one ends."""
    if page.data and page.last_id in seen:
        raise APIResponseValidationError(
            f"The server sent the page ending at {page.last_id} again; stopping "
            "here rather than listing the same items forever."
        )
    seen.add(page.last_id)


class PageInfo:
    """Where the page after a page starts: ``params`` of its request (``{"after": id}``).

    The official class also has ``url`` and ``json`` for the APIs that page by them, unset
    (``NOT_GIVEN``) for a cursor page; here they are None, since ``NOT_GIVEN`` comes later.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.url, self.json, self.params = url, json, params

    def __repr__(self) -> str:
        if self.url:
            return f"PageInfo(url={self.url})"
        if self.json:
            return f"PageInfo(json={self.json})"
        return f"PageInfo(params={self.params})"


class CursorPage(_Generic[_M]):
    """One page of a list, which iterates over every item of every page.

    ``data`` and ``has_more`` describe this page. Iterating fetches each next page (with
    ``after`` set to the last id seen) only when the loop reaches it, and stops when the server
    says there is no more or sends an empty page.
    """

    #: the x-request-id of the response that brought the page
    _request_id: str | None = None

    def __init__(
        self,
        data: list[_M],
        *,
        has_more: bool | None,
        first_id: str | None = None,
        last_id: str | None = None,
        fetch: Callable[[str], CursorPage[_M]] | None = None,
        raw: Mapping[str, Any] | None = None,
    ) -> None:
        self.object = "list"
        self.data = data
        self.has_more = has_more
        self.first_id = first_id
        self.last_id = last_id
        self._fetch = fetch
        self._raw = raw

    def __repr__(self) -> str:
        return f"<CursorPage of {len(self.data)} items, has_more={self.has_more}>"

    def has_next_page(self) -> bool:
        """Whether another page may follow this one."""
        return self.has_more is not False and bool(self.data) and self._fetch is not None

    def next_page_info(self) -> PageInfo | None:
        """Where the next page starts, after this page's last item; None for an empty page.

        As in the official package, a page the server said is the last still gives one:
        ``has_next_page()`` is what says whether to fetch it.
        """
        cursor = getattr(self.data[-1], "id", None) if self.data else None
        return None if cursor is None else PageInfo(params={"after": cursor})

    def model_dump(self, **options: Any) -> dict[str, Any]:
        """The page as the official package dumps it: ``data`` (each item's ``model_dump``
        with the same options), ``has_more``, then what else the server sent (``object``,
        ``first_id``, ``last_id``) in its order."""
        include, exclude = options.pop("include", None), options.pop("exclude", None)
        values: dict[str, Any] = {"data": self.data, "has_more": self.has_more}
        if self._raw is None:
            values.update(object=self.object, first_id=self.first_id, last_id=self.last_id)
        else:
            values.update((key, value) for key, value in self._raw.items() if key not in values)
        if options.get("exclude_unset") and self._raw is not None and "has_more" not in self._raw:
            del values["has_more"]
        out = {}
        for key, value in values.items():
            if _picked(include, key) is False or _picked(exclude, key) is True:
                continue
            out[key] = [item.model_dump(**options) for item in value] if key == "data" else value
        if options.get("exclude_none"):
            out = {key: value for key, value in out.items() if value is not None}
        return out

    def model_dump_json(self, *, indent: int | None = None, **options: Any) -> str:
        """``model_dump()`` as JSON: compact unless ``indent``, non-ASCII as it is."""
        separators = (",", ":") if indent is None else None
        dumped = self.model_dump(**options)
        return json.dumps(dumped, indent=indent, separators=separators, ensure_ascii=False)

    def to_dict(self) -> dict[str, Any]:
        """The page as the server sent it, each item's ``to_dict()`` in ``data``."""
        if self._raw is None:
            return self.model_dump(exclude_none=True)
        out = {key: _to_json_value(value) for key, value in self._raw.items()}
        out["data"] = [_to_json_value(item) for item in self.data]
        return out

    def get_next_page(self) -> CursorPage[_M]:
        """Fetch the page after this one."""
        if not self.has_next_page() or self._fetch is None:
            raise RuntimeError("No next page; check has_next_page() first.")
        cursor = getattr(self.data[-1], "id", None)
        if not cursor:
            raise APIResponseValidationError("The last item of a page has no id to page on.")
        return self._fetch(cursor)

    def iter_pages(self) -> Iterator[CursorPage[_M]]:
        """This page, then each following page as the loop reaches it.

        A server whose cursors go round (a, b, a, ...) is refused rather than followed forever:
        a page may not end on an item that an earlier page ended on.
        """
        page = self
        yield page
        seen = {page.last_id}
        while page.has_next_page():
            page = page.get_next_page()
            _check_not_seen(page, seen)
            yield page

    def __iter__(self) -> Iterator[_M]:
        for page in self.iter_pages():
            yield from page.data


###############################################################################################
# HTTP transport: timeouts, retries, connections and the waiting policy
###############################################################################################


class NotGiven:
    """The default of a keyword argument left out, told apart from None, as the official
    package's is: ``timeout=NOT_GIVEN`` is the same as no ``timeout=``. Falsy."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


#: The one ``NotGiven``: an argument passed as this counts as not passed.
NOT_GIVEN = NotGiven()


class Omit:
    """A value that leaves something out, as the official package's is: in ``extra_headers``
    it removes a header the client would send; as an argument, it is not given. Falsy."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False


_UNSET: Any = object()  # Timeout's "not given": None there means "no limit"
_PHASES = ("connect", "read", "write", "pool")


class Timeout:
    """Seconds to wait, by phase, built as ``httpx.Timeout`` is: ``Timeout(60, connect=5)``.

    ``connect`` bounds opening a connection, ``write`` each wait while a request is sent and
    ``read`` each wait for the server's answer; None is no limit. ``pool`` is kept for code
    that reads it: no request here waits for a connection from a pool. Any object with these
    four attributes (an ``httpx.Timeout``) is taken where a timeout is.
    """

    __slots__ = _PHASES

    def __init__(
        self,
        timeout: Any = _UNSET,
        *,
        connect: float | None = _UNSET,
        read: float | None = _UNSET,
        write: float | None = _UNSET,
        pool: float | None = _UNSET,
    ) -> None:
        if _is_timeout(timeout):  # another Timeout (or httpx's): copied
            timeout, connect, read, write, pool = (
                _UNSET,
                *(getattr(timeout, name) for name in _PHASES),
            )
        elif timeout is _UNSET and _UNSET in (connect, read, write, pool):
            raise ValueError(
                "Timeout must either include a default, or set all four parameters explicitly."
            )
        self.connect: float | None = timeout if connect is _UNSET else connect
        self.read: float | None = timeout if read is _UNSET else read
        self.write: float | None = timeout if write is _UNSET else write
        self.pool: float | None = timeout if pool is _UNSET else pool

    def _phases(self) -> tuple[float | None, ...]:
        return (self.connect, self.read, self.write, self.pool)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timeout) and self._phases() == other._phases()

    def __hash__(self) -> int:
        return hash(self._phases())

    def __repr__(self) -> str:
        if len(set(self._phases())) == 1:
            return f"Timeout(timeout={self.connect})"
        return (
            f"Timeout(connect={self.connect}, read={self.read}, write={self.write}, "
            f"pool={self.pool})"
        )


def _is_timeout(value: object) -> bool:
    return all(hasattr(value, name) for name in _PHASES)


def _timeout(given: _TimeoutArg) -> _Seconds:
    """A timeout checked: seconds, positive and finite, or None to wait as long as it takes;
    a timeout object (this module's, or httpx's) becomes a ``Timeout`` of checked phases."""
    if given is None or isinstance(given, NotGiven):
        return None
    if _is_timeout(given):
        phases = {name: getattr(given, name) for name in _PHASES}
        return Timeout(
            **{name: _checked(value, f"timeout.{name}") for name, value in phases.items()}
        )
    return _checked(given, "timeout")


def _checked(seconds: object, name: str) -> float | None:
    if seconds is None:
        return None
    try:
        value = float(seconds)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= _MAX_TIMEOUT):
        raise _ArgumentError(
            f"{name} must be seconds from 0 to {_MAX_TIMEOUT:g}, or None, not {seconds!r}"
        )
    return value


def _passed(value: _T | NotGiven | Omit) -> _T | None:
    """An argument, or None for one passed as NOT_GIVEN or an Omit (not given)."""
    return None if isinstance(value, (NotGiven, Omit)) else value


def _phase(timeout: _Seconds, phase: str) -> float | None:
    """The seconds one phase (connect, write, read) may take; None: no limit."""
    if isinstance(timeout, Timeout):
        return (
            timeout.connect
            if phase == "connect"
            else timeout.write
            if phase == "write"
            else timeout.read
        )
    if phase == "connect":  # as the official package: 5 s to connect, unless less is asked
        return _CONNECT_TIMEOUT if timeout is None else min(timeout, _CONNECT_TIMEOUT)
    return timeout


class _RetryPolicy:
    """When a request is sent again and how long to wait first: the official package's rules.

    Retried: connection errors, timeouts, 408, 409, 429 and 5xx, unless the server's
    ``x-should-retry`` header says otherwise. The wait is what ``retry-after-ms`` or
    ``Retry-After`` (seconds or an HTTP date) asks for; an ask over ``max_retry_after`` is an
    error at once rather than a hung process. Otherwise the wait grows from ``initial_delay``,
    doubling up to ``max_delay``, less up to a quarter at random so that clients spread out.
    """

    initial_delay = _INITIAL_RETRY_DELAY
    max_delay = _MAX_RETRY_DELAY
    max_retry_after = _MAX_RETRY_AFTER

    def __init__(self, max_retries: int = DEFAULT_MAX_RETRIES) -> None:
        self.max_retries = max_retries

    def should_retry(self, status: int, headers: Mapping[str, str], now: float) -> bool:
        asked = _retry_after(headers, now)
        if asked is not None and asked > self.max_retry_after:
            return False
        hint = headers.get("x-should-retry")
        if hint in ("true", "false"):
            return hint == "true"
        return status in _RETRY_STATUSES or status >= 500

    def delay(
        self, retries_taken: int, headers: Mapping[str, str], now: float, rand: float
    ) -> float:
        asked = _retry_after(headers, now)
        if asked is not None and 0 < asked <= self.max_retry_after:
            return asked
        backoff = min(self.initial_delay * 2.0 ** min(retries_taken, 32), self.max_delay)
        return backoff * (1 - 0.25 * rand)


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asked us to wait, from ``retry-after-ms`` or ``Retry-After``."""
    import math

    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(headers.get(name, "")) * scale
        except ValueError:
            continue
        return seconds if math.isfinite(seconds) else None
    moment = _http_date(headers.get("retry-after"))
    return None if moment is None else moment - now


def _http_date(text: str | None) -> float | None:
    """The time an HTTP date names; None for one that is missing, unreadable or absurd.

    A date from a broken server or proxy (``year 99999``) must not stop a request: it is
    treated as absent, as is any date outside 1990 to 2200.
    """
    if not text:
        return None
    import email.utils

    try:
        parsed = email.utils.parsedate_tz(text)
        moment = None if parsed is None else float(email.utils.mktime_tz(parsed))
    except (TypeError, ValueError, OverflowError):
        return None
    if moment is None or not _EARLIEST_DATE <= moment <= _LATEST_DATE:
        return None
    return moment


class _Body:
    """A request body that can be sent again: its length, type and a fresh stream of chunks."""

    def __init__(
        self,
        content_type: str,
        length: int,
        data: bytes | None = None,
        chunks: Callable[[], Iterable[bytes]] | None = None,
    ) -> None:
        self.content_type = content_type
        self.length = length
        self.data = data
        self.chunks = chunks

    @classmethod
    def json(cls, payload: object) -> _Body:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls("application/json", len(data), data=data)


class _Connection:
    """A keep-alive connection with what requests on it need: their target form and headers."""

    def __init__(
        self,
        origin: tuple[str, str, int],
        conn: http.client.HTTPConnection,
        absolute: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.origin = origin
        self.conn = conn
        self.absolute = absolute  # through a plain HTTP proxy the target is the whole URL
        self.headers = headers or {}
        self.idle_since = 0.0


def _origin(url: str) -> tuple[str, str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        port = -1
    if scheme not in ("http", "https") or not parts.hostname or port < 0:
        raise _final(APIConnectionError(message=f"Cannot send a request to {url!r}: not a URL."))
    return scheme, parts.hostname, port


def _final(error: APIConnectionError) -> APIConnectionError:
    """Mark a connection error that sending again cannot mend (a bad URL, an untrusted CA)."""
    error._retryable = False
    return error


def _proxy_for(scheme: str, host: str) -> str | None:
    """The proxy URL for a host as urllib reads it (HTTPS_PROXY, HTTP_PROXY, NO_PROXY)."""
    import urllib.request

    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)


def _ssl_context() -> Any:
    """The system's trusted CAs, plus SSL_CERT_FILE and SSL_CERT_DIR (a corporate CA)."""
    import ssl

    context = ssl.create_default_context()
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        try:
            context.load_verify_locations(cafile=cafile or None, capath=capath or None)
        except (OSError, ssl.SSLError) as exc:
            raise OpenAIError(
                f"Cannot load the CA certificates named by SSL_CERT_FILE/SSL_CERT_DIR: {exc}"
            ) from exc
    return context


class _Pool:
    """Idle keep-alive connections by origin, so that paging does not reconnect every time."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._ssl: Any = None

    def take(self, origin: tuple[str, str, int]) -> _Connection | None:
        with self._lock:
            idle = self._idle.get(origin, [])
            while idle:
                connection = idle.pop()
                if time.monotonic() - connection.idle_since < _POOL_IDLE_SECONDS:
                    return connection
                connection.conn.close()
        return None

    def give_back(self, origin: tuple[str, str, int], connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        with self._lock:
            self._idle.setdefault(origin, []).append(connection)

    def open(self, origin: tuple[str, str, int], timeout: _Seconds) -> _Connection:
        """A new connection, through the environment's proxy when it names one."""
        import http.client

        scheme, host, port = origin
        proxy = _proxy_for(scheme, host)
        connect_timeout = _phase(timeout, "connect")
        if scheme == "https" and self._ssl is None:
            self._ssl = _ssl_context()
        conn: http.client.HTTPConnection
        if proxy is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(
                    host, port, timeout=connect_timeout, context=self._ssl
                )
            else:
                conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
            return _Connection(origin, conn)
        proxy_host, proxy_port, auth = _parse_proxy(proxy)
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                proxy_host, proxy_port, timeout=connect_timeout, context=self._ssl
            )
            conn.set_tunnel(host, port, headers=auth)
            return _Connection(origin, conn)
        conn = http.client.HTTPConnection(proxy_host, proxy_port, timeout=connect_timeout)
        return _Connection(origin, conn, absolute=True, headers=auth)

    def close(self) -> None:
        with self._lock:
            for idle in self._idle.values():
                for connection in idle:
                    connection.conn.close()
            self._idle.clear()


def _parse_proxy(proxy: str) -> tuple[str, int, dict[str, str]]:
    """Host, port and Proxy-Authorization header of an http:// proxy URL."""
    import base64
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
    if parts.scheme != "http" or not parts.hostname:
        where = parts.hostname or "?"
        message = f"Unsupported proxy {parts.scheme}://{where}: only http:// proxies work here."
        raise _final(APIConnectionError(message=message))
    auth = {}
    if parts.username is not None:
        user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        token = base64.b64encode(user_pass.encode("utf-8")).decode("ascii")
        auth["Proxy-Authorization"] = "Basic " + token
    return parts.hostname, parts.port or 80, auth


def _lower_headers(response: http.client.HTTPResponse) -> dict[str, str]:
    return {name.lower(): value for name, value in response.getheaders()}


def _connection_error(exc: BaseException, request: _RequestInfo) -> APIConnectionError:
    """The APIConnectionError for a network failure, naming what failed and where."""
    import socket
    import ssl

    where = f"{request.method} {request.url}"
    if isinstance(exc, socket.timeout):
        return APITimeoutError(request, message=f"Request timed out ({where}).")
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = (
            f"Certificate verification failed ({where}): {exc.verify_message}. "
            "Behind a corporate proxy, point SSL_CERT_FILE at its CA bundle."
        )
        return _final(APIConnectionError(message=message, request=request))
    detail = str(exc) or type(exc).__name__
    return APIConnectionError(message=f"Connection error ({where}): {detail}", request=request)


def _read_body(response: http.client.HTTPResponse, request: _RequestInfo) -> bytes:
    import http.client

    try:
        return response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise _connection_error(exc, request) from exc


def _status_error(
    status: int, headers: dict[str, str], raw: bytes, request: _RequestInfo
) -> APIStatusError:
    """The exception for an error status, readable whatever the body is (JSON, HTML, nothing)."""
    body, detail = _error_detail(status, headers.get("content-type", ""), raw)
    cls = _STATUS_ERRORS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    response = _ErrorResponse(status, headers, raw, request)
    message = f"Error code: {status} - {detail}"
    return cls(
        message, status_code=status, headers=headers, body=body, request=request, response=response
    )


def _error_detail(status: int, content_type: str, raw: bytes) -> tuple[object, str]:
    """The error body as the official package keeps it, and one readable line about it."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body: object = json.loads(text)
    except ValueError:
        return text, _readable(text, content_type) or _reason(status)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = inner.get("message")
            return inner, str(message) if message else _clip(json.dumps(inner))
        return body, _clip(str(inner))
    return body, _clip(text)


def _reason(status: int) -> str:
    import http.client

    return http.client.responses.get(status, "Unknown status")


def _readable(text: str, content_type: str) -> str:
    """One line from a text body: an HTML page's title, or the start of the text."""
    import re

    if "html" in content_type.lower() or text.lstrip()[:1] == "<":
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        text = title.group(1) if title else re.sub(r"<[^>]*>", " ", text)
    return _clip(" ".join(text.split()))


def _scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` (text, bytes, or JSON made of dicts and lists) with each secret blotted out."""
    if isinstance(value, bytes):
        for secret in secrets:
            value = value.replace(secret.encode("utf-8"), b"[redacted]")
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "[redacted]")
        return value
    if isinstance(value, list):
        return [_scrub(item, secrets) for item in value]
    if isinstance(value, dict):
        return {_scrub(key, secrets): _scrub(item, secrets) for key, item in value.items()}
    return value


def _header_value(name: str, value: str) -> str:
    """A header value that can be sent; one that cannot is refused by its position, never
    shown, since it may be a key."""
    bad = [index for index, char in enumerate(str(value)) if char < " " and char != "\t"]
    if bad:
        raise _ArgumentError(
            f"The {name} header has a character that cannot be sent in HTTP (position "
            f"{bad[0] + 1} of {len(str(value))}); check how it was copied."
        )
    return str(value)


def _secrets(headers: Mapping[str, str]) -> list[str]:
    """The credentials among request headers: the values never to show, longest first."""
    found = []
    for name, value in headers.items():
        if name.lower() in _PLAIN_HEADERS or not value:
            continue
        scheme, _, token = value.partition(" ")
        known = token and scheme.lower() in ("bearer", "basic", "token")
        found.append(token.strip() if known else value)
        if name.lower() == "cookie":  # each cookie's value alone, as a server may echo it
            found += [part.partition("=")[2].strip() for part in value.split(";")]
    return sorted({secret for secret in found if len(secret) >= 8}, key=len, reverse=True)


def _unexpected_body(
    expected: str, raw: bytes, status: int, headers: dict[str, str], request: _RequestInfo
) -> APIResponseValidationError:
    content_type = headers.get("content-type") or "no content type"
    text = raw.decode("utf-8", "replace")
    seen = _readable(text, content_type) or "an empty body"
    hint = " (a proxy or login page may be in the way)" if "html" in content_type else ""
    return APIResponseValidationError(
        f"Expected {expected} from {request.method} {request.url} but got {content_type}: "
        f"{seen}{hint}",
        request,
        body=text,
        status_code=status,
        request_id=headers.get("x-request-id"),
    )


def _expect_object(payload: Any, what: str, request: _RequestInfo | None) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise APIResponseValidationError(
            f"Expected a JSON object for {what}, got {type(payload).__name__}.",
            request,
            body=payload,
        )
    return payload


_NOT_JSON = object()
if TYPE_CHECKING:
    # A response as with_raw_response keeps it: method, url, status, headers, body (None while
    # streamed), retries taken, and when it was sent (time.monotonic()).
    _Seen = Tuple[str, str, int, Dict[str, str], Optional[bytes], int, float]
_STALE_CONNECTION_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
#: Headers that carry no credential: the only ones sent on after a redirect to another origin,
#: and the only ones whose values may show in an error. Any other header may be a key
#: (Authorization, Azure's api-key, a gateway's X-Api-Key, a Cookie).
_PLAIN_HEADERS = frozenset(
    {"accept", "user-agent", "content-type", "openai-organization", "openai-project"}
)
_REDIRECT_HEADERS = frozenset({"accept", "user-agent"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _Transport:
    """Sends requests: headers, keep-alive connections, redirects and the retry rules.

    The clock, sleep and random number source are the client's, so that tests can replace
    them without touching this module.
    """

    def __init__(
        self,
        *,
        base_url: str,
        headers: dict[str, str],
        timeout: _Seconds,
        retry: _RetryPolicy,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        random: Callable[[], float],
        query: Mapping[str, str] | None = None,
        credentials: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        self.base_url = base_url
        self.headers = headers
        self.query = dict(query or {})  # on every request, before the call's own
        self.credentials = credentials  # the auth headers, asked for on every request
        self.timeout = timeout
        self.retry = retry
        self.clock = clock
        self.sleep = sleep
        self.random = random
        self.pool = _Pool()
        self.closed = False  # by close(): as an httpx client, it sends nothing more
        self.last_date: tuple[float, float] | None = None  # the last Date header, and when
        self.drops_metadata = False  # seen: a batch made without the metadata it was sent
        self.watching: dict[int, list[_Seen]] = {}  # by thread: with_raw_response's responses

    def close(self) -> None:
        self.closed = True
        self.pool.close()

    def server_now(self) -> float | None:
        """The server's clock, from the last response's Date header; None before any."""
        if self.last_date is None:
            return None
        moment, seen_at = self.last_date
        return moment + (self.clock() - seen_at)

    def url(self, path: str, query: _Query | None = None) -> str:
        from urllib.parse import urlencode

        merged = {**self.query, **(query or {})} if self.query else query or {}
        pairs = [(key, _query_value(value)) for key, value in merged.items()]
        pairs = [(key, value) for key, value in pairs if value is not None]
        return self.base_url + path + ("?" + urlencode(pairs) if pairs else "")

    def seconds(self, timeout: _TimeoutArg) -> _Seconds:
        """A call's timeout: its own, or the client's when it gives none (None, NOT_GIVEN)."""
        return (
            self.timeout if timeout is None or isinstance(timeout, NotGiven) else _timeout(timeout)
        )

    def merged_headers(self, extra: _Headers | None) -> dict[str, str]:
        """The headers of one request: credentials, then the client's, then the call's; a
        name given again (in any case) replaces the one before; None or an Omit removes it."""
        headers = self.credentials() if self.credentials is not None else {}
        for name, value in [*self.headers.items(), *(extra or {}).items()]:
            for existing in [key for key in headers if key.lower() == name.lower()]:
                del headers[existing]
            if value is not None and not isinstance(value, Omit):
                headers[name] = _header_value(name, value)
        return headers

    # -- retries ---------------------------------------------------------------------------

    def call(
        self,
        attempt: Callable[[], _T],
        *,
        recover: Callable[[APIError, bool], _T | None] | None = None,
    ) -> _T:
        """Run ``attempt`` until it succeeds or the retry rules say stop.

        ``recover(error, last)`` runs after each failed try, ``last`` telling whether another
        try will follow; a value it returns is the result (a create call's batch, found
        although its response was lost).
        """
        retries = 0
        while True:
            try:
                return attempt()
            except (APIStatusError, APIConnectionError) as exc:
                delay = self.retry_delay(exc, retries)
                found = recover(exc, delay is None) if recover is not None else None
                if found is not None:
                    return found
                if delay is None:
                    raise
            self.sleep(delay)
            retries += 1

    def retry_delay(self, error: APIError, retries_taken: int) -> float | None:
        """Seconds to wait before trying again after ``error``, or None to give up."""
        if retries_taken >= self.retry.max_retries:
            return None
        now = self.clock()
        headers: Mapping[str, str] = {}
        if isinstance(error, APIStatusError):
            headers = error.headers
            if not self.retry.should_retry(error.status_code, headers, now):
                return None
        elif not (isinstance(error, APIConnectionError) and error._retryable):
            return None
        return self.retry.delay(retries_taken, headers, now, self.random())

    # -- requests --------------------------------------------------------------------------

    def request_json(
        self,
        method: str,
        path: str,
        parse: Callable[[Any], _T],
        *,
        query: _Query | None = None,
        body: _Body | None = None,
        headers: _Headers | None = None,
        timeout: _TimeoutArg = None,
        recover: Callable[[APIError, bool], _T | None] | None = None,
    ) -> _T:
        """Send a request (with retries) and return ``parse`` of its decoded JSON."""
        url = self.url(path, query)
        seconds = self.seconds(timeout)
        tries = [0]

        def attempt() -> _T:
            # The headers of each try, as the official package makes them: a token provider
            # gives a fresh token to a retry that may come after the last one expired.
            sent = self.merged_headers(headers)
            started = time.monotonic()
            response, connection, request = self.respond(method, url, sent, body, seconds)
            raw = self.read_and_release(response, connection, request)
            received = _lower_headers(response)
            tries[0] += 1
            if response.status >= 300:
                raise self.scrubbed(_status_error(response.status, received, raw, request), sent)
            if self.watching:
                seen = (method, url, response.status, received, raw, tries[0] - 1, started)
                self.saw(seen)
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = _NOT_JSON
            if payload is _NOT_JSON:  # raised here, so that no JSONDecodeError holds the body
                error = _unexpected_body("JSON", raw, response.status, received, request)
                raise self.scrubbed(error, sent)
            try:
                made = parse(payload)
            except APIError as exc:  # the wrong shape: its body is what the server sent
                exc.request = exc.request or request
                raise self.scrubbed(exc, sent) from None
            if isinstance(made, (_Model, CursorPage)):
                made._request_id = received.get("x-request-id")
            return made

        return self.call(attempt, recover=recover)

    def saw(self, seen: _Seen) -> None:
        """Keep a response for the with_raw_response call running on this thread, if any."""
        import _thread

        watched = self.watching.get(_thread.get_ident())
        if watched is not None:
            watched.append(seen)

    def scrubbed(self, error: _E, sent: Mapping[str, str]) -> _E:
        """The error without any credential it was ``sent`` with, should a server or a proxy
        have echoed one back.

        Every attribute a caller may print or log is cleaned: the message, the body, the
        headers, and ``error.response``'s content and headers.
        """
        secrets = _secrets(sent)
        if not secrets:
            return error
        error.message = _scrub(error.message, secrets)
        error.args = (error.message,)
        error.body = _scrub(error.body, secrets)
        if isinstance(error, APIStatusError):
            error.headers = _scrub(error.headers, secrets)
            error.response.headers = _AnyCase(_scrub(dict(error.response.headers), secrets))
            error.response.content = _scrub(error.response.content, secrets)
        return error

    def stream(
        self,
        path: str,
        content: Callable[..., _T],
        *,
        query: _Query | None = None,
        headers: _Headers | None = None,
        timeout: _TimeoutArg = None,
    ) -> _T:
        """GET a body to be read as it arrives (with retries until the response starts), as
        ``content(response, connection, request, transport, reopen=...)``: a BinaryContent."""
        url = self.url(path, query)
        seconds = self.seconds(timeout)

        def attempt() -> _T:
            sent = self.merged_headers(headers)  # each try's own, as in request()
            started = time.monotonic()
            response, connection, request = self.respond("GET", url, sent, None, seconds)
            received = _lower_headers(response)
            if self.watching and response.status < 300:
                self.saw(("GET", url, response.status, received, None, 0, started))
            if response.status >= 300:
                raw = self.read_and_release(response, connection, request)
                raise self.scrubbed(_status_error(response.status, received, raw, request), sent)
            if received.get("content-type", "").startswith("text/html"):
                # The API serves files as data, never as web pages: this is a proxy's login
                # or block page, and saving it as the batch's output would lose the results.
                raw = self.read_and_release(response, connection, request)
                error = _unexpected_body("file content", raw, response.status, received, request)
                raise self.scrubbed(error, sent)
            return content(response, connection, request, self, reopen=again)

        def again() -> _T:
            return self.stream(path, content, query=query, headers=headers, timeout=timeout)

        return self.call(attempt)

    def read_and_release(
        self, response: http.client.HTTPResponse, connection: _Connection, request: _RequestInfo
    ) -> bytes:
        try:
            raw = _read_body(response, request)
        except BaseException:
            connection.conn.close()
            raise
        self.release(connection, response)
        return raw

    def release(self, connection: _Connection, response: http.client.HTTPResponse) -> None:
        """Keep the connection for the next request if the server lets us, else close it."""
        if response.will_close or connection.conn.sock is None:
            connection.conn.close()
        else:
            self.pool.give_back(connection.origin, connection)

    def respond(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: _Body | None,
        timeout: _Seconds,
    ) -> tuple[http.client.HTTPResponse, _Connection, _RequestInfo]:
        """One exchange, following GET redirects; credentials never go to another origin."""
        for _ in range(_MAX_REDIRECTS + 1):
            request = _RequestInfo(method, url)
            response, connection = self.exchange(request, headers, body, timeout)
            location = response.getheader("location")
            if method != "GET" or response.status not in _REDIRECTS or not location:
                return response, connection, request
            self.read_and_release(response, connection, request)
            target = _join_url(url, location)
            if _origin(target) != _origin(url):
                headers = {k: v for k, v in headers.items() if k.lower() in _REDIRECT_HEADERS}
            url = target
        message = f"Too many redirects ({method} {url})."
        raise _final(APIConnectionError(message=message, request=request))

    def exchange(
        self,
        request: _RequestInfo,
        headers: dict[str, str],
        body: _Body | None,
        timeout: _Seconds,
    ) -> tuple[http.client.HTTPResponse, _Connection]:
        """Send one request on a kept-alive or new connection and read the response head."""
        import http.client

        if self.closed:  # httpx's words, raised where the official client raises them
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        origin = _origin(request.url)
        connection = self.pool.take(origin)
        reused = connection is not None
        try:
            if connection is None:
                connection = self.pool.open(origin, timeout)
            if connection.conn.sock is None:
                _connect(connection, request)
            response = _send(connection, request, headers, body, timeout)
            date = _http_date(response.getheader("date"))
            if date is not None:
                self.last_date = (date, self.clock())
            return response, connection
        except (OSError, http.client.HTTPException) as exc:
            if connection is not None:
                connection.conn.close()
            stale = isinstance(exc, (http.client.RemoteDisconnected, *_STALE_CONNECTION_ERRORS))
            if reused and stale and request.method == "GET":
                # A kept-alive connection the server has since closed: no request reached it.
                return self.exchange(request, headers, body, timeout)
            raise _connection_error(exc, request) from exc
        except BaseException:
            if connection is not None:
                connection.conn.close()
            raise


def _connect(connection: _Connection, request: _RequestInfo) -> None:
    """Open the connection; a failure here means the request was certainly not sent."""
    import http.client

    try:
        connection.conn.connect()
    except (OSError, http.client.HTTPException) as exc:
        error = _connection_error(exc, request)
        error._unsent = True
        if str(exc).startswith("Tunnel connection failed"):  # the proxy said no
            error = _final(error)
            error.message += " (check HTTPS_PROXY and its credentials)"
            error.args = (error.message,)
        raise error from exc


def _send(
    connection: _Connection,
    request: _RequestInfo,
    headers: dict[str, str],
    body: _Body | None,
    timeout: _Seconds,
) -> http.client.HTTPResponse:
    conn = connection.conn
    conn.sock.settimeout(_phase(timeout, "write"))
    target = request.url if connection.absolute else _path_and_query(request.url)
    conn.putrequest(request.method, target)
    for name, value in {**headers, **connection.headers}.items():
        conn.putheader(name, value)
    if body is not None:
        conn.putheader("Content-Type", body.content_type)
    if body is not None or request.method in ("POST", "PUT", "PATCH"):
        conn.putheader("Content-Length", str(body.length if body is not None else 0))
    try:
        conn.endheaders(body.data if body is not None else None)
        if body is not None and body.chunks is not None:
            for chunk in body.chunks():
                conn.send(chunk)
    except _STALE_CONNECTION_ERRORS:
        # The server may have answered before taking the whole body (a 401 or 413 on an
        # upload); that answer says more than the broken pipe does.
        try:
            conn.sock.settimeout(_phase(timeout, "read"))
            return conn.getresponse()
        except Exception:
            pass
        raise
    conn.sock.settimeout(_phase(timeout, "read"))  # and for the body read after it, too
    return conn.getresponse()


def _path_and_query(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return (parts.path or "/") + ("?" + parts.query if parts.query else "")


def _join_url(base: str, location: str) -> str:
    from urllib.parse import urljoin

    return urljoin(base, location)


def _query_value(value: object) -> str | None:
    if value is None or isinstance(value, (NotGiven, Omit)):
        return None
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Backoff:
    """Pauses that grow while nothing changes: ``first``, then ``factor`` times as long each
    time, to ``most``; ``reset()`` starts them over. Every loop that polls or waits for a
    server takes its pauses from one of these."""

    def __init__(
        self, first: float = _FIRST_POLL, most: float = _MAX_POLL, factor: float = 1.5
    ) -> None:
        self.first, self.most, self.factor = first, max(first, most), factor
        self.pause = first

    def next(self) -> float:
        """The pause to take now; the one after it is longer."""
        pause = self.pause
        self.pause = min(self.pause * self.factor, self.most)
        return pause

    def reset(self) -> None:
        self.pause = self.first


class _Outage:
    """How long a server that does not answer is waited for, before giving up.

    The rule, the same for ``wait``, a job's calls and a direct job's requests: a call that
    gets no answer, or an answer that says the server is down or full (a 5xx or 429 to the
    Batch API's own calls), starts the outage clock; any answer that shows the server at
    work stops it. A server that has never answered in this run is given ``first`` seconds,
    one that stops answering ``limit`` seconds. Past that, whoever waits gives up and says so.
    """

    def __init__(
        self, clock: Callable[[], float], limit: float = _MAX_OUTAGE, first: float | None = None
    ) -> None:
        self.clock, self.limit = clock, limit
        self.first = limit if first is None else first
        self.since: float | None = None  # when the server stopped answering
        self.answered = False
        self.began = clock()

    def up(self) -> None:
        """The server answered."""
        self.since, self.answered = None, True

    def down(self) -> bool:
        """The server did not answer: whether to keep waiting for it."""
        now = self.clock()
        if self.since is None:
            self.since = now
        limit = self.limit if self.answered else self.first
        return now - max(self.since, self.began) < limit

    def remaining(self) -> float:
        """Seconds left before giving up, if the server goes on not answering."""
        limit = self.limit if self.answered else self.first
        return max(limit - self.seconds, 0.0)

    @property
    def seconds(self) -> float:
        """How long the server has not answered."""
        return 0.0 if self.since is None else max(self.clock() - self.since, 0.0)


###############################################################################################
# Downloads and atomic files: content read as it arrives, files written whole or not at all
###############################################################################################


class BinaryContent:
    """A file's content, read from the network as it is consumed.

    Read it once, by ``iter_bytes()``, ``iter_lines()``, ``read()`` (kept, so ``content`` and
    ``text`` work after it) or ``write_to_file()``. Close it, or use it in a ``with`` block,
    when you stop reading early. A body shorter than its Content-Length raises
    ``APIConnectionError``; it never passes for a whole file.
    """

    def __init__(
        self,
        response: http.client.HTTPResponse,
        connection: _Connection,
        request: _RequestInfo,
        transport: _Transport,
        reopen: Callable[[], BinaryContent] | None = None,
    ) -> None:
        self.status_code = response.status
        self.headers = _lower_headers(response)
        self.request_id = self.headers.get("x-request-id")
        self._response = response
        self._connection = connection
        self._request = request
        self._transport = transport
        self._reopen = reopen
        self._expected = _content_length(self.headers)
        self._content: bytes | None = None
        self._started = False
        self._finished = False

    def __repr__(self) -> str:
        return f"<BinaryContent {self._request.url} status={self.status_code}>"

    def __enter__(self) -> BinaryContent:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the connection if the body was not read to its end."""
        if not self._finished:
            self._finished = True
            self._response.close()
            self._connection.conn.close()

    def __del__(self) -> None:
        # Dropped unread, the content would hold its socket until the collector found the
        # connection; the official client's content is read whole, so code written for it
        # drops one freely. (An __init__ that failed leaves nothing to close.)
        if hasattr(self, "_finished"):
            self.close()

    def iter_bytes(self, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """The body in chunks as they arrive.

        A download that breaks off is started again under the client's retry rules, and the
        bytes already given are skipped, so that the chunks are the whole body exactly once.
        """
        if self._content is not None:
            for start in range(0, len(self._content), chunk_size):
                yield self._content[start : start + chunk_size]
            return
        if self._started:
            raise OpenAIError("The content has already been read; it can be read only once.")
        self._started = True
        content, given, retries = self, 0, 0
        try:
            while True:
                try:
                    for chunk in content._chunks(chunk_size, skip=given):
                        given += len(chunk)
                        yield chunk
                    return
                except APIConnectionError as error:
                    delay = self._transport.retry_delay(error, retries)
                    if delay is None or self._reopen is None:
                        raise
                self._transport.sleep(delay)
                retries += 1
                content.close()
                content = self._again()
        finally:
            content.close()
            self.close()

    def _again(self) -> BinaryContent:
        """The same body, asked for again after a break; a body of another size is refused."""
        assert self._reopen is not None
        content = self._reopen()
        if content._expected != self._expected:
            content.close()
            raise APIConnectionError(
                message=f"The file changed while it was being downloaded (GET "
                f"{self._request.url}): {self._expected} bytes, then {content._expected}.",
                request=self._request,
            )
        return content

    def _chunks(self, chunk_size: int, skip: int = 0) -> Iterator[bytes]:
        """The response's body, less its first ``skip`` bytes (given before a break)."""
        import http.client

        received = 0
        while True:
            try:
                chunk = self._response.read(chunk_size)
            except (OSError, http.client.HTTPException) as exc:
                raise _connection_error(exc, self._request) from exc
            if not chunk:
                break
            received += len(chunk)
            if received > skip:
                yield chunk[max(0, len(chunk) - (received - skip)) :]
        if self._expected is not None and received != self._expected:
            raise APIConnectionError(
                message=f"Download broke off after {received:,} of {self._expected:,} bytes "
                f"(GET {self._request.url}).",
                request=self._request,
            )
        if received < skip:
            raise APIConnectionError(
                message=f"The file came back shorter than before ({received:,} bytes, after "
                f"{skip:,}) (GET {self._request.url}).",
                request=self._request,
            )
        self._finished = True
        self._transport.release(self._connection, self._response)

    def iter_lines(self) -> Iterator[str]:
        r"""The body as text lines, without their endings (``\n``, ``\r\n`` or ``\r``, as
        httpx splits them)."""
        # A line not ended yet is kept in pieces and joined once, when it ends: adding each
        # chunk to it copied it again for every chunk, and a line of 80 MB took 75 s.
        pending: list[bytes] = []
        for chunk in self.iter_bytes():
            *ended, rest = chunk.split(b"\n")
            if ended:
                ended[0] = b"".join([*pending, ended[0]])
                pending = []
            for line in ended:  # a "\r" before the "\n" is their ending; any other, one too
                yield from line[: -1 if line.endswith(b"\r") else None].decode("utf-8").split("\r")
            pending.append(rest)
        last = b"".join(pending).decode("utf-8").split("\r")
        yield from last[:-1] if last[-1] == "" else last  # as _split_lines: none after the end

    def read(self) -> bytes:
        """The whole body (kept in memory; prefer ``write_to_file`` for large files)."""
        if self._content is None:
            self._content = b"".join(self.iter_bytes())
        return self._content

    @property
    def content(self) -> bytes:
        return self.read()

    @property
    def text(self) -> str:
        return self.read().decode("utf-8")

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.read())

    def iter_text(self, chunk_size: int = 64 * 1024) -> Iterator[str]:
        """The body as text, in pieces as they arrive (UTF-8 split safely between them)."""
        import codecs

        decoder = codecs.getincrementaldecoder("utf-8")()
        for chunk in self.iter_bytes(chunk_size):
            text = decoder.decode(chunk)
            if text:  # as httpx: no empty pieces (a split character's first bytes, the end)
                yield text
        text = decoder.decode(b"", final=True)
        if text:
            yield text

    def write_to_file(self, file: str | os.PathLike[str]) -> int:
        """Save the body to ``file`` atomically and return the number of bytes written.

        The bytes go to a temporary file beside the target, which is renamed only once the
        whole body has arrived. A download that breaks off is resumed under the client's
        retry rules; if it cannot finish, the target is left as it was, nothing is left beside
        it, and the error is raised.
        """
        with _AtomicFile(file) as out:
            written = 0
            for chunk in self.iter_bytes(_CHUNK):
                out.file.write(chunk)
                written += len(chunk)
            return written

    stream_to_file = write_to_file  # the official package's other name for it


def _content_length(headers: Mapping[str, str]) -> int | None:
    try:
        length = int(headers.get("content-length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


class _AtomicFile:
    """A file written beside its target and renamed over it only when complete.

    Whatever happens, the target holds either its old content or the whole new one: leaving
    the ``with`` block by an exception, or calling ``discard()``, removes the partial file.
    Whatever fails (a write, the flush, fsync, close or rename, as on a full disk), the
    partial file is removed and the first error is raised, named by the target.
    """

    def __init__(self, path: _PathLike) -> None:
        import errno

        self.path = os.fspath(path)
        directory, name = os.path.split(self.path)
        if not name or os.path.isdir(self.path):
            raise IsADirectoryError(errno.EISDIR, "Is a directory, not a file name", self.path)
        self.partial = os.path.join(directory, f".{name}.{os.urandom(4).hex()}.part")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        try:
            descriptor = os.open(self.partial, flags, 0o666)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "No such folder", directory or ".") from None
        except OSError as exc:
            raise _named(exc, self.path) from None
        self.file: IO[bytes] = _PartFile(descriptor, self.path)
        self.done = False

    def __enter__(self) -> _AtomicFile:
        return self

    def __exit__(self, kind: object, *exc_info: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()

    def commit(self) -> None:
        """Rename the file over its target, once all of it is on disk."""
        if self.done:
            return
        self.done = True
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.partial, self.path)
        except BaseException as exc:
            self._remove()
            if isinstance(exc, OSError):
                raise _named(exc, self.path) from None
            raise

    def discard(self) -> None:
        """Remove the partial file, leaving the target as it was."""
        if not self.done:
            self.done = True
            self._remove()

    def _remove(self) -> None:
        try:
            self.file.close()
        except OSError:
            # The bytes still buffered met the full disk again. The first error is the one to
            # raise, and the file is closed all the same: close() closes it, then raises.
            pass
        _remove_quietly(self.partial)


class _PartFile(io.BufferedWriter):
    """The partial file of an ``_AtomicFile``, whose write errors name the target."""

    def __init__(self, descriptor: int, target: str) -> None:
        super().__init__(io.FileIO(descriptor, "wb"))
        self.target = target

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except OSError as exc:  # a full disk, with no name: the file written to is the target
            raise _named(exc, self.target) from None


def _named(exc: OSError, path: str) -> OSError:
    """The error named by ``path``: a temporary file's name means nothing to anyone."""
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror, path)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _pieces(data: _AnyStr, size: int | None) -> Iterator[_AnyStr]:
    """``data`` in pieces of ``size``, or whole when it is None; none when it is empty (httpx)."""
    size = size or len(data) or 1
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _split_lines(text: str) -> list[str]:
    r"""Lines without their endings: ``\n``, ``\r\n`` or ``\r``, as httpx splits them
    (``str.splitlines`` would also split on form feeds and the like)."""
    import re

    lines = re.split(r"\r\n|\r|\n", text)
    return lines[:-1] if lines[-1] == "" else lines


###############################################################################################
# Resources: client.batches and client.files
###############################################################################################


def _quote_id(value: str, name: str) -> str:
    """An id made safe for a URL path; an empty one is refused before any request."""
    from urllib.parse import quote

    if not isinstance(value, str) or not value:
        raise _ArgumentError(f"Expected a non-empty value for `{name}` but received {value!r}")
    return quote(value, safe="")


def _segment(value: str, name: str) -> str:
    """An id as the official package puts it in a path: percent-encoded, but for the
    characters a path segment may hold (a fine-tuned model's colons stay as they are)."""
    from urllib.parse import quote

    _quote_id(value, name)
    return quote(value, safe="!$&'()*+,;=:@")


def _check_metadata(metadata: Mapping[str, str] | None) -> None:
    """Refuse metadata the API would refuse, before anything is sent, as the API refuses it.

    The official package sends such metadata and the server answers 400; its caller catches
    BadRequestError. Refusing here raises that class with the server's message, param and
    code (no request id: nothing was sent), and keeps create's identity logic (16 keys leave
    no room for the idempotency key) working on metadata the server would keep.
    """
    if metadata is None:
        return
    if len(metadata) > _METADATA_MAX_KEYS:
        raise _refused(
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{_METADATA_MAX_KEYS} properties, but got an object with {len(metadata)} "
            "properties instead.",
            "metadata",
            "object_above_max_properties",
        )
    given: Mapping[Any, object] = metadata  # what a caller passes, typed or not
    for key, value in given.items():
        if not isinstance(value, str):
            message = f"Invalid type for 'metadata.{key}': expected a string, but got "
            raise _refused(message + f"{_type_named(value)} instead.", f"metadata.{key}")
        for what, text, most in (
            ("key", str(key), _METADATA_MAX_KEY),
            ("value", value, _METADATA_MAX_VALUE),
        ):
            if len(text) > most:
                raise _refused(
                    f"Invalid 'metadata': {what} too long. Expected a string with maximum "
                    f"length {most}, but got a string with length {len(text)} instead.",
                    f"metadata.{key}",
                    "string_above_max_length",
                )


def _type_named(value: object) -> str:
    """A Python value's JSON type as the API's messages name it: "an integer", "null"..."""
    kinds: list[tuple[type, str]] = [(bool, "a boolean"), (int, "an integer"), (float, "a decimal")]
    kinds += [(str, "a string"), (list, "an array"), (tuple, "an array"), (dict, "an object")]
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


def _refused(message: str, param: str, code: str = "invalid_type") -> BadRequestError:
    """The 400 the API would answer for a request body it refuses, made without sending it."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    headers = {"content-type": "application/json"}
    content = json.dumps({"error": error}).encode()
    return BadRequestError(
        f"Error code: 400 - {message}",
        status_code=400,
        body=error,
        response=_ErrorResponse(400, headers, content),
    )


def _parse(model: type[_M], payload: Any, what: str) -> _M:
    return model.from_dict(_expect_object(payload, what, None))


def _expecting(model: type[_M], what: str) -> Callable[[Any], _M]:
    return lambda payload: _parse(model, payload, what)


def _page(
    payload: Any, model: type[_M], fetch: Callable[[str | None], CursorPage[_M]]
) -> CursorPage[_M]:
    page = _expect_object(payload, "a list page", None)
    items = page.get("data")
    if not isinstance(items, list):
        raise APIResponseValidationError(
            f"Expected a list in the `data` of a list page, got {type(items).__name__}.",
            body=page,
        )
    data = [_parse(model, item, "an item of a list page") for item in items]
    last_id = page.get("last_id") or (getattr(data[-1], "id", None) if data else None)
    return CursorPage(
        data,
        has_more=page.get("has_more"),
        first_id=page.get("first_id"),
        last_id=last_id,
        fetch=fetch,
        raw=page,
    )


def _pages(
    transport: _Transport,
    path: str,
    model: type[_M],
    after: str | None,
    query: _Query,
    headers: _Headers | None,
    timeout: _TimeoutArg,
) -> CursorPage[_M]:
    """The first page of a list at ``path`` (after ``after``), whose next pages are fetched
    the same way as iteration reaches them; ``query`` holds the list's other parameters (an
    ``extra_query`` in it wins, as in the official package)."""

    def fetch(cursor: str | None) -> CursorPage[_M]:
        return transport.request_json(
            "GET",
            path,
            lambda payload: _page(payload, model, fetch),
            query={"after": cursor, **query},
            headers=headers,
            timeout=timeout,
        )

    return fetch(after)


def _create_body(
    input_file_id: str,
    endpoint: BatchEndpoint | str,
    completion_window: CompletionWindow | str,
    metadata: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The JSON of a create call, checked as the API would check it, before anything is sent."""
    _quote_id(input_file_id, "input_file_id")
    _check_metadata(metadata)
    body: dict[str, Any] = {
        "input_file_id": input_file_id,
        "endpoint": str(_query_value(endpoint)),
        "completion_window": str(_query_value(completion_window)),
    }
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return body


def _outcome_unknown(error: APIError) -> bool:
    """Whether a failed request may still have done its work on the server."""
    if isinstance(error, APIConnectionError):
        return not error._unsent  # a refused connection sent nothing
    return isinstance(error, APIStatusError) and (
        error.status_code >= 500 or error.status_code in (408, 409)
    )


def _with_extra(body: dict[str, Any], extra_body: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**body, **extra_body} if extra_body else body


def _identity(metadata: Mapping[str, str], given: str | None) -> tuple[str, bool]:
    """A create call's idempotency key, and whether the batch's metadata has room for it.

    The key is the caller's ``idempotency_key`` or a new random one. With 16 metadata keys of
    the caller's own there is no room, which a caller's key cannot do without.
    """
    if given is not None and (not isinstance(given, str) or not 0 < len(given) <= _MAX_KEY_LENGTH):
        raise _ArgumentError(
            f"idempotency_key must be a string of 1 to {_MAX_KEY_LENGTH} characters"
        )
    room = len(metadata) < _METADATA_MAX_KEYS
    if given is not None and not room:
        raise _ArgumentError(
            f"metadata has {_METADATA_MAX_KEYS} keys, leaving no room for the idempotency key; "
            "drop one to use idempotency_key"
        )
    return given or os.urandom(16).hex(), room


def _own_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The caller's metadata without an idempotency key copied from another batch's: each
    call has its own key, and a copied one would find that other batch."""
    return {k: v for k, v in (metadata or {}).items() if k != IDEMPOTENCY_METADATA_KEY}


class _Create:
    """One ``batches.create`` call, known from start to end by its idempotency key.

    The key goes in the batch's metadata (``IDEMPOTENCY_METADATA_KEY``) and in an
    Idempotency-Key header. When a try's outcome is unknown, the batch list is read for the
    key, never for a file or a time; finding it ends the call, and not finding it within 30 s
    lets the next try go. After a create that may have a twin (an unknown try before it, or a
    caller's key that another process may hold), the call waits to see its batch listed, then
    keeps the oldest batch with the key and cancels the others.
    """

    def __init__(self, batches: Batches, key: str, stored: bool, options: dict[str, Any]) -> None:
        self.batches, self.key, self.stored, self.options = batches, key, stored, options
        self.transport = batches._client._transport
        self.started = self.transport.clock()
        self.unknown = False  # a try may have made a batch that we have not seen
        self.recovered: Batch | None = None  # the batch found in the list after such a try

    def run(self, body: dict[str, Any], headers: _Headers | None, shared: bool) -> Batch:
        """Send the create with retries; ``shared``: another process may hold the key."""
        made = self.transport.request_json(
            "POST",
            "/batches",
            _expecting(Batch, "a batch"),
            body=_Body.json(body),
            query=self.options["extra_query"],
            headers={"Idempotency-Key": self.key, **(headers or {})},
            timeout=self.options["timeout"],
            recover=self.recover,
        )
        if made is self.recovered:
            return made
        if self.stored and not _carries_key(made, self.key):
            self.transport.drops_metadata = True  # later unknown outcomes cannot be looked up
            return made
        return self.confirm(made) if self.unknown or shared else made

    def confirm(self, made: Batch) -> Batch:
        """Keep one batch of the key, once the list shows ``made`` or a twin (30 s at most).

        A list that lags shows batches in the order they were made, so once it shows this
        call's batch, it shows any twin made before it.
        """
        found = self.settle(readable=False)  # unread: the batch in hand is this call's
        return self.keep_one([made, *found]) if found else made

    def recover(self, error: APIError, last: bool) -> Batch | None:
        """After a failed try: the batch it made, if any; raise if that cannot be known."""
        if not _outcome_unknown(error):
            return None
        self.unknown = True
        if not self.stored or self.transport.drops_metadata:
            why = (
                "with 16 metadata keys there was no room for the key that would tell"
                if not self.stored
                else "this server does not keep metadata, so its key cannot tell"
            )
            raise OutcomeUnknownError(
                f"A create call failed ({error}) and may have made its batch; {why}, so it was "
                "not sent again. Check the batch list before creating it again.",
                idempotency_key=None,
                request=error.request,
            ) from error
        found = self.settle()
        if found:
            self.recovered = self.keep_one(found)
            return self.recovered
        if last:
            raise OutcomeUnknownError(
                f"A create call failed ({error}), and no batch with its idempotency key "
                f"{self.key} appeared in the batch list within {sum(_SETTLE_PAUSES):g} s, so "
                "it most likely made none; but a late request may yet make one. Call create "
                f"again with idempotency_key={self.key!r}: it returns that batch if it exists "
                "and makes it if not.",
                idempotency_key=self.key,
                request=error.request,
            ) from error
        return None

    def lookback(self) -> float:
        return self.transport.clock() - self.started + _KEY_SLACK

    def settle(
        self, readable: bool = True, horizon: float | None = None, sent: bool = True
    ) -> list[Batch]:
        """The batches with the key, read from the list until one shows or 30 s pass, as far
        back as ``horizon`` seconds (this call's own time, by default). A list that cannot
        be read raises if it must be ``readable``, else counts as showing none."""
        for pause in _SETTLE_PAUSES:
            if pause:
                self.transport.sleep(pause)
            try:
                found = self.matching(self.lookback() if horizon is None else horizon, sent)
            except OutcomeUnknownError:
                if readable:
                    raise
                return []
            if found:
                return found
        return []

    def matching(self, lookback: float, sent: bool = True) -> list[Batch]:
        """The listed batches with the key, made within ``lookback`` seconds of now.

        The cut-off is on the server's clock, read from the list's own Date header, so that
        our clock being wrong cannot hide a batch; without any Date, the whole list is read.
        A list that cannot be read is an unknown outcome once a create has been ``sent``.
        """
        found, cutoff = [], None
        try:
            for batch in self.batches.list(limit=100, **self.options):
                if cutoff is None:
                    now = self.transport.server_now()
                    cutoff = -1.0 if now is None else now - lookback
                if _carries_key(batch, self.key):
                    found.append(batch)
                elif isinstance(batch.created_at, (int, float)) and batch.created_at < cutoff:
                    break  # newest first: every batch past this one is older still
        except APIError as exc:
            if not sent:
                raise
            raise OutcomeUnknownError(
                f"A create call's outcome is unknown, and the batch list could not be read to "
                f"find its batch (idempotency key {self.key}), so it was not sent again: {exc}",
                idempotency_key=self.key,
                request=exc.request,
            ) from exc
        return found

    def keep_one(self, found: list[Batch]) -> Batch:
        """The oldest batch with the key; any other is a duplicate, cancelled at once."""
        unique = {batch.id: batch for batch in found}
        ordered = sorted(unique.values(), key=lambda b: (b.created_at or 0, b.id))
        kept = ordered[0]
        for twin in ordered[1:]:
            if twin.is_terminal or twin.status == BatchStatus.CANCELLING:
                continue
            try:
                self.batches.cancel(twin.id, **self.options)
            except APIError as exc:
                raise DuplicateBatchError(
                    f"Batch {twin.id} duplicates {kept.id} (the same idempotency key) and "
                    f"could not be cancelled: {exc}. It is still to be cancelled.",
                    kept,
                    twin.id,
                ) from exc
        return kept


def _carries_key(batch: Batch, key: str) -> bool:
    return batch.idempotency_key == key


def _same_call(batch: Batch, key: str, input_file_id: str | None, endpoint: str) -> Batch:
    """``batch``, made earlier with ``key``, if it was made for the same work; a key used
    again for other work is refused, as Stripe refuses it."""
    if (input_file_id is None or batch.input_file_id == input_file_id) and _text(
        batch.endpoint
    ) == endpoint:
        return batch
    raise _ArgumentError(
        f"idempotency key {key!r} made batch {batch.id} from {batch.input_file_id} for "
        f"{_text(batch.endpoint)}; this call asks for "
        f"{input_file_id or 'a new upload'} for {endpoint}. Use a new key for new work."
    )


class Batches:
    """``client.batches``: create, retrieve, list and cancel batches."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        *,
        input_file_id: str,
        endpoint: BatchEndpoint | str,
        completion_window: CompletionWindow | str = CompletionWindow.HOURS_24,
        metadata: Mapping[str, str] | None = None,
        output_expires_after: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
        _never_sent: bool = False,
    ) -> Batch:
        """Start a batch that runs the requests of an uploaded input file.

        One call makes at most one batch. Each call carries an idempotency key, stored in the
        batch's metadata under ``IDEMPOTENCY_METADATA_KEY`` and sent as an Idempotency-Key
        header. When a try's outcome is unknown (the connection broke or timed out, the server
        failed), the batch list is read for that key, never for a file or a time: for up to
        30 s, since the list can lag creation by seconds and a request that timed out may still
        arrive. Found, that batch is returned; not found, the next try goes, carrying the same
        key. Should two batches carry it, the oldest is kept and the other cancelled.

        ``idempotency_key``, the caller's own key, makes the call idempotent across processes:
        a batch made with the same key in the last 30 days is returned, whatever its status,
        instead of a new one. Raises ``OutcomeUnknownError`` when it cannot be known whether a
        batch was made: the list could not be read, or 16 metadata keys left no room for the
        key.
        """
        if extra_body and "metadata" in extra_body:
            raise _ArgumentError("give metadata as metadata=, so that the idempotency key joins it")
        idempotency_key, output_expires_after = (
            _passed(idempotency_key),
            _passed(output_expires_after),
        )
        own = _own_metadata(_passed(metadata))
        body = _create_body(input_file_id, endpoint, completion_window, own)
        if output_expires_after is not None:
            body["output_expires_after"] = dict(output_expires_after)
        key, stored = _identity(own, idempotency_key)
        if stored:
            body["metadata"] = _stored_metadata(None if _passed(metadata) is None else own, key)
        options = {"extra_headers": extra_headers, "extra_query": extra_query, "timeout": timeout}
        call = _Create(self, key, stored, options)
        shared = idempotency_key is not None
        if shared and not _never_sent:  # (a job knows when it never sent a create of the key)
            found = call.matching(_KEY_HORIZON, sent=False)
            if found:
                return _same_call(call.keep_one(found), key, input_file_id, body["endpoint"])
        # Confirmed against twins only if another process, or an earlier send of this key, may
        # have made one; a job knows when neither can have.
        return call.run(_with_extra(body, extra_body), extra_headers, shared and not _never_sent)

    def _made_with(self, key: str, settle: bool = False) -> Batch | None:
        """The batch made with this idempotency key in the last 30 days, if there is one;
        with ``settle``, read until it shows or 30 s pass, since the list can lag."""
        call = _Create(
            self, key, True, {"extra_headers": None, "extra_query": None, "timeout": None}
        )
        if settle:
            found = call.settle(horizon=_KEY_HORIZON, sent=False)
        else:
            found = call.matching(_KEY_HORIZON, sent=False)
        return call.keep_one(found) if found else None

    def retrieve(
        self,
        batch_id: str,
        *,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> Batch:
        """Fetch a batch by id. ``extra_body`` is taken, and dropped as the official client
        drops it, since a GET sends no body (so too in each ``list`` and ``retrieve``)."""
        path = "/batches/" + _quote_id(batch_id, "batch_id")
        return self._client._transport.request_json(
            "GET",
            path,
            _expecting(Batch, "a batch"),
            query=extra_query,
            headers=extra_headers,
            timeout=timeout,
        )

    def cancel(
        self,
        batch_id: str,
        *,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> Batch:
        """Ask the server to stop a batch; it moves to ``cancelling``, then ``cancelled``."""
        path = "/batches/" + _quote_id(batch_id, "batch_id") + "/cancel"
        return self._client._transport.request_json(
            "POST",
            path,
            _expecting(Batch, "a batch"),
            body=_Body.json(dict(extra_body)) if extra_body else None,
            query=extra_query,
            headers=extra_headers,
            timeout=timeout,
        )

    def list(
        self,
        *,
        after: str | None = None,
        limit: int | None = None,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> CursorPage[Batch]:
        """Batches, newest first: the first page now, the rest as iteration reaches them."""

        query = {"limit": limit, **(extra_query or {})}
        transport = self._client._transport
        return _pages(transport, "/batches", Batch, after, query, extra_headers, timeout)

    def wait(
        self,
        batch_id: str,
        *,
        poll_interval: float | None = None,
        timeout: float | NotGiven | None = None,
        on_update: Callable[[Batch], object] | None = None,
        on_error: Callable[[APIError, float], object] | None = None,
    ) -> Batch:
        """Poll a batch until it is completed, failed, expired or cancelled, and return it.

        Polls every ``poll_interval`` seconds, or, by default, after 2 s, growing by half each
        time to a minute. ``on_update(batch)`` is called with the first batch seen and on every
        change. Each poll follows the client's retry rules; once the batch has been seen, polls
        that still fail go on for up to ten minutes of outage, and ``on_error(error, seconds)``
        is called for each, with the seconds until the next poll. Past ``timeout`` seconds,
        ``WaitTimeoutError`` is raised, carrying the last batch seen.
        """
        transport = self._client._transport
        timeout = _passed(timeout)
        deadline = None if timeout is None else transport.clock() + timeout
        backoff = _Backoff(poll_interval or _FIRST_POLL, poll_interval or _MAX_POLL)
        poll = _Poller(self, batch_id, on_update)
        while True:
            batch = poll()
            if batch.is_terminal:
                return batch
            now = transport.clock()
            if deadline is not None and now >= deadline:
                raise WaitTimeoutError(
                    f"Batch {batch.id} is still {_text(batch.status)} after {timeout:g} s.", batch
                )
            pause = backoff.next()
            pause = pause if deadline is None else min(pause, deadline - now)
            if poll.failure is not None and on_error is not None:
                on_error(poll.failure, pause)
            transport.sleep(pause)

    @property
    def with_raw_response(self) -> Any:
        """The same calls, each giving the HTTP response: ``raw.headers`` (rate limits, the
        request id), ``raw.status_code``, and ``raw.parse()`` for the batch."""
        return _WithRawResponse(self, ("create", "retrieve", "list", "cancel"))

    @property
    def with_streaming_response(self) -> Any:
        """The same calls, each a context manager for the response: ``with ... as response``."""
        return _WithStreamingResponse(self, ("create", "retrieve", "list", "cancel"))


class _Poller:
    """The polls of one ``wait``: ``on_update`` on each change, and outages ridden out.

    A day-long wait should outlast a short outage, which the retries of one poll do not; so a
    poll that still fails returns the last batch seen, until the outage passes a limit. The
    first poll must succeed: a wrong id or a wrong key should fail at once.
    """

    def __init__(
        self, batches: Batches, batch_id: str, on_update: Callable[[Batch], object] | None
    ) -> None:
        self.batches, self.batch_id, self.on_update = batches, batch_id, on_update
        self.last: Batch | None = None
        self.seen: dict[str, Any] | None = None
        self.outage = _Outage(batches._client._transport.clock)
        self.failure: APIError | None = None  # why the last poll failed, while riding it out

    def __call__(self) -> Batch:
        try:
            batch = self.batches.retrieve(self.batch_id)
        except (APIConnectionError, InternalServerError, RateLimitError) as exc:
            passing = self.outage.down()
            if self.last is None or not passing or not getattr(exc, "_retryable", True):
                raise
            self.failure = exc
            return self.last
        self.outage.up()
        self.failure = None
        current = batch.to_dict()
        if self.on_update is not None and current != self.seen:
            self.on_update(batch)
        self.seen, self.last = current, batch
        return batch


class Files:
    """``client.files``: upload, retrieve, list, delete and download files."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        *,
        file: _FileInput,
        purpose: str = "batch",
        expires_after: Mapping[str, Any] | None = None,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> FileObject:
        """Upload a file: a path, bytes, a binary file object or a (filename, content) pair.

        In the pair, a str content is sent as UTF-8, and a filename of None becomes
        "input.jsonl" (sent without one, the API would find no file). A third item is the
        file's Content-Type; without it the type is guessed from the name, as httpx does.

        The upload streams from disk, so a file of any size costs a megabyte of memory. A
        missing file, a directory or a text-mode file object is refused before any request.
        """
        form = [("purpose", str(_query_value(purpose)))]
        for key, value in (expires_after or {}).items():
            form.append((f"expires_after[{key}]", str(_query_value(value))))
        for key, value in (extra_body or {}).items():
            form.append((key, str(_query_value(value))))
        name, size, chunks = _file_source(file)
        given = file[2] if isinstance(file, tuple) and len(file) > 2 else None
        body = _multipart(form, name, size, chunks, given or _guess_type(name))
        return self._client._transport.request_json(
            "POST",
            "/files",
            _expecting(FileObject, "a file"),
            body=body,
            query=extra_query,
            headers=extra_headers,
            timeout=timeout,
        )

    def retrieve(
        self,
        file_id: str,
        *,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> FileObject:
        """Fetch a file's details by id."""
        path = "/files/" + _quote_id(file_id, "file_id")
        return self._client._transport.request_json(
            "GET",
            path,
            _expecting(FileObject, "a file"),
            query=extra_query,
            headers=extra_headers,
            timeout=timeout,
        )

    def delete(
        self,
        file_id: str,
        *,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> FileDeleted:
        """Delete a file."""
        path = "/files/" + _quote_id(file_id, "file_id")
        return self._client._transport.request_json(
            "DELETE",
            path,
            _expecting(FileDeleted, "a deleted file"),
            body=_Body.json(dict(extra_body)) if extra_body else None,
            query=extra_query,
            headers=extra_headers,
            timeout=timeout,
        )

    def list(
        self,
        *,
        purpose: str | None = None,
        limit: int | None = None,
        after: str | None = None,
        order: str | None = None,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> CursorPage[FileObject]:
        """Files, newest first unless ``order="asc"``; pages are fetched as iteration needs."""

        query = {"purpose": purpose, "limit": limit, "order": order, **(extra_query or {})}
        transport = self._client._transport
        return _pages(transport, "/files", FileObject, after, query, extra_headers, timeout)

    def content(
        self,
        file_id: str,
        *,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> BinaryContent:
        """A file's content, streamed: ``write_to_file(path)`` saves it atomically."""
        path = "/files/" + _quote_id(file_id, "file_id") + "/content"
        headers = {"Accept": "application/binary", **(extra_headers or {})}
        return self._client._transport.stream(
            path, BinaryContent, query=extra_query, headers=headers, timeout=timeout
        )

    def wait_for_processing(
        self, id: str, *, poll_interval: float = 5.0, max_wait_seconds: float = 30 * 60
    ) -> FileObject:
        """Poll a file until it is processed, has an error or is deleted, and return it.

        As the official package's, with one bound more: a server that never fills in
        ``status`` (some compatible ones) gets the file back at once, since no poll could
        tell more. Past ``max_wait_seconds``, ``RuntimeError``, as the official one raises.
        """
        transport = self._client._transport
        started = transport.clock()
        file = self.retrieve(id)
        while file.status not in ("processed", "error", "deleted") and file.status is not None:
            if transport.clock() - started >= max_wait_seconds:
                raise RuntimeError(
                    f"Giving up on waiting for file {id} to finish processing after "
                    f"{max_wait_seconds} seconds."
                )
            transport.sleep(poll_interval)
            file = self.retrieve(id)
        return file

    @property
    def with_raw_response(self) -> Any:
        """The same calls, giving the HTTP response: ``.headers``, ``.status_code`` and
        ``.parse()`` for the file."""
        return _WithRawResponse(self, _FILE_CALLS)

    @property
    def with_streaming_response(self) -> Any:
        """The same calls, each a context manager for the response; the official package's
        way to read a file's content: ``response.iter_bytes()``, ``stream_to_file(path)``."""
        return _WithStreamingResponse(self, _FILE_CALLS)

    def retrieve_content(self, file_id: str, **options: Any) -> str:
        """A file's content as text. Deprecated, as in the official package: use ``content``."""
        import warnings

        warnings.warn(
            "The `.content()` method should be used instead", DeprecationWarning, stacklevel=2
        )
        with self.content(file_id, **options) as body:
            return body.text


_FILE_CALLS = ("create", "retrieve", "list", "delete", "content", "retrieve_content")


class Models:
    """``client.models``: the models the server serves, to check a file's before sending."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(
        self,
        *,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> CursorPage[Model]:
        """Every model, in one page (the API does not page this list)."""

        def one_page(payload: Any) -> CursorPage[Model]:
            page = _page(payload, Model, lambda cursor: page)
            return CursorPage(page.data, has_more=False)

        return self._client._transport.request_json(
            "GET", "/models", one_page, query=extra_query, headers=extra_headers, timeout=timeout
        )

    def retrieve(
        self,
        model: str,
        *,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> Model:
        """Fetch a model by id (a fine-tuned one's colons stay as they are)."""
        return self._client._transport.request_json(
            "GET",
            "/models/" + _segment(model, "model"),
            _expecting(Model, "a model"),
            query=extra_query,
            headers=extra_headers,
            timeout=timeout,
        )

    def delete(
        self,
        model: str,
        *,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> ModelDeleted:
        """Delete a fine-tuned model (the organization's Owner role is needed)."""
        return self._client._transport.request_json(
            "DELETE",
            "/models/" + _segment(model, "model"),
            _expecting(ModelDeleted, "a deleted model"),
            body=_Body.json(dict(extra_body)) if extra_body else None,
            query=extra_query,
            headers=extra_headers,
            timeout=timeout,
        )

    @property
    def with_raw_response(self) -> Any:
        """The same calls, giving the HTTP response; see ``Batches.with_raw_response``."""
        return _WithRawResponse(self, ("retrieve", "list", "delete"))

    @property
    def with_streaming_response(self) -> Any:
        """The same calls, each a context manager for the response."""
        return _WithStreamingResponse(self, ("retrieve", "list", "delete"))


class LegacyAPIResponse(_Generic[_T]):
    """What a ``with_raw_response`` call gives: the HTTP response, and ``parse()`` for the
    object the plain call returns.

    ``headers`` is read in any case (``raw.headers["X-Request-Id"]``). For a create found in
    the batch list after its response was lost, the response is that list's.
    """

    http_version = "HTTP/1.1"
    is_closed = True

    def __init__(self, seen: _Seen, parsed: _T) -> None:
        self.method, self.url, self.status_code, headers, self._body, tries, started = seen
        self.headers = _AnyCase(headers)
        self.retries_taken = tries
        self.elapsed = _timedelta(time.monotonic() - started)
        self._parsed = parsed

    def __repr__(self) -> str:
        return f"<APIResponse [{self.status_code}] type={type(self._parsed)}>"

    @property
    def request_id(self) -> str | None:
        value: str | None = self.headers.get("x-request-id")
        return value

    @property
    def http_response(self) -> _ErrorResponse:
        """The response as httpx's is read: ``status_code``, ``headers``, ``url``, ``request``
        (method and URL) and ``content``, which is empty for a streamed body not yet read."""
        body = b"" if self._body is None else self._body
        return _ErrorResponse(
            self.status_code, dict(self.headers.items()), body, _RequestInfo(self.method, self.url)
        )

    @property
    def http_request(self) -> _RequestInfo:
        """The request as httpx's is read: its ``method`` and ``url`` (the headers hold the key)."""
        return _RequestInfo(self.method, self.url)

    def parse(self) -> _T:
        """The object the plain call returns."""
        return self._parsed

    @property
    def content(self) -> bytes:
        if self._body is None:  # a file's content, streamed: read it now
            self._body = self._parsed.read() if isinstance(self._parsed, BinaryContent) else b""
        return self._body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def _timedelta(seconds: float) -> Any:
    import datetime

    return datetime.timedelta(seconds=seconds)


class _WithRawResponse:
    """A resource's calls, each giving a ``LegacyAPIResponse`` instead of its object."""

    def __init__(self, resource: Any, names: tuple[str, ...]) -> None:
        self._resource, self._names = resource, names

    def __getattr__(self, name: str) -> Callable[..., LegacyAPIResponse[Any]]:
        if name not in self._names:
            raise AttributeError(f"with_raw_response has no {name!r}")
        method = getattr(self._resource, name)
        transport = self._resource._client._transport

        def call(*args: Any, **kwargs: Any) -> LegacyAPIResponse[Any]:
            import _thread

            thread = _thread.get_ident()
            seen: list[_Seen] = []
            transport.watching[thread] = seen
            try:
                parsed = method(*args, **kwargs)
            finally:
                del transport.watching[thread]
            return LegacyAPIResponse(seen[-1], parsed)

        return call


class _WithStreamingResponse:
    """A resource's calls, each giving a context manager for the response, whose body is read
    as it is used: ``with client.files.with_streaming_response.content(id) as response:``."""

    def __init__(self, resource: Any, names: tuple[str, ...]) -> None:
        self._raw = _WithRawResponse(resource, names)

    def __getattr__(self, name: str) -> Callable[..., _StreamedResponseContext]:
        if name not in self._raw._names:
            raise AttributeError(f"with_streaming_response has no {name!r}")
        call = getattr(self._raw, name)
        return lambda *args, **kwargs: _StreamedResponseContext(lambda: call(*args, **kwargs))


class _StreamedResponseContext:
    """Makes the request on ``with`` (not before), and closes the response after it."""

    def __init__(self, call: Callable[[], LegacyAPIResponse[Any]]) -> None:
        self._call = call
        self._response: _StreamedResponse | None = None

    def __enter__(self) -> _StreamedResponse:
        self._response = _StreamedResponse(self._call())
        return self._response

    def __exit__(self, *exc_info: object) -> None:
        if self._response is not None:
            self._response.close()


class _StreamedResponse:
    """A streamed response, as the official ``APIResponse`` is read: ``headers``,
    ``status_code``, ``http_response``, ``parse()``, and the body by ``read()``, ``text()``,
    ``json()``, ``iter_bytes()``, ``iter_text()``, ``iter_lines()`` or ``stream_to_file()``.

    A file's content is read from the network as it is used, once; any other body (a batch's
    JSON) was read whole by the call.
    """

    def __init__(self, raw: LegacyAPIResponse[Any]) -> None:
        self._raw = raw
        self.headers, self.status_code, self.url = raw.headers, raw.status_code, raw.url
        self.method, self.retries_taken, self.elapsed = raw.method, raw.retries_taken, raw.elapsed
        self.http_version = raw.http_version

    def __repr__(self) -> str:
        return repr(self._raw)

    def __getattr__(self, name: str) -> Any:  # request_id, http_response, http_request
        if name not in ("request_id", "http_response", "http_request"):
            raise AttributeError(f"{type(self).__name__} has no {name!r}")
        return getattr(self._raw, name)

    def _streamed(self) -> BinaryContent | None:
        body = self._raw._parsed
        return body if isinstance(body, BinaryContent) and self._raw._body is None else None

    def parse(self) -> Any:
        """The object the plain call returns; for a file's content, its bytes, as the official
        streamed response parses a binary body."""
        if isinstance(self._raw._parsed, BinaryContent):
            return self.read()
        return self._raw.parse()

    def read(self) -> bytes:
        return self._raw.content

    def text(self) -> str:
        return self.read().decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.read())

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """The body in chunks of ``chunk_size`` bytes, or as they arrive when it is None."""
        streamed = self._streamed()
        if streamed is not None:
            yield from streamed.iter_bytes(chunk_size or 64 * 1024)
            return
        yield from _pieces(self.read(), chunk_size)

    def iter_text(self, chunk_size: int | None = None) -> Iterator[str]:
        import codecs

        decoder = codecs.getincrementaldecoder("utf-8")()
        for chunk in self.iter_bytes(chunk_size):
            text = decoder.decode(chunk)
            if text:  # as httpx: no empty pieces (a split character's first bytes, the end)
                yield text
        text = decoder.decode(b"", final=True)
        if text:
            yield text

    def iter_lines(self) -> Iterator[str]:
        """The lines, split as httpx splits them (see ``_split_lines``)."""
        streamed = self._streamed()
        if streamed is None:
            yield from _split_lines(self.text())
            return
        yield from streamed.iter_lines()

    def stream_to_file(self, file: _PathLike, *, chunk_size: int | None = None) -> None:
        """Save the body to ``file`` atomically, as it arrives."""
        streamed = self._streamed()
        if streamed is not None:
            streamed.write_to_file(file)
            return
        with _AtomicFile(file) as out:
            out.file.write(self.read())

    def close(self) -> None:
        """Drop the connection if the body was not read to its end."""
        streamed = self._streamed()
        if streamed is not None:
            streamed.close()

    @property
    def is_closed(self) -> bool:
        streamed = self._streamed()
        return streamed is None or streamed._finished


def _file_source(file: _FileInput) -> tuple[str, int, Callable[[], Iterator[bytes]]]:
    """Name, size and a restartable reader for each way a file can be given."""
    if isinstance(file, tuple):
        # No filename: httpx sends the part without one, which the API does not take for a
        # file ("Missing required parameter: 'file'"); it gets the name bare bytes get.
        name = (os.path.basename(file[0]) or file[0]) if file[0] else "input.jsonl"
        content = file[1]  # a third item, a content type, is read by files.create
        if isinstance(content, str):
            content = content.encode()  # as httpx sends a str: UTF-8
        if not isinstance(content, (bytes, bytearray, memoryview)):
            return _stream_source(content, name)
        _, size, chunks = _file_source(content)
        return name, size, chunks
    if isinstance(file, (bytes, bytearray, memoryview)):
        data = bytes(file)
        return "input.jsonl", len(data), lambda: iter((data,))
    if isinstance(file, (str, os.PathLike)):
        import stat

        path = os.fspath(file)
        if os.path.isdir(path):
            raise IsADirectoryError(21, "Is a directory, not a file to upload", path)
        with open(path, "rb") as handle:  # a missing or unreadable file fails here, with its name
            size = os.fstat(handle.fileno()).st_size
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # a pipe: `<(cat f)`
                data = handle.read()
                return os.path.basename(path), len(data), lambda: iter((data,))
        return os.path.basename(path), size, lambda: _read_path(path, size)
    if hasattr(file, "read"):
        return _stream_source(file)
    raise TypeError(
        f"`file` must be a path, bytes or a binary file object, not {type(file).__name__}"
    )


def _stream_source(
    file: IO[Any], filename: str | None = None
) -> tuple[str, int, Callable[[], Iterator[bytes]]]:
    if not isinstance(file.read(0), bytes):
        raise TypeError("`file` is open in text mode; open it with 'rb' to upload it.")
    if filename is None:
        name = getattr(file, "name", None)
        filename = os.path.basename(name) if isinstance(name, str) else "input.jsonl"
    if not (hasattr(file, "seekable") and file.seekable()):
        data = file.read()  # a pipe: its size is known only once it has been read
        return filename, len(data), lambda: iter((data,))
    start = file.tell()
    size = file.seek(0, os.SEEK_END) - start
    file.seek(start)

    def chunks() -> Iterator[bytes]:
        file.seek(start)
        return _read_exactly(file, size, filename)

    return filename, size, chunks


def _read_path(path: str, size: int) -> Iterator[bytes]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below; an error here is the disk's)
    except OSError as exc:
        raise OpenAIError(f"Cannot read {path} to upload it: {exc}") from exc
    with handle:
        yield from _read_exactly(handle, size, path)


def _read_exactly(handle: IO[bytes], size: int, name: str) -> Iterator[bytes]:
    """``size`` bytes in chunks; a file that changes while it is sent is an error, not a
    request the server would wait on forever. A disk's error is not a network error: it is
    raised as OpenAIError, which is not retried."""
    left = size
    try:
        while left > 0:
            chunk = handle.read(min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
        more = handle.read(1)
    except OSError as exc:
        raise OpenAIError(f"Cannot read {name} to upload it: {exc}") from exc
    if left or more:
        raise OpenAIError(f"{name} changed while it was being uploaded; upload it again.")


def _multipart(
    form: list[tuple[str, str]],
    filename: str,
    size: int,
    chunks: Callable[[], Iterator[bytes]],
    file_type: str = "application/octet-stream",
) -> _Body:
    """A multipart/form-data body whose file part streams from ``chunks``."""
    boundary = "openai-batch-" + os.urandom(16).hex()
    head = b""
    for name, value in form:
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_form_quote(name)}"'
            f"\r\n\r\n{value}\r\n"
        ).encode()
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{_form_quote(filename)}"\r\nContent-Type: {_form_quote(file_type)}\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")

    def stream() -> Iterator[bytes]:
        yield head
        yield from chunks()
        yield tail

    content_type = f"multipart/form-data; boundary={boundary}"
    return _Body(content_type, len(head) + size + len(tail), chunks=stream)


def _guess_type(filename: str) -> str:
    """The file part's type when the caller gives none: guessed from its name, as httpx does."""
    import mimetypes

    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _form_quote(value: str) -> str:
    """Escape a form field or file name the way browsers and the HTML standard do."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


###############################################################################################
# Webhooks: OpenAI's signed event notices, verified; the endpoints that receive them
###############################################################################################

if TYPE_CHECKING:
    from typing import Protocol

    class _HeaderGetter(Protocol):
        """Headers that answer ``get(name)``: http.client.HTTPMessage (``self.headers`` in an
        http.server handler), email.message.Message, and the headers of most web frameworks."""

        def get(self, __name: str) -> str | None: ...

    _WebhookHeaders = Union[Mapping[str, str], _HeaderGetter]


class InvalidWebhookSignatureError(ValueError):
    """A webhook's signature does not match the one computed from its payload and the secret.

    Also raised for a timestamp that is not a whole number, or too far from now. A ValueError
    and not an OpenAIError, as in the official package: no call to the API went wrong.
    """


class WebhookEventData(_Model):
    """What an event without a class of its own is about: each field sent is an attribute.

    ``event.data.id`` names the response, fine-tuning job, eval run... as in the official
    package's class for that type; a field the server did not send raises AttributeError.
    """

    # A dataclass without fields, declared by hand: every field is the server's, read from
    # ``_raw``, and the decorator's import time buys nothing here. _Model's from_dict,
    # to_dict and model_dump then walk the server's dict alone.
    __dataclass_fields__: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        raw = self.__dict__.get("_raw") or {}
        if name in raw:
            return raw[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        shown = ", ".join(f"{key}={value!r}" for key, value in (self._raw or {}).items())
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WebhookEventData) or type(other) is not type(self):
            return NotImplemented
        return bool(self.to_dict() == other.to_dict())


@_dataclass
class WebhookEvent(_Model):
    """An event OpenAI sent to a webhook endpoint; the batch events have classes of their own.

    ``unwrap`` gives this class to every other type (responses, fine-tuning jobs, evals...),
    with ``data`` a WebhookEventData, or the value as it came if that is not an object.
    """

    id: str = ""
    created_at: int = 0
    # Any, so that each event class can give its data a class of its own.
    data: Any = None
    type: str = ""
    object: str | None = None

    _parsers = {"data": _nested(WebhookEventData)}


@_dataclass
class BatchWebhookEventData(_Model):
    """What a batch event is about."""

    id: str = ""  # the batch's id


@_dataclass
class _BatchWebhookEvent(WebhookEvent):
    """What every batch event has: ``data.id`` names the batch."""

    data: BatchWebhookEventData = _field(default_factory=BatchWebhookEventData)

    _parsers = {"data": _nested(BatchWebhookEventData)}
    _type = ""  # each event's type, the default of its ``type``

    def __post_init__(self) -> None:
        super().__post_init__()
        # The event classes below differ in this default only; giving it here spares each
        # the import time of a dataclass of its own.
        if not self.type:
            self.type = self._type


class BatchCompletedWebhookEvent(_BatchWebhookEvent):
    """Sent when a batch has completed."""

    _type = "batch.completed"


class BatchFailedWebhookEvent(_BatchWebhookEvent):
    """Sent when a batch has failed."""

    _type = "batch.failed"


class BatchExpiredWebhookEvent(_BatchWebhookEvent):
    """Sent when a batch has expired."""

    _type = "batch.expired"


class BatchCancelledWebhookEvent(_BatchWebhookEvent):
    """Sent when a batch has been cancelled."""

    _type = "batch.cancelled"


#: An event of any other type is a WebhookEvent. The official package parses an unknown type
#: into the first class of its union (an agent environment's "expired" event) instead, which
#: no caller can tell from the real one; a plain event with the type it came with can be.
_WEBHOOK_EVENTS: dict[str, type[WebhookEvent]] = {
    "batch.completed": BatchCompletedWebhookEvent,
    "batch.failed": BatchFailedWebhookEvent,
    "batch.expired": BatchExpiredWebhookEvent,
    "batch.cancelled": BatchCancelledWebhookEvent,
}


@_dataclass
class WebhookEndpoint(_Model):
    """A webhook endpoint of the project: where OpenAI sends the events it names."""

    id: str = ""
    created_at: int = 0
    event_types: list[str] = _field(default_factory=list)
    name: str = ""
    object: str = ""
    signing_secret_hint: str | None = None  # a masked hint, such as "whsec_...abcd"
    url: str = ""
    updated_at: int | None = None


@_dataclass
class WebhookEndpointWithSecret(_Model):
    """An endpoint just made, or its secret just rotated: the only answers with the secret.

    ``signing_secret`` and ``to_dict()`` give it; ``repr`` masks it, so that a log of the
    object does not carry it. Keep it as ``OpenAI(webhook_secret=...)`` will read it.
    """

    id: str = ""
    created_at: int = 0
    event_types: list[str] = _field(default_factory=list)
    name: str = ""
    object: str = ""
    signing_secret: str = ""
    signing_secret_hint: str | None = None
    url: str = ""
    updated_at: int | None = None

    _hidden = ("signing_secret",)


@_dataclass
class DeletedWebhookEndpoint(_Model):
    """The answer to deleting a webhook endpoint."""

    id: str = ""
    deleted: bool = False
    object: str = ""


@_dataclass
class WebhookEndpointTestResult(_Model):
    """What a sample event sent to an endpoint met: ``status_code`` is its server's answer."""

    event_type: str = ""
    object: str = ""
    status_code: int = 0
    success: bool = False  # the test ran; whether the endpoint took it is in status_code
    webhook_endpoint_id: str = ""


@_dataclass
class WebhookEventTypeList(_Model):
    """The event types a webhook endpoint of the project may subscribe to."""

    data: list[str] = _field(default_factory=list)
    object: str = ""


_NO_WEBHOOK_SECRET = (
    "The webhook secret must either be set using the env var, OPENAI_WEBHOOK_SECRET, on the "
    "client class, OpenAI(webhook_secret='123'), or passed to this function"
)


class _EventTypes:
    """``client.webhooks.event_types``: what an endpoint may subscribe to."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(
        self,
        *,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> WebhookEventTypeList:
        """Every event type the project's endpoints may subscribe to (``extra_body`` is
        taken and, as by the official package on a GET, not sent)."""
        return self._client._transport.request_json(
            "GET",
            "/webhook_event_types",
            _expecting(WebhookEventTypeList, "a list of webhook event types"),
            query=extra_query,
            headers=extra_headers,
            timeout=timeout,
        )

    @property
    def with_raw_response(self) -> Any:
        """``list``, giving the HTTP response; see ``Batches.with_raw_response``."""
        return _WithRawResponse(self, ("list",))

    @property
    def with_streaming_response(self) -> Any:
        """``list``, as a context manager for the response."""
        return _WithStreamingResponse(self, ("list",))


_WEBHOOK_CALLS = ("create", "retrieve", "update", "list", "delete", "rotate_secret", "test")


class Webhooks:
    """``client.webhooks``: check that an event came from OpenAI, and read it; and manage the
    project's webhook endpoints.

    The secret is the ``whsec_...`` one the dashboard shows for the endpoint, or that
    ``create`` and ``rotate_secret`` return: ``secret=`` on the call, else
    ``OpenAI(webhook_secret=...)``, else OPENAI_WEBHOOK_SECRET. "Now" is the client's clock,
    so that tests can fix it.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self.event_types = _EventTypes(client)

    def _send(
        self, method: str, path: str, model: type[_M], body: dict[str, Any] | None, **options: Any
    ) -> _M:
        """One call on an endpoint: ``extra_body`` joins the body, as on every resource; a
        GET sends none, as the official package sends none."""
        extra = options.pop("extra_body", None)
        if extra and method != "GET":
            body = {**(body or {}), **extra}
        return self._client._transport.request_json(
            method,
            path,
            _expecting(model, f"a {_words(model.__name__)}"),
            body=None if body is None else _Body.json(body),
            query=options.get("extra_query"),
            headers=options.get("extra_headers"),
            timeout=options.get("timeout"),
        )

    def create(
        self,
        *,
        event_types: Iterable[str],
        name: str,
        url: str,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> WebhookEndpointWithSecret:
        """Make an endpoint at ``url`` for ``event_types``: its signing secret is in this
        answer and no later one (``rotate_secret`` makes a new one)."""
        body = {"event_types": list(event_types), "name": name, "url": url}
        return self._send(
            "POST",
            "/webhook_endpoints",
            WebhookEndpointWithSecret,
            body,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )

    def retrieve(
        self,
        webhook_endpoint_id: str,
        *,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> WebhookEndpoint:
        """Fetch an endpoint by id (its secret's hint, not the secret)."""
        return self._send(
            "GET",
            _endpoint_path(webhook_endpoint_id),
            WebhookEndpoint,
            None,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )

    def update(
        self,
        webhook_endpoint_id: str,
        *,
        event_types: Iterable[str] | None = None,
        name: str | None = None,
        url: str | None = None,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> WebhookEndpoint:
        """Change what is given of an endpoint; ``event_types`` replaces the whole set."""
        given = {"event_types": _passed(event_types), "name": _passed(name), "url": _passed(url)}
        body = {key: value for key, value in given.items() if value is not None}
        if "event_types" in body:
            body["event_types"] = list(body["event_types"])
        return self._send(
            "POST",
            _endpoint_path(webhook_endpoint_id),
            WebhookEndpoint,
            body,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )

    def list(
        self,
        *,
        after: str | None = None,
        limit: int | None = None,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> CursorPage[WebhookEndpoint]:
        """The project's endpoints, newest first: the first page now, the rest as iteration
        reaches them (``extra_body`` is not sent on a GET)."""

        query = {"limit": limit, **(extra_query or {})}
        transport, path = self._client._transport, "/webhook_endpoints"
        return _pages(
            transport, path, WebhookEndpoint, _passed(after), query, extra_headers, timeout
        )

    def delete(
        self,
        webhook_endpoint_id: str,
        *,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> DeletedWebhookEndpoint:
        """Delete an endpoint: OpenAI sends it nothing more."""
        return self._send(
            "DELETE",
            _endpoint_path(webhook_endpoint_id),
            DeletedWebhookEndpoint,
            None,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )

    def rotate_secret(
        self,
        webhook_endpoint_id: str,
        *,
        keep_old_secret_active_for_24_hours: bool | None = None,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> WebhookEndpointWithSecret:
        """A new signing secret for an endpoint, in this answer only; the old one stops at
        once, or in 24 hours with ``keep_old_secret_active_for_24_hours=True``."""
        keep = _passed(keep_old_secret_active_for_24_hours)
        body = {} if keep is None else {"keep_old_secret_active_for_24_hours": keep}
        return self._send(
            "POST",
            _endpoint_path(webhook_endpoint_id) + "/rotate_secret",
            WebhookEndpointWithSecret,
            body,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )

    def test(
        self,
        webhook_endpoint_id: str,
        *,
        event_type: str,
        extra_headers: _Headers | None = None,
        extra_query: _Query | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: _TimeoutArg = None,
    ) -> WebhookEndpointTestResult:
        """Send the endpoint a sample event of ``event_type``; the result has its answer."""
        return self._send(
            "POST",
            _endpoint_path(webhook_endpoint_id) + "/test",
            WebhookEndpointTestResult,
            {"event_type": event_type},
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )

    @property
    def with_raw_response(self) -> Any:
        """The endpoint calls, giving the HTTP response; see ``Batches.with_raw_response``."""
        return _WithRawResponse(self, _WEBHOOK_CALLS)

    @property
    def with_streaming_response(self) -> Any:
        """The endpoint calls, each a context manager for the response."""
        return _WithStreamingResponse(self, _WEBHOOK_CALLS)

    def unwrap(
        self, payload: str | bytes, headers: _WebhookHeaders, *, secret: str | None = None
    ) -> WebhookEvent:
        """Verify an event as ``verify_signature`` does, then parse it.

        A batch event comes back as BatchCompletedWebhookEvent, BatchFailedWebhookEvent,
        BatchExpiredWebhookEvent or BatchCancelledWebhookEvent, any other as a WebhookEvent.
        Raises ValueError too for a payload that is not a JSON object.
        """
        self.verify_signature(payload, headers, secret=secret)
        data = json.loads(payload)
        if not isinstance(data, dict):
            raise ValueError(f"The webhook payload is not a JSON object: {type(data).__name__}")
        kind = data.get("type")
        event = _WEBHOOK_EVENTS.get(kind, WebhookEvent) if isinstance(kind, str) else WebhookEvent
        return event.from_dict(data)

    def verify_signature(
        self,
        payload: str | bytes,
        headers: _WebhookHeaders,
        *,
        secret: str | None = None,
        tolerance: int = 300,
    ) -> None:
        """Check that OpenAI sent ``payload``, at most ``tolerance`` seconds from now.

        Raises InvalidWebhookSignatureError when no signature matches, or the timestamp is not
        a whole number or too old or new; ValueError when a header or the secret is missing,
        or the secret is empty once decoded.
        """
        import base64
        import hashlib
        import hmac

        if secret is None:
            secret = self._client.webhook_secret
        if secret is None:
            raise ValueError(_NO_WEBHOOK_SECRET)
        signatures = _webhook_header(headers, "webhook-signature")
        timestamp = _webhook_header(headers, "webhook-timestamp")
        webhook_id = _webhook_header(headers, "webhook-id")
        _check_webhook_time(timestamp, int(self._client._transport.clock()), tolerance)
        key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
        # An empty key signs anything anyone can compute: "" or "whsec_" would let a forged
        # event through. Refused where the official package refuses it, after the headers.
        if not key:
            raise ValueError("The webhook secret must not be empty after decoding")
        # The bytes as they came: the official package decodes them as UTF-8 first, and so
        # raises UnicodeDecodeError, not a signature error, for a forged body that is not.
        body = payload if isinstance(payload, bytes) else payload.encode()
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        # Several signatures may come, space-separated, each "v1,<base64>" (or bare): one
        # match is enough. compare_digest refuses str that is not ASCII (a TypeError in the
        # official package); such a signature can never match, so it is skipped.
        given = (part[3:] if part.startswith("v1,") else part for part in signatures.split())
        if not any(sig.isascii() and hmac.compare_digest(expected, sig) for sig in given):
            raise InvalidWebhookSignatureError(
                "The given webhook signature does not match the expected signature"
            )


def _endpoint_path(webhook_endpoint_id: str) -> str:
    return "/webhook_endpoints/" + _segment(webhook_endpoint_id, "webhook_endpoint_id")


def _words(name: str) -> str:
    """A class's name as words for a message: WebhookEndpoint -> "webhook endpoint"."""
    return "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()


def _webhook_header(headers: _WebhookHeaders, name: str) -> str:
    """A webhook header's value; ValueError naming the header when it is missing.

    The official package's rules, so that the same headers pass or fail alike: a mapping's key
    matches in any case if its value is a str; then ``get`` is tried with the name lower-case,
    upper-case and Capitalized-Like-This, and an empty value counts as missing.
    """
    from collections.abc import Mapping

    if isinstance(headers, Mapping):
        for key, value in headers.items():
            if key.lower() == name and isinstance(value, str):
                return value
    capitalized = "-".join(part.capitalize() for part in name.split("-"))
    for spelling in (name, name.upper(), capitalized):
        found = headers.get(spelling)
        if found:
            return found
    raise ValueError(f"Could not find {name} header")


def _check_webhook_time(timestamp: str, now: int, tolerance: int) -> None:
    """Refuse a replayed or post-dated event: one more than ``tolerance`` seconds from now."""
    try:
        seconds = int(timestamp)
    except ValueError:
        raise InvalidWebhookSignatureError("Invalid webhook timestamp format") from None
    if now - seconds > tolerance:
        raise InvalidWebhookSignatureError("Webhook timestamp is too old")
    if seconds > now + tolerance:
        raise InvalidWebhookSignatureError("Webhook timestamp is too new")


###############################################################################################
# Prices and costs: what a batch will cost, by the model's batch price
###############################################################################################

#: USD per million tokens, by model: input, cached input and output at batch prices, then the
#: same three at standard prices (which the Batch API halves). None: no cached-input price.
#: Read on 2026-12-05 from the price map that LiteLLM 1.110.2 ships
#: (litellm/model_prices_and_context_window_backup.json): its `*_batches` keys, and where one
#: is absent, half the standard price, as the comment on the entry says. Prompts over 272k tokens
#: cost more on gpt-5.4 and gpt-5.5; the table has the price below that.
_PRICE_TABLE: dict[str, tuple[float, float | None, float, float, float | None, float]] = {
    "gpt-4o": (1.25, 0.625, 5.0, 2.5, 1.25, 10.0),  # cached: half the standard
    "gpt-4o-2024-05-13": (2.5, None, 7.5, 5.0, None, 15.0),
    "gpt-4o-mini": (0.075, 0.0375, 0.3, 0.15, 0.075, 0.6),  # cached: half the standard
    "gpt-4.1": (1.0, 0.25, 4.0, 2.0, 0.5, 8.0),  # cached: half the standard
    "gpt-4.1-mini": (0.2, 0.05, 0.8, 0.4, 0.1, 1.6),  # cached: half the standard
    "gpt-4.1-nano": (0.05, 0.0125, 0.2, 0.1, 0.025, 0.4),  # cached: half the standard
    "gpt-5": (0.625, 0.0625, 5.0, 1.25, 0.125, 10.0),
    "gpt-5-mini": (0.125, 0.0125, 1.0, 0.25, 0.025, 2.0),
    "gpt-5-nano": (0.025, 0.0025, 0.2, 0.05, 0.005, 0.4),
    "gpt-5.1": (0.625, 0.0625, 5.0, 1.25, 0.125, 10.0),
    "gpt-5.2": (0.875, 0.0875, 7.0, 1.75, 0.175, 14.0),
    "gpt-5.4": (1.25, 0.13, 7.5, 2.5, 0.25, 15.0),
    "gpt-5.4-mini": (0.375, 0.0375, 2.25, 0.75, 0.075, 4.5),
    "gpt-5.4-nano": (0.1, 0.01, 0.625, 0.2, 0.02, 1.25),
    "gpt-5.5": (2.5, 0.25, 15.0, 5.0, 0.5, 30.0),
    "o1": (7.5, 3.75, 30.0, 15.0, 7.5, 60.0),  # cached: half the standard
    "o1-pro": (75.0, None, 300.0, 150.0, None, 600.0),
    "o3": (1.0, 0.25, 4.0, 2.0, 0.5, 8.0),  # cached: half the standard
    "o3-pro": (10.0, None, 40.0, 20.0, None, 80.0),
    "o3-mini": (0.55, 0.275, 2.2, 1.1, 0.55, 4.4),  # cached: half the standard
    "o4-mini": (0.55, 0.1375, 2.2, 1.1, 0.275, 4.4),  # cached: half the standard
    "text-embedding-3-small": (0.01, None, 0.0, 0.02, None, 0.0),
    "text-embedding-3-large": (0.065, None, 0.0, 0.13, None, 0.0),
    "text-embedding-ada-002": (0.05, None, 0.0, 0.1, None, 0.0),  # batch: half the standard
}
_TABLE_PRICES = "OpenAI batch prices of 2026-12 (LiteLLM 1.110.2)"
_STANDARD_PRICES = "OpenAI standard prices of 2026-12 (LiteLLM 1.110.2)"
#: the environment variable naming a JSON file of prices: {"model": {"input": 1.25, ...}}
_PRICES_VARIABLE = "OPENAI_BATCH_PRICES"
_PRICE_KEYS = ("input", "output", "cached_input")


class _Price:
    """One model's price in USD per million tokens, and whose it is (said beside every amount).

    ``cached_input`` None bills cached tokens as input. ``standard`` is the same price outside
    the Batch API, where it is known (the table's own prices).
    """

    def __init__(
        self,
        input: float,
        output: float,
        cached_input: float | None,
        source: str,
        standard: _Price | None = None,
    ) -> None:
        self.input, self.output, self.cached_input = input, output, cached_input
        self.source, self.standard = source, standard

    def cost(self, input_tokens: int, output_tokens: int, cached: int = 0) -> float:
        """USD for the tokens; ``cached`` of the input tokens were read from the prompt cache."""
        cached_price = self.input if self.cached_input is None else self.cached_input
        paid = (input_tokens - cached) * self.input + cached * cached_price
        return (paid + output_tokens * self.output) / 1_000_000


def _table_price(model: str) -> _Price | None:
    row = _PRICE_TABLE.get(model)
    if row is None:
        return None
    standard = _Price(row[3], row[5], row[4], _STANDARD_PRICES)
    return _Price(row[0], row[2], row[1], _TABLE_PRICES, standard)


def _price_family(model: str) -> str:
    """A model's name without its date: gpt-4o-mini-2024-07-18 is priced as gpt-4o-mini."""
    import re

    match = re.fullmatch(r"(.+)-\d{4}-\d{2}-\d{2}", model)
    return model if match is None else match.group(1)


class _Prices:
    """Prices by model: the caller's own, then a JSON file named by ``OPENAI_BATCH_PRICES``,
    then the table. A dated name falls back to its family's price (its own first)."""

    def __init__(
        self,
        given: Mapping[str, Any] | None = None,
        given_as: str = "your prices",
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.given = {
            model: _parse_price(value, f"prices[{model!r}]", given_as)
            for model, value in (given or {}).items()
        }
        self.file = _prices_file(environ.get(_PRICES_VARIABLE, ""))

    def price(self, model: str | None) -> _Price | None:
        """The price of ``model``, or None where none is known."""
        if model is None:
            return None
        for name in dict.fromkeys((model, _price_family(model))):
            for prices in (self.given, self.file):
                if name in prices:
                    return prices[name]
            price = _table_price(name)
            if price is not None:
                return price
        return None

    def direct(self) -> _Prices:
        """The same prices for requests sent straight to the server, not in a batch: the
        table's at its standard prices (a caller's own price is the caller's to say)."""
        return _DirectPrices(self)

    def cost(
        self, model: str | None, input_tokens: int, output_tokens: int, cached: int = 0
    ) -> float | None:
        """USD for the tokens at the model's batch price; None with no price known."""
        price = self.price(model)
        return None if price is None else price.cost(input_tokens, output_tokens, cached)

    def standard_cost(
        self, model: str | None, input_tokens: int, output_tokens: int, cached: int = 0
    ) -> float | None:
        """USD for the same tokens at standard (non-batch) prices; None where not known."""
        price = self.price(model)
        if price is None or price.standard is None:
            return None
        return price.standard.cost(input_tokens, output_tokens, cached)


class _DirectPrices(_Prices):
    """Prices for requests sent one by one: the table's at its standard price, since the
    Batch API's half price is for batches; with no saving to compare with."""

    def __init__(self, prices: _Prices) -> None:
        self.given, self.file = prices.given, prices.file

    def price(self, model: str | None) -> _Price | None:
        price = super().price(model)
        return price.standard if price is not None and price.standard is not None else price


def _parse_price(value: object, where: str, source: str) -> _Price:
    """A price given as ``(input, output[, cached_input])`` or as a mapping of those keys."""
    if isinstance(value, _Price):
        return value
    if isinstance(value, (list, tuple)) and 2 <= len(value) <= 3:
        value = dict(zip(_PRICE_KEYS, value))
    if not isinstance(value, dict) or not value:
        raise _ArgumentError(
            f"{where}: expected a price as (input, output[, cached_input]) or "
            f'{{"input": ..., "output": ..., "cached_input": ...}} in USD per million '
            f"tokens, got {_clip(repr(value), 80)}"
        )
    unknown = sorted(set(value) - set(_PRICE_KEYS))
    if unknown:
        raise _ArgumentError(f"{where}: unknown key {unknown[0]!r} (give {', '.join(_PRICE_KEYS)})")
    numbers = [_usd_per_million(value.get(key), f"{where}: {key}") for key in _PRICE_KEYS]
    if numbers[0] is None or numbers[1] is None:
        missing = "input" if numbers[0] is None else "output"
        raise _ArgumentError(f"{where}: {missing} price is missing")
    return _Price(numbers[0], numbers[1], numbers[2], source)


def _usd_per_million(value: object, where: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value) if isinstance(value, (int, float, str)) else math.nan
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not (0 <= number < math.inf):
        raise _ArgumentError(
            f"{where} must be a number of USD per million tokens, 0 or more, got {value!r}"
        )
    return number


def _prices_file(path: str) -> dict[str, _Price]:
    """The prices in the JSON file named by OPENAI_BATCH_PRICES; none when it is unset."""
    if not path:
        return {}
    where = f"{_PRICES_VARIABLE}={path}"
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise _ArgumentError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise _ArgumentError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _ArgumentError(
            f'{where}: expected a JSON object of prices by model ({{"gpt-4o": {{"input": 1.25, '
            f'"output": 5}}}}), got {_json_type(data)}'
        )
    source = f"the prices in {path}"
    return {
        model: _parse_price(value, f"{where}: {model}", source) for model, value in data.items()
    }


#: Counting the tokens a request's text will be, without a tokenizer. OpenAI's tokenizers
#: (o200k_base, cl100k_base) make a token of about 4.4 ASCII characters of English or code. A
#: character that UTF-8 writes in two bytes (Cyrillic, Greek, Arabic, accents) is about 0.4 of a
#: token; of those in three, one of Chinese, Japanese or Korean is most of a token, one of an
#: Indic script or Thai (lead byte E0) 0.4, and punctuation such as “ ” … (lead byte E2) 0.7.
#: A chat message costs 4 tokens more (its role and delimiters), and the reply's start 3, as
#: OpenAI's cookbook counts them. bench/token_estimate.py measures the error against tiktoken.
_ASCII_PER_TOKEN = 4.4
_TOKENS_PER_2_BYTE_CHAR = 0.4
_TOKENS_PER_CJK_CHAR = 0.8
_TOKENS_PER_INDIC_CHAR = 0.4
_TOKENS_PER_MARK = 0.7
_TOKENS_PER_MESSAGE = 4
_TOKENS_PER_REPLY = 3


def _text_tokens(text: str) -> float:
    """About how many tokens ``text`` is, from its characters and their UTF-8 widths."""
    if text.isascii():  # the common case, at C speed
        return len(text) / _ASCII_PER_TOKEN
    size = len(text)
    plain = len(text.encode("ascii", "ignore"))
    wide = size - plain  # characters of 2, 3 or 4 bytes
    data = text.encode("utf-8", "surrogatepass")
    three = min(max(len(data) - size - wide, 0), wide)  # a 4-byte one (an emoji) counts as 3
    indic, marks = data.count(b"\xe0"), data.count(b"\xe2")
    return (
        plain / _ASCII_PER_TOKEN
        + (wide - three) * _TOKENS_PER_2_BYTE_CHAR
        + indic * _TOKENS_PER_INDIC_CHAR
        + marks * _TOKENS_PER_MARK
        + max(three - indic - marks, 0) * _TOKENS_PER_CJK_CHAR
    )


def _content_tokens(content: object) -> float:
    """The text a model reads in a content value: a string, a part with text, or a list."""
    if isinstance(content, str):
        return _text_tokens(content)
    if isinstance(content, dict):
        text = content.get("text")
        return _text_tokens(text) if isinstance(text, str) else 0.0
    if isinstance(content, list):
        return sum(_content_tokens(part) for part in content if not isinstance(part, list))
    return 0.0


def _messages_tokens(messages: object) -> float:
    """Chat messages (or Responses input items): their text, plus each message's overhead."""
    if not isinstance(messages, list):
        return 0.0
    total = 0.0
    for message in messages:
        if type(message) is not dict:
            continue
        content = message.get("content")
        if type(content) is str and content.isascii():  # the common case, without a call
            total += _TOKENS_PER_MESSAGE + len(content) / _ASCII_PER_TOKEN
        else:
            total += _TOKENS_PER_MESSAGE + _content_tokens(content)
        if not _CALL_KEYS.isdisjoint(message):  # a call's arguments, or a tool's output
            total += sum(_json_tokens(message[key]) for key in _CALL_KEYS if key in message)
    return total


#: the fields of a message, and of a body, that the model reads as JSON text
_CALL_KEYS = frozenset({"tool_calls", "function_call", "arguments", "output"})
_STRUCTURED_KEYS = frozenset({"tools", "functions", "response_format", "text"})


def _json_tokens(value: object) -> float:
    """Structured input (tool definitions, a schema, a call's arguments), read as its text."""
    if isinstance(value, str):
        return _text_tokens(value)
    return _text_tokens(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _input_tokens(url: str, body: Mapping[str, Any]) -> int:
    """About how many input tokens a request's body is: the text the model reads, not JSON."""
    text = 0.0
    if "messages" in body:  # chat completions
        text = _TOKENS_PER_REPLY + _messages_tokens(body["messages"])
    elif url.endswith("/responses"):
        value = body.get("input")
        text = _TOKENS_PER_REPLY + (
            _TOKENS_PER_MESSAGE + _content_tokens(value)
            if isinstance(value, str)
            else _messages_tokens(value)
        )
        if isinstance(body.get("instructions"), str):
            text += _TOKENS_PER_MESSAGE + _text_tokens(body["instructions"])
    else:  # embeddings, moderations, completions: a string, a list of them, or token ids
        value = body.get("input", body.get("prompt"))
        if isinstance(value, list) and value and isinstance(value[0], int):
            return len(value)  # token ids, counted exactly
        for item in value if isinstance(value, list) else [value]:
            text += len(item) if isinstance(item, list) else math.ceil(_content_tokens(item))
    if not _STRUCTURED_KEYS.isdisjoint(body):
        for key in _STRUCTURED_KEYS & body.keys():
            if isinstance(body[key], (list, dict)):
                text += _json_tokens(body[key])
    return math.ceil(text)


def _input_bound(body: Mapping[str, Any]) -> int:
    """The most input tokens a request's text can be: a token for each byte of every string
    the model reads (a token of OpenAI's tokenizers is a byte of text or more), its message
    overheads as ``_input_tokens`` counts them, and structured input as its JSON. An estimate
    can fall short (digits, code); this cannot, for text."""
    read = body.get("messages", body.get("input", body.get("prompt")))
    total = _TOKENS_PER_REPLY + _text_bytes(read)
    total += _TOKENS_PER_MESSAGE * (len(read) if isinstance(read, list) else 1)
    if isinstance(body.get("instructions"), str):
        total += _TOKENS_PER_MESSAGE + _text_bytes(body["instructions"])
    for key in _STRUCTURED_KEYS & body.keys():
        total += len(json.dumps(body[key], ensure_ascii=False).encode("utf-8", "surrogatepass"))
    return total


def _text_bytes(value: object) -> int:
    """The UTF-8 bytes of every string in ``value``, and a token for each token id."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, int) and not isinstance(value, bool):
        return 1
    if isinstance(value, dict):
        value = list(value.values())
    return sum(_text_bytes(item) for item in value) if isinstance(value, list) else 0


def _output_limit(body: Mapping[str, Any], url: str) -> int | None:
    """The most output tokens a request may bill: its limit times ``n`` (or ``best_of``,
    completions' choices made and billed); None for no limit."""
    limit = body.get("max_tokens")
    if limit is None:
        limit = body.get("max_completion_tokens", body.get("max_output_tokens"))
    if type(limit) is int and limit >= 0:  # not a bool, nor a float
        made = [body.get(name) for name in ("n", "best_of")]
        return limit * max([1] + [count for count in made if type(count) is int])
    return 0 if url.endswith(_NO_OUTPUT_URLS) else None


_NO_OUTPUT_URLS = ("/embeddings", "/moderations")


def _request_estimate(url: str, body: Mapping[str, Any]) -> tuple[int, int | None]:
    """One request's input tokens, about, and its output tokens at most (None: no limit).

    The worst case of a request is its input plus its maximum output, at the model's price.
    """
    return _input_tokens(url, body), _output_limit(body, url)


@_dataclass
class InputEstimate(_Fields):
    """What an input file will cost, estimated before anything is sent.

    ``input_tokens`` counts the text the model reads (about 4 ASCII characters a token; see
    README "What a batch will cost"), ``output_tokens`` is at most what the requests' limits
    allow, None when ``unbounded`` requests set no limit. Costs are in USD at ``prices``
    (whose, and from when), None where no price is known (``note`` says so) or no bound is.
    """

    model: str | None
    requests: int
    input_tokens: int
    output_tokens: int | None
    unbounded: int
    input_cost: float | None
    output_cost: float | None
    prices: str | None
    note: str | None = None


class _TokenTally:
    """The running estimate of one input file: requests, input tokens, output tokens at most."""

    def __init__(self) -> None:
        self.requests = self.input_tokens = self.output_tokens = self.unbounded = 0

    def add(self, url: str, body: Mapping[str, Any]) -> None:
        tokens, limit = _request_estimate(url, body)
        self.requests += 1
        self.input_tokens += tokens
        if limit is None:
            self.unbounded += 1
        else:
            self.output_tokens += limit

    def estimate(self, model: str | None, prices: _Prices) -> InputEstimate:
        output = None if self.unbounded else self.output_tokens
        price = prices.price(model)
        if price is None:
            note = f"no price known for {model}" if model else "no model named, so no price"
            return InputEstimate(
                model,
                self.requests,
                self.input_tokens,
                output,
                self.unbounded,
                None,
                None,
                None,
                note,
            )
        input_cost = price.cost(self.input_tokens, 0)
        output_cost = None if output is None else price.cost(0, output)
        return InputEstimate(
            model,
            self.requests,
            self.input_tokens,
            output,
            self.unbounded,
            input_cost,
            output_cost,
            price.source,
            None,
        )


def _usd(amount: float) -> str:
    """An amount of money as a person reads it: to the cent, and "under $0.01" below one."""
    if amount >= 0.01 or amount == 0:
        return f"${amount:,.2f}"
    return "under $0.01"


def _usd_given(amount: float) -> str:
    """An amount someone gave (a cap), as given: $0.50, $0.001."""
    cents = f"{amount:,.2f}"
    return f"${cents}" if float(cents.replace(",", "")) == amount else f"${amount:,g}"


def _estimate_lines(estimate: InputEstimate) -> list[str]:
    """The estimate in words: input, output, then whose prices the amounts are at (with no
    price known, tokens only)."""
    known = estimate.prices is not None
    lines = [f"input   ~{estimate.input_tokens:,} tokens"]
    if estimate.input_cost is not None:
        lines[0] += f", {_usd(estimate.input_cost)}"
    if estimate.output_tokens is None:
        lines.append(
            f"output  unbounded ({estimate.unbounded:,}/{estimate.requests:,} requests set no "
            "output limit)" + (", so no upper cost" if known else "")
        )
    else:
        lines.append(f"output  at most {estimate.output_tokens:,} tokens")
        if estimate.output_cost is not None:
            lines[1] += f", {_usd(estimate.output_cost)}"
    if known:
        lines.append(f"at {estimate.prices}")
    return lines


def _estimate_tokens(size: int) -> int:
    """Prompt tokens, guessed without a tokenizer from the bytes sent: one token in four."""
    return max(1, size // 4)


def _spend(prices: _Prices, model: str | None, usage: Mapping[str, int]) -> dict[str, Any]:
    """What tokens used (``Batch.usage``'s counts) cost at ``model``'s batch price, and at its
    standard price: each amount with whose prices it is at; None where no price is known
    (``note`` says why)."""
    spend: dict[str, Any] = dict.fromkeys(
        ("cost", "prices", "standard_cost", "standard_prices", "note")
    )
    price = prices.price(model)
    if price is None:
        spend["note"] = f"no price known for {model}" if model else "no model named, so no price"
        return spend
    tokens = (
        usage.get("input_tokens", 0),
        usage.get("output_tokens", 0),
        usage.get("cached_tokens", 0),
    )
    spend.update(cost=price.cost(*tokens), prices=price.source)
    if price.standard is not None:
        spend.update(
            standard_cost=price.standard.cost(*tokens), standard_prices=price.standard.source
        )
    return spend


def _spend_words(spend: Mapping[str, Any]) -> str:
    """Money spent in words: "$1.20 at <prices>; saved $1.20 against <standard prices>"; with
    no price known, why."""
    if spend.get("cost") is None:
        return spend.get("note") or ""
    text = f"{_usd(spend['cost'])} at {spend['prices']}"
    if spend.get("standard_cost") is not None:
        saved = spend["standard_cost"] - spend["cost"]
        text += f"; saved {_usd(saved)} against {spend['standard_prices']}"
    return text


###############################################################################################
# JSONL helpers: write, read, validate and split input files; read and join results
###############################################################################################

_MAX_PROBLEMS = 50
_BOM = b"\xef\xbb\xbf"
_MISSING = object()

if TYPE_CHECKING:
    _PathLike = Union[str, "os.PathLike[str]"]
    _Row = Union[BatchRequest, Mapping[str, Any]]
    _Results = Union[_PathLike, BinaryContent, Iterable[Any]]


def write_jsonl(path_or_file: _PathLike | IO[Any], rows: Iterable[_Row]) -> tuple[int, int]:
    """Write requests (``BatchRequest`` or dicts) as JSONL; return (lines, bytes) written.

    One compact UTF-8 JSON object a line, non-ASCII text kept as it is. Given a path, the file
    appears whole or not at all; given an open file (text or binary), the lines are written to it.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        with _AtomicFile(path_or_file) as out:
            return _write_rows(out.file, rows)
    return _write_rows(path_or_file, rows)


def _write_rows(out: IO[Any], rows: Iterable[_Row]) -> tuple[int, int]:
    text = isinstance(out, io.TextIOBase)
    lines = size = 0
    for number, row in enumerate(rows, 1):
        data = row.to_dict() if isinstance(row, BatchRequest) else row
        try:
            line = _dumps_line(data) + "\n"
            encoded = line.encode("utf-8")
        except UnicodeEncodeError as exc:  # an unpaired surrogate, made in Python or a result's
            reason = _unpaired(f"\\u{ord(exc.object[exc.start]):04x}")
            raise ValueError(f"row {number} cannot be written as JSON: {reason}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"row {number} cannot be written as JSON: {exc}") from None
        out.write(line if text else encoded)
        lines += 1
        size += len(encoded)
    return lines, size


def _source_name(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"


def _raw_lines(source: _PathLike | IO[Any]) -> Iterator[tuple[int, bytes | str]]:
    """Numbered lines with their endings, a leading byte-order mark removed."""
    if isinstance(source, (str, os.PathLike)):
        yield from _binary_lines(source)
        return
    for number, line in enumerate(source, 1):
        if number == 1 and isinstance(line, bytes):
            line = line[3:] if line[:3] == _BOM else line
        elif number == 1:
            line = line.lstrip("\ufeff")
        yield number, line


def _binary_lines(path: _PathLike) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as handle:
        first = handle.readline()
        if first:
            yield 1, first[3:] if first[:3] == _BOM else first
        yield from enumerate(handle, 2)  # the rest line by line in C, with no test for a BOM


def read_jsonl(path_or_file: _PathLike | IO[Any]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file, one a line, read lazily.

    CRLF endings, a UTF-8 byte-order mark and a missing final newline are fine. A line that is
    blank, not JSON or not an object, or that escapes an unpaired surrogate (which no UTF-8 file
    can hold), raises ``InputFileError`` naming the file and the line.
    """
    name = _source_name(path_or_file)
    for number, line in _raw_lines(path_or_file):
        yield _parse_input_line(line, name, number)


_LINE_ENDINGS = ("\n", "\r\n", "")


def _parse_line(line: bytes | str, name: str, number: int) -> dict[str, Any]:
    # raw_decode of the decoded line skips what json.loads adds to every call (it guesses the
    # encoding of bytes and matches whitespace at both ends), a third of its time on a short
    # line. A line that is not just a JSON object and a line ending goes to _parse_line_slowly,
    # which parses it as before and names what is wrong.
    try:
        text = line.decode() if isinstance(line, bytes) else line
        data, end = _decode_line(text)
        if type(data) is dict and text[end:] in _LINE_ENDINGS:
            return data
    except (TypeError, ValueError, RecursionError):
        pass
    return _parse_line_slowly(line, name, number)


def _parse_line_slowly(line: bytes | str, name: str, number: int) -> dict[str, Any]:
    if not line.strip():
        raise InputFileError(name, [(number, "blank line")])
    # Without its line ending, so that an error's column is on this line.
    text = line.rstrip(b"\r\n") if isinstance(line, bytes) else line.rstrip("\r\n")
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except ValueError as exc:
        reason = _json_reason(exc, text)
        raise InputFileError(name, [(number, f"not valid JSON: {reason}")]) from None
    if not isinstance(data, dict):
        raise InputFileError(name, [(number, f"expected a JSON object, got {_json_type(data)}")])
    return data


#: A \u escape of a UTF-16 surrogate: a high one with the low one that pairs with it, if any, or
#: a low one. json.loads reads one alone into a str that no UTF-8 text can hold, so that the
#: line could never be written again, nor its results.
_SURROGATE_ESCAPE = (
    r"\\u[dD](?:[89abAB][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?|[c-fC-F][0-9a-fA-F]{2})"
)


def _parse_input_line(line: bytes | str, name: str, number: int) -> dict[str, Any]:
    """A line of an input file, as ``_parse_line`` reads it, refusing an unpaired surrogate.

    Only input is checked: a result is the server's, read as it was written.
    """
    data = _parse_line(line, name, number)
    text = line.decode() if isinstance(line, bytes) else line
    if "\\" in text:  # a line with no escape at all, the most common, is passed at once
        reason = _lone_surrogate(text)
        if reason is not None:
            raise InputFileError(name, [(number, f"not valid JSON: {reason}")])
    return data


def _lone_surrogate(text: str) -> str | None:
    """The first unpaired surrogate escaped in JSON text, with its column; None for none."""
    import re

    pattern = re.compile(_SURROGATE_ESCAPE)
    match = pattern.search(text)
    while match is not None:
        start = before = match.start()
        while before and text[before - 1] == "\\":
            before -= 1
        if (start - before) % 2:  # an escaped backslash, then text: search on from inside it
            match = pattern.search(text, start + 1)
        elif match.end() - start == 6:  # one escape, not a pair
            return f"{_unpaired(match.group())} (column {start + 1})"
        else:
            match = pattern.search(text, match.end())
    return None


def _unpaired(escape: str) -> str:
    return f"{escape} is an unpaired surrogate, which UTF-8 cannot encode"


def _json_reason(exc: ValueError, text: bytes | str) -> str:
    if isinstance(exc, _NotFinite):
        plain = _plain_json_error(text)
        return exc.at(text) if plain is None else _json_reason(plain, text)
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start + 1})"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} (column {exc.colno})"
    return str(exc)


def _shown(value: object) -> str:
    """A value as it would appear in the JSON line, clipped."""
    return _clip(json.dumps(value, ensure_ascii=False), 80)


def _embedding_inputs(body: Mapping[str, Any]) -> int:
    """How many inputs an embeddings body holds: one text or token list, or a list of them."""
    value = body.get("input")
    if isinstance(value, list) and value and not isinstance(value[0], int):
        return len(value)
    return 0 if value is None else 1


_EMBEDDINGS_URL = BatchEndpoint.EMBEDDINGS.value  # once: an enum's value is a property


class _Provider:
    """What one provider's Batch API takes in an input file; a new provider is one row.

    A plain class, as the module's private helpers are: a dataclass costs import time.
    """

    def __init__(
        self,
        name: str,
        max_requests: int,
        max_bytes: int,
        bom: bool,  # a UTF-8 byte-order mark is read past (else the file is refused)
        bare_urls: bool,  # "/chat/completions" is taken for "/v1/chat/completions"
        expires: tuple[int, int],  # the seconds output_expires_after and expires_after may be
        model: str,  # what body.model names, said where a model is missing
    ) -> None:
        self.name, self.max_requests, self.max_bytes = name, max_requests, max_bytes
        self.bom, self.bare_urls, self.expires, self.model = bom, bare_urls, expires, model


_PROVIDERS = {
    "openai": _Provider("OpenAI", MAX_REQUESTS, MAX_INPUT_BYTES, True, False, (3600, 2592000), ""),
    "azure": _Provider(
        "Azure OpenAI",
        100_000,
        MAX_INPUT_BYTES,
        False,
        True,
        (1209600, 2592000),
        " (on Azure OpenAI, the name of a global-batch deployment)",
    ),
}


_DECIMAL_MAX_BYTES = 200_000_000  # the documented "200 MB", if counted in decimal
#: Endpoints whose API has a default model, so a body may leave it out (not documented for
#: batches: a warning, not an error).
_DEFAULT_MODEL_ENDPOINTS = frozenset({"/v1/moderations", "/v1/images/generations"})


_IDS_HELD = 100_000  # custom_ids a validation holds in memory before it spills them to disk
_ID_BUCKETS = 256


class _CustomIds:
    """The custom_ids of a file, to find those that repeat, in memory as long as they are
    few. Past ``_IDS_HELD``, they go to bucket files on disk by their hash, and the buckets
    are read back one at a time at the end: memory holds one bucket's worth, not all, so that
    a file of millions of requests is checked in about the memory of one of thousands.
    """

    def __init__(self) -> None:
        self.held: dict[str, int] = {}
        self.folder: Any = None  # a TemporaryDirectory once spilled
        self.buckets: list[IO[bytes]] = []

    def add(self, value: str, number: int) -> int | None:
        """Note ``value`` on line ``number``; the line it repeats, if that is known now (a
        repeat among spilled ids is found by ``repeats()``)."""
        if not self.buckets:
            first = self.held.setdefault(value, number)
            if first != number:
                return first
            if len(self.held) > _IDS_HELD:
                self.spill()
            return None
        self.write(value, number)
        return None

    def spill(self) -> None:
        import tempfile

        self.folder = tempfile.TemporaryDirectory(prefix="openai-batch-ids-")
        for bucket in range(_ID_BUCKETS):
            path = os.path.join(self.folder.name, str(bucket))
            self.buckets.append(open(path, "w+b", buffering=2048))  # noqa: SIM115
        for value, number in self.held.items():
            self.write(value, number)
        self.held = {}

    def write(self, value: str, number: int) -> None:
        text = json.dumps(value)  # ASCII: any string, surrogates and all, on one line
        bucket = self.buckets[hash(value) % _ID_BUCKETS]
        bucket.write(f"{number}\t{text}\n".encode("ascii"))

    def repeats(self) -> Iterator[tuple[int, str, int]]:
        """The spilled ids that repeat: the line, the id and the line it first stood on."""
        try:
            for bucket in self.buckets:
                seen: dict[str, int] = {}
                bucket.seek(0)
                for line in bucket:
                    number, text = line.split(b"\t", 1)
                    value = json.loads(text)
                    first = seen.setdefault(value, int(number))
                    if first != int(number):
                        yield int(number), value, first
        finally:
            for bucket in self.buckets:
                bucket.close()
            if self.folder is not None:
                self.folder.cleanup()
            self.buckets, self.folder = [], None


class _InputCheck:
    """The state of one pass of ``validate_input``: what was seen and what is wrong."""

    def __init__(
        self,
        path: str,
        endpoint: str | None,
        limits: tuple[int, int, int],
        max_problems: int,
        rules: _Provider = _PROVIDERS["openai"],
    ) -> None:
        self.path, self.rules = path, rules
        self.endpoint, self.endpoint_line = endpoint, None if endpoint is None else 0
        self.endpoints = {member.value for member in BatchEndpoint}
        if rules.bare_urls:
            self.endpoints |= {url[len("/v1") :] for url in self.endpoints}
        if endpoint:  # one newer than this module is fine when named outright
            self.endpoints.add(endpoint)
        self.max_requests, self.max_bytes, self.max_inputs = limits
        self.max_problems = max_problems
        self.model: str | None = None
        self.model_line = 0
        self.ids = _CustomIds()
        self.requests = self.bytes = self.inputs = self.lines = 0
        self.problems: list[tuple[int | None, str]] = []
        self.lines_of: list[list[int]] = []
        self.index: dict[str, int] = {}  # message -> its place in problems
        self.more = 0
        self.blanks: list[int] = []  # blank lines not yet known to be at the end
        self.warned: dict[str, list[int]] = {}  # a warning's message -> its lines
        self.tally: _TokenTally | None = None  # the estimate's count, when one is asked for

    def problem(self, line: int | None, message: str) -> None:
        """A problem; one met before is listed once, with all its lines."""
        place = self.index.get(message)
        if place is not None and line is not None:
            self.lines_of[place].append(line)
        elif len(self.problems) < self.max_problems:
            self.index[message] = len(self.problems)
            self.problems.append((line, message))
            self.lines_of.append([] if line is None else [line])
        else:
            self.more += 1

    def line(self, number: int, raw: bytes) -> None:
        self.lines, self.bytes = number, self.bytes + len(raw)
        try:
            data = _parse_input_line(raw, self.path, number)
        except InputFileError as exc:
            if not raw.strip():  # an error only if a line follows: see finish()
                self.blanks.append(number)
            else:
                self.problem(number, exc.problems[0][1])
            return
        for blank in self.blanks:
            self.problem(blank, "blank line")
        self.blanks.clear()
        self.requests += 1
        if self.requests == self.max_requests + 1:
            self.problem(
                number,
                f"more than {self.max_requests:,} requests; a batch takes at "
                f"most {self.max_requests:,} (split_jsonl splits a file)",
            )
        self.custom_id(number, data.get("custom_id", _MISSING))
        method = data.get("method", _MISSING)
        if method != "POST":
            got = "nothing" if method is _MISSING else _shown(method)
            self.problem(number, f'method must be "POST", got {got}')
        self.url(number, data.get("url", _MISSING))
        self.body(number, data.get("body", _MISSING), data.get("url"))

    def custom_id(self, number: int, value: object) -> None:
        if value is _MISSING:
            self.problem(number, "missing custom_id")
        elif not isinstance(value, str):
            self.problem(number, f"custom_id must be a string, got {_json_type(value)}")
        elif not value:
            self.problem(number, "custom_id is empty")
        else:
            first = self.ids.add(value, number)
            if first is not None:
                self.problem(number, f"custom_id {_shown(value)} repeats line {first}")

    def url(self, number: int, value: object) -> None:
        if value is _MISSING:
            self.problem(number, "missing url")
        elif not isinstance(value, str) or value not in self.endpoints:
            self.problem(number, f"url {_shown(value)} is not a batch endpoint")
        elif self.endpoint is None:
            self.endpoint, self.endpoint_line = value, number
        elif value != self.endpoint:
            where = f"on line {self.endpoint_line}" if self.endpoint_line else "given as endpoint"
            self.problem(
                number, f"url {_shown(value)} differs from {_shown(self.endpoint)} {where}"
            )

    def body(self, number: int, body: object, url: object) -> None:
        if body is _MISSING:
            self.problem(number, "missing body")
            return
        if not isinstance(body, dict):
            self.problem(number, f"body must be a JSON object, got {_json_type(body)}")
            return
        self.body_model(number, body.get("model"), url)
        if body.get("stream") is True:
            self.problem(number, 'body sets "stream": true; batch requests cannot stream')
        if url == _EMBEDDINGS_URL or (url == "/embeddings" and self.rules.bare_urls):
            self.inputs += _embedding_inputs(body)
        if self.tally is not None and isinstance(url, str):
            self.tally.add(url, body)

    def body_model(self, number: int, model: object, url: object = None) -> None:
        if model is None and url in _DEFAULT_MODEL_ENDPOINTS:
            # The API has a default model here; whether a batch takes it is not documented.
            self.warned.setdefault(f"body has no model; {url} may use its default", []).append(
                number
            )
        elif model is None:
            self.problem(number, f"body has no model{self.rules.model}")
        elif not isinstance(model, str):
            self.problem(number, f"model must be a string, got {_json_type(model)}")
        elif self.model is None:
            self.model, self.model_line = model, number
        elif model != self.model:
            self.problem(
                number,
                f"model {_shown(model)} differs from {_shown(self.model)} on line "
                f"{self.model_line}; a batch runs one model",
            )

    def finish(self, strict: bool, prices: _Prices | None = None) -> InputSummary:
        for number, value, first in sorted(self.ids.repeats()):  # by line, as in memory
            self.problem(number, f"custom_id {_shown(value)} repeats line {first}")
        if self.lines == len(self.blanks):
            self.problem(None, "the file is empty" if not self.lines else "the file is blank")
        elif self.blanks:
            self.warned["blank, at the end of the file"] = self.blanks
        if _DECIMAL_MAX_BYTES < self.bytes <= self.max_bytes == MAX_INPUT_BYTES:
            message = (
                f"the file is {self.bytes:,} bytes: over 200 MB, if the limit is counted in "
                "decimal, and under 200 MiB; split_jsonl makes it safe"
            )
            self.warned[message] = []
        if strict:
            for message, lines in self.warned.items():
                where: list[int | None] = [*lines] if lines else [None]  # None: the whole file
                for line in where:
                    self.problem(line, message)
        if self.bytes > self.max_bytes:
            self.problem(
                None,
                f"the file is {self.bytes:,} bytes; a batch takes at most "
                f"{self.max_bytes:,} (split_jsonl splits a file)",
            )
        if self.inputs > self.max_inputs:
            self.problem(
                None,
                f"{self.inputs:,} embedding inputs; a batch takes at most "
                f"{self.max_inputs:,} (split_jsonl splits a file)",
            )
        if self.problems:
            raise InputFileError(self.path, self.problems, self.more, self.lines_of)
        return InputSummary(
            self.path,
            self.requests,
            self.bytes,
            self.endpoint,
            self.model,
            self.inputs,
            [] if strict else _entries(self.warned),
            None
            if self.tally is None or prices is None
            else self.tally.estimate(self.model, prices),
        )


def _entries(found: dict[str, list[int]]) -> list[str]:
    """Messages with the lines they were met on, a line each: "lines 3–4: message"."""
    return [
        f"{_line_ranges(lines)}: {message}" if lines else message
        for message, lines in found.items()
    ]


def validate_input(
    path: _PathLike,
    *,
    endpoint: BatchEndpoint | str | None = None,
    max_requests: int | None = None,
    max_bytes: int | None = None,
    max_embedding_inputs: int = MAX_EMBEDDING_INPUTS,
    max_problems: int = _MAX_PROBLEMS,
    strict: bool = False,
    provider: str = "openai",
    prices: Mapping[str, Any] | _Prices | None = None,
    estimate: bool = False,
) -> InputSummary:
    """Check a batch input file in one streaming pass, before it costs a day in the queue.

    Returns what the file holds, or raises ``InputFileError`` listing every problem found (up
    to ``max_problems``, then a count), each with its line numbers. A problem on many lines is
    listed once. Where the server's rule is uncertain (a trailing blank line, a missing model
    on an endpoint with a default, a file between 200 MB and 200 MiB), the summary's
    ``warnings`` say so, and ``strict=True`` makes them problems: refusing a file the server
    would take is the worst a validator can do. A CSV, a JSON array or pretty-printed JSON is
    named as such, once. Memory holds the custom_ids (past 100,000, a 256th of them, the rest
    in temporary files) and nothing else of the file.

    ``provider="azure"`` checks by Azure OpenAI's rules instead: 100,000 requests, no UTF-8
    byte-order mark, and urls with or without ``/v1`` (``/chat/completions``).

    With ``estimate=True``, or ``prices``, the summary's ``estimate`` gives the tokens and
    their cost (``InputEstimate``; counting them adds about a third to the time), at the
    batch prices of the table, of a JSON file named by ``OPENAI_BATCH_PRICES``, or of
    ``prices`` (``{model: (input, output[, cached_input])}`` in USD per million tokens), which
    come first; a bad price raises ``ValueError`` naming it.
    """
    rules = _PROVIDERS.get(provider)
    if rules is None:
        raise _ArgumentError(f"provider must be one of {', '.join(_PROVIDERS)}, not {provider!r}")
    name = os.fspath(path)
    _check_shape(name)
    wanted = None if endpoint is None else str(_query_value(endpoint))
    limits = (
        rules.max_requests if max_requests is None else max_requests,
        rules.max_bytes if max_bytes is None else max_bytes,
        max_embedding_inputs,
    )
    check = _InputCheck(name, wanted, limits, max_problems, rules)
    if estimate or prices is not None:  # prices first: a bad one is refused before reading
        prices = prices if isinstance(prices, _Prices) else _Prices(prices)
        check.tally = _TokenTally()
    if not rules.bom:
        with open(name, "rb") as handle:
            if handle.read(3) == _BOM:
                check.problem(
                    1,
                    f"the file starts with a UTF-8 byte-order mark (BOM), which {rules.name} "
                    "refuses; save it as UTF-8 without a BOM",
                )
    for number, raw in _binary_lines(name):
        check.line(number, raw)
    return check.finish(strict, prices if isinstance(prices, _Prices) else None)


def _check_shape(path: _PathLike) -> None:
    """Refuse, in one sentence, a file that is not JSONL at all: a JSON array, pretty-printed
    JSON or a CSV would otherwise get an error on every line."""
    with open(path, "rb") as handle:
        head = [handle.readline() for _ in range(2)]
    if head[0][:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head[0]:
        # json.loads would read UTF-16 too; the Batch API reads UTF-8 only.
        message = "this file is UTF-16 or UTF-32 text; a batch file must be UTF-8 (save it so)"
        raise InputFileError(os.fspath(path), [(None, message)])
    first = head[0].lstrip(_BOM).strip()
    try:
        if isinstance(json.loads(first), dict):
            return  # the first line is a JSON object: JSONL, whatever else is wrong
    except ValueError:
        pass
    shape = None
    if first.startswith(b"[") or (first == b"{" and head[1].strip()[:1] == b'"'):
        shape = "a JSON array" if first.startswith(b"[") else "pretty-printed JSON"
    elif first and first[:1] not in b"{[" and all(b"," in line or b"\t" in line for line in head):
        shape = "a CSV or TSV table"
    if shape is not None:
        hint = "JSONL means one JSON object per line (see BatchRequest.chat and write_jsonl)"
        message = f"this looks like {shape}, not JSONL; {hint}"
        raise InputFileError(os.fspath(path), [(None, message)])


_NO_LIMIT = sys.maxsize


class _Shard(_AtomicFile):
    """One output file of ``split_jsonl``, and how much it holds so far."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.requests = self.bytes = self.inputs = 0

    def fits(self, size: int, inputs: int, limits: tuple[int, int, int]) -> bool:
        max_requests, max_bytes, max_inputs = limits
        return (
            self.requests < max_requests
            and self.bytes + size <= max_bytes
            and self.inputs + inputs <= max_inputs
        )

    def add(self, line: bytes, inputs: int) -> None:
        self.file.write(line)
        self.requests, self.bytes, self.inputs = (
            self.requests + 1,
            self.bytes + len(line),
            self.inputs + inputs,
        )


def split_jsonl(
    path: _PathLike,
    out_dir: _PathLike,
    *,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int = MAX_INPUT_BYTES,
    max_embedding_inputs: int = MAX_EMBEDDING_INPUTS,
) -> list[str]:
    """Split an input file into shards within the limits; return their paths, in order.

    The file is validated first (``InputFileError`` as from ``validate_input``). Lines keep
    their order and bytes and are never split. Shards are named ``<stem>.001.jsonl`` and so on,
    in a folder that must not hold shards of an earlier split (``FileExistsError``), so that
    no stale shard is mistaken for a new one; if splitting fails, no shard is left behind.
    """
    name = os.fspath(path)
    summary = validate_input(
        name, max_requests=_NO_LIMIT, max_bytes=_NO_LIMIT, max_embedding_inputs=_NO_LIMIT
    )
    limits = (max_requests, max_bytes, max_embedding_inputs)
    prefix = os.path.join(os.fspath(out_dir), _shard_stem(name, out_dir))
    shards: list[_Shard] = []
    try:
        for number, line, inputs in _shard_lines(name, summary.endpoint):
            if len(line) > max_bytes or inputs > max_embedding_inputs:
                alone = "bytes" if len(line) > max_bytes else "embedding inputs"
                problem = f"this line alone has too many {alone} for one batch"
                raise InputFileError(name, [(number, problem)])
            if not shards or not shards[-1].fits(len(line), inputs, limits):
                if shards:
                    shards[-1].commit()
                shards.append(_Shard(f"{prefix}.{len(shards) + 1:03d}.jsonl"))
            shards[-1].add(line, inputs)
        shards[-1].commit()
    except BaseException:
        for shard in shards:
            if shard.done:
                _remove_quietly(shard.path)  # ours: the folder held no shard before
            shard.discard()
        raise
    return [shard.path for shard in shards]


def _shard_stem(path: str, out_dir: _PathLike) -> str:
    """The shards' name stem; refuses a folder that holds shards of an earlier split."""
    import re

    stem = os.path.basename(path)
    stem = stem[: -len(".jsonl")] if stem.endswith(".jsonl") else stem
    os.makedirs(out_dir, exist_ok=True)
    shard = re.compile(re.escape(stem) + r"\.\d{3}\.jsonl")
    earlier = sorted(name for name in os.listdir(out_dir) if shard.fullmatch(name))
    if earlier:
        raise FileExistsError(
            f"{os.fspath(out_dir)} already holds shards of an earlier split "
            f"({', '.join(earlier[:3])}{', ...' if len(earlier) > 3 else ''}); "
            "remove them or split into another folder"
        )
    return stem


def _shard_lines(path: str, endpoint: str | None) -> Iterator[tuple[int, bytes, int]]:
    """Each line ending in a newline, with its number and its count of embedding inputs."""
    embeddings = endpoint == BatchEndpoint.EMBEDDINGS.value
    for number, raw in _binary_lines(path):
        line = raw if raw.endswith(b"\n") else raw + b"\n"
        yield number, line, _embedding_inputs(json.loads(line)["body"]) if embeddings else 0


def iter_results(source: _Results) -> Iterator[BatchResult]:
    """The results in an output or error file: a path, ``files.content(...)``, or lines.

    Lines may be str, bytes, dicts or ``BatchResult``s. Blank lines carry no result and are
    passed over; a line that is not a JSON object raises ``InputFileError`` naming the source
    and the line.
    """
    name = _source_name(source)
    if isinstance(source, (str, os.PathLike)):
        lines: Iterable[tuple[int, Any]] = _binary_lines(source)
    elif isinstance(source, BinaryContent):
        lines = enumerate(source.iter_lines(), 1)
    else:
        lines = enumerate(source, 1)
    for number, line in lines:
        if isinstance(line, BatchResult):
            yield line
            continue
        try:
            data = line if isinstance(line, dict) else _parse_line(line, name, number)
            result = BatchResult.from_dict(data)
        except InputFileError:
            if line.strip():
                raise
            continue  # a blank line carries no result (asked only of a line that failed)
        except _NotFinite as exc:  # in a body sent as a JSON string
            raise InputFileError(name, [(number, str(exc))]) from None
        yield result


def _supersedes(held_ok: bool | None, ok: bool) -> bool:
    """Whether a request's newer result takes the place of the one held: a success wins over
    any failure, and a later failure over an earlier one (its retry failed again)."""
    return held_ok is None or ok or not held_ok


def join_results(
    requests_path: _PathLike, results: _Results
) -> Iterator[tuple[BatchRequest | None, BatchResult | None]]:
    """Pair each request of an input file with its result, in input order.

    A request with no result (cancelled, expired, lost) comes with None; it is never dropped.
    Where a custom_id has several results (an output file and a retry's), a successful one
    wins. Results whose custom_id is in no request come last, with None for the request.
    Results are kept in a temporary file, so memory holds an index, not their bodies.
    """
    import tempfile

    with tempfile.TemporaryFile() as spool:
        index: dict[str, tuple[int, bool]] = {}
        for result in iter_results(results):
            held = index.get(result.custom_id)
            if _supersedes(None if held is None else held[1], result.ok):
                index[result.custom_id] = (spool.tell(), result.ok)
                # ASCII, escapes and all: a result may hold an unpaired surrogate, which UTF-8
                # cannot encode but a JSON escape can.
                line = json.dumps(result._line(), separators=(",", ":"), allow_nan=False)
                spool.write(line.encode() + b"\n")
        for data in read_jsonl(requests_path):
            request = BatchRequest.from_dict(data)
            yield request, _take(spool, index, request.custom_id)
        for custom_id in list(index):
            yield None, _take(spool, index, custom_id)


def _take(
    spool: IO[bytes], index: dict[str, tuple[int, bool]], custom_id: str
) -> BatchResult | None:
    held = index.pop(custom_id, None)
    if held is None:
        return None
    spool.seek(held[0])
    return BatchResult.from_dict(json.loads(spool.readline()))


def write_failed_requests(
    requests_path: _PathLike, results: _Results, path: _PathLike, *, refused: bool = True
) -> int:
    """Write the requests that failed or have no result to a new input file, ready to submit.

    Returns how many were written. With none, no file is left at ``path``: an old one there is
    removed, so that a script never submits a stale retry file again. Results that match no
    request (the wrong input file) raise ``InputFileError`` and write nothing. With
    ``refused=False``, requests the server refused with HTTP 400 are left out: sent again
    unchanged, they fail again.
    """
    seen = [0, 0]  # results, and results that matched a request

    def failed() -> Iterator[BatchRequest]:
        for request, result in join_results(requests_path, results):
            seen[0] += result is not None
            seen[1] += result is not None and request is not None
            if request is None or (result is not None and result.ok):
                continue
            if refused or result is None or result.status_code != 400:
                yield request

    with _AtomicFile(path) as out:
        lines, _ = _write_rows(out.file, failed())
        if seen[0] and not seen[1]:
            raise InputFileError(
                os.fspath(requests_path),
                [
                    (
                        None,
                        f"none of the {seen[0]:,} results matches a request here; is it the "
                        "batch's input file? (nothing was written)",
                    )
                ],
            )
        if not lines:
            out.discard()
            _remove_quietly(os.fspath(path))
    return lines


###############################################################################################
# Jobs: work of any size in rounds, resumed after a crash; the engine and its record
###############################################################################################
#
#: A job is one engine (`_Job`) and a round driver. The engine owns the record and its lock, the
#: rounds, RESULTS, the endings of requests with no result, the clean-up, the report and the
#: events; a driver owns how one round's requests get answers: batches (`_BatchRounds`) or
#: requests sent straight to the server (`_DirectRounds`, in the next section). A driver hands
#: the engine result files in Batch API output format, and progress of one shape.

_STATE_VERSION = 2
_ALONE_TRIES = 3  # a one-request shard over the token limit alone this often fails for good
_CLEAN_ENDS = 8  # batches that end well after a collision before the budget passes its level
_RETRYABLE_LINE_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))

#: The job settings: for each, the lowest and highest value and the default. ``client.run``
#: and ``openai-batch run`` both check against this table. A resumed job takes the new
#: value of every setting but ``batch_size``, which cuts only the shards of rounds to come.
_JOB_SETTINGS: dict[str, tuple[float, float, float | None]] = {
    "batch_size": (1, 100_000, MAX_REQUESTS),  # and at most the provider's own limit
    "max_active": (1, 10_000, DEFAULT_MAX_ACTIVE),
    "max_enqueued_tokens": (1, 10**12, None),
    "rounds": (1, 100, DEFAULT_ROUNDS),
    "poll_interval": (0.01, 3600.0, None),
    "concurrency": (1, _MAX_CONCURRENCY, DEFAULT_CONCURRENCY),
    "max_requests_per_minute": (1, 10**9, None),
    "max_tokens_per_minute": (1, 10**12, None),
    "max_cost": (0, 10**9, None),  # USD, over the whole job, reruns included
}
_FRACTIONAL = ("poll_interval", "max_cost")  # the settings that need not be whole numbers
_DIRECT_ONLY = ("concurrency", "max_requests_per_minute", "max_tokens_per_minute")


class _JobStatus(str, enum.Enum):
    """Where a job stands. Its moves::

        RUNNING ---- cancel() ----> CANCELLING
           |                            |
           +--------- write() ----------+---> WRITTEN ---- finish() ---> FINISHED

    RUNNING plans and drives rounds; CANCELLING starts nothing and waits for what runs. A
    FINISHED job has deleted its files from the server and kept in its folder only its record.
    """

    RUNNING = "running"
    CANCELLING = "cancelling"
    WRITTEN = "written"
    FINISHED = "finished"


class _ShardStatus(str, enum.Enum):
    """Where one shard of a batch job stands. Its moves, and what makes each::

                 plan()           start()             check(): its batch ended
        input ----------> QUEUED ---------> RUNNING -----------------------------> COMPLETED
                           ^  | |              |                                   EXPIRED
                           |  | |              |                                   CANCELLED
                           |  | |              |                                   FAILED
                           +--|-|--------------+ requeue(): over the enqueued-token limit
                              | +--> SPLIT       split(): too big on its own; its halves QUEUED
                              +----> NOT_STARTED cancel(), once no batch of its keys exists

    QUEUED and RUNNING are live; every other status is final.
    """

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"
    SPLIT = "split"
    NOT_STARTED = "not_started"


_LIVE = (_ShardStatus.QUEUED.value, _ShardStatus.RUNNING.value)

if TYPE_CHECKING:
    from typing import TypedDict

    class _ShardRecord(TypedDict, total=False):
        """One shard of a batch job: a file of requests, and the batch that runs it."""

        name: str  # its file in the job's folder, r<round>-<n>[a|b...].jsonl
        order: str  # sorts the first round's shards into input order
        round: int
        requests: int
        tokens: int  # its prompt tokens, estimated
        key: str  # the idempotency key of its creates, with -t<tries> after a requeue
        tries: int  # times it went over the token limit
        alone: int  # ... of which with nothing else of the job running
        sent: str | None  # the last key a create may have been sent with
        status: str  # a _ShardStatus value
        file_id: str | None
        batch_id: str | None
        made: int  # batches made for it
        files: list[str]  # its result files in the job's folder
        server_files: list[str]  # its output and error files on the server
        usage: dict[str, int]
        results: int
        succeeded: int
        failed: int  # requests whose failure is final
        errors: list[str]

    class _JobRecord(TypedDict, total=False):
        """A job: RESULTS.job/state.json, with the steps since in journal.jsonl."""

        version: int
        generation: int  # of the record; the journal that goes with it carries the same
        job: str  # a random id, in the creates' idempotency keys
        mode: str  # how its rounds are driven: "Batch API" or "direct"
        input: str
        output: str
        sha256: str
        endpoint: str
        model: str | None  # the input's, which its tokens are priced at
        requests: int
        started: float
        settings: dict[str, Any]
        status: str  # a _JobStatus value
        cancelled: bool
        round: int
        budget: int | None  # the enqueued tokens it allows itself now
        shards: list[_ShardRecord]
        tally: dict[str, Any]  # RESULTS, counted as it was written
        seconds: float
        batches: int  # made, as RESULTS was written
        usage: dict[str, int]  # tokens, as RESULTS was written
        cleaned: list[str]  # server files deleted
        left: int  # server files a clean-up could not delete
        unpriced: int  # answers that said no tokens, as RESULTS was written
        dedupe: bool  # each set of requests with the same endpoint and body sent once
        cache: str | None  # the cache of answers it reads and adds to
        sieved: dict[str, Any]  # what _Sieve found: counts, and the file the drivers send


@_dataclass
class JobReport(_Fields):
    """What a job did: its requests by outcome, the batches and rounds it took, its tokens
    and what they cost."""

    output: str
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    failures: dict[str, int] = _field(default_factory=dict)  # reason -> requests
    batches: int = 0
    rounds: int = 0
    usage: dict[str, int] = _field(default_factory=dict)
    seconds: float = 0.0
    files_left: int = 0  # the job's files a failed clean-up left on the server
    # What the tokens cost in USD at the model's batch price, and at its standard price, each
    # with whose prices (and from when); None where no price is known, and cost_note says so.
    model: str | None = None
    cost: float | None = None
    prices: str | None = None
    standard_cost: float | None = None
    standard_prices: str | None = None
    cost_note: str | None = None
    unpriced: int = 0  # answers that said no tokens: what they cost is not in ``cost``
    # Requests not sent: copies of another request of the job (dedupe), and requests the
    # cache answered; and what their answers' tokens would have cost, at the batch price.
    deduplicated: int = 0
    cache_hits: int = 0
    saved: float | None = None

    @property
    def ok(self) -> bool:
        return self.failed == 0


class JobStoppedError(OpenAIError):
    """A job stopped before its end, keeping all it has: the server did not answer for too
    long, or said that the key or the address is wrong. Running the job again resumes it.

    ``reason`` is ``"outage"``, ``"credentials"``, ``"address"``, ``"quota"`` or
    ``"max_cost"``; ``error`` is the server's answer that decided it, when there was one.
    A job stopped at its cost cap has written RESULTS with what it has, and ``report`` is
    that RESULTS' report; ``needed`` is the cap (USD) that would let it send all the rest,
    at worst.
    """

    def __init__(
        self,
        message: str,
        reason: str,
        error: APIError | None = None,
        report: JobReport | None = None,
        needed: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.error = error
        self.report = report
        self.needed = needed


def _sha256(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Record:
    """A job's record: ``state.json``, written whole now and then, and ``journal.jsonl``, a
    line for each step since, so that a step costs what it changes, not what the job holds.

    Each line sets a shard's record, or some of the job's fields, whole: replaying the journal
    over the state it was begun for gives the record as it was at the last step. When the
    journal has grown past the record, the record is written whole again (atomically) under
    the next generation, and a new journal begun for it; a journal of an older generation is
    ignored, so a kill between the two loses nothing and replays nothing twice.
    """

    def __init__(self, folder: str, data: _JobRecord, lock: IO[bytes]) -> None:
        self.folder, self.data, self.lock = folder, data, lock
        self.journal: IO[bytes] | None = None
        self.steps = 0  # journal lines since the record was written whole

    @classmethod
    def open(
        cls, output: str, input_path: str, settings: dict[str, Any], begin: dict[str, Any]
    ) -> _Record:
        """The job of ``output``, resumed, or begun with ``begin`` in its record; held by
        this process alone until ``close()``."""
        folder = output + ".job"
        os.makedirs(folder, exist_ok=True)
        lock = _lock(os.path.join(folder, "lock"))
        try:
            record = cls._read(folder, lock)
            if record is None:
                data: Any = {
                    "version": _STATE_VERSION,
                    "generation": 0,
                    "job": os.urandom(8).hex(),
                    "input": os.path.abspath(input_path),
                    "sha256": _sha256(input_path),
                    "settings": settings,
                    "status": _JobStatus.RUNNING.value,
                    "round": 0,
                    "shards": [],
                    "cleaned": [],
                    **begin,
                }
                record = cls(folder, data, lock)
                record.rewrite()
                return record
            record.check_input(input_path)
            # The same content, perhaps moved: read it, and write RESULTS, where they are now.
            record.data["input"], record.data["output"] = os.path.abspath(input_path), output
            return record
        except BaseException:
            lock.close()
            raise

    @classmethod
    def _read(cls, folder: str, lock: IO[bytes]) -> _Record | None:
        path = os.path.join(folder, "state.json")
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if data.get("version") == 1:
            data = _upgraded(data)
        if data.get("version") != _STATE_VERSION:
            raise OpenAIError(
                f"the job in {folder} was begun by another version of openai_batch; finish it "
                f"with that version, or remove {folder} to start again"
            )
        record = cls(folder, data, lock)
        record.replay()
        return record

    def replay(self) -> None:
        """Apply the journal's steps; a line a kill cut short, and what follows, are cut off."""
        path, kept = self.path("journal.jsonl"), 0
        if not os.path.exists(path):
            return
        with open(path, "rb") as handle:
            lines = handle.readlines()
        if not lines or json.loads(lines[0]) != {"generation": self.data["generation"]}:
            return  # the journal of a record since written whole
        kept = len(lines[0])
        for line in lines[1:]:
            try:
                step = json.loads(line) if line.endswith(b"\n") else None
            except ValueError:
                step = None
            if not isinstance(step, dict):
                break
            self.apply(step)
            kept += len(line)
            self.steps += 1
        with open(path, "r+b") as handle:
            handle.truncate(kept)

    def apply(self, step: dict[str, Any]) -> None:
        shards = self.data["shards"]
        shards.extend(step.get("add", []))
        if "shard" in step:
            shards[step["shard"]] = step["record"]
        self.data.update(step.get("job", {}))

    def check_input(self, input_path: str) -> None:
        if self.data.get("sha256") == _sha256(input_path):
            return
        written = self.data["status"] in (_JobStatus.WRITTEN.value, _JobStatus.FINISHED.value)
        what = (
            "RESULTS is written for the input it had then; write the new input's results "
            f"elsewhere, or remove {self.folder} to start again"
            if written
            else f"finish that job with the input it began with, or remove {self.folder} "
            "to start again"
        )
        raise OpenAIError(f"{input_path} has changed since the job in {self.folder} began; {what}")

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
        self.lock.close()  # and with it the lock

    def path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    @property
    def shards(self) -> list[_ShardRecord]:
        return self.data["shards"]

    def shard(self, number: int) -> None:
        """Record shard ``number`` as it is now."""
        self.step({"shard": number, "record": self.shards[number]})

    def add(self, shards: list[_ShardRecord], changed: int | None = None, **fields: Any) -> None:
        """Record new shards, with shard ``changed`` as it is now and fields of the job, in one
        step: a kill records all of it, or none (a round's shards and its number; a split's
        halves and the shard they replace)."""
        self.shards.extend(shards)
        self.data.update(fields)  # type: ignore[typeddict-item]
        step: dict[str, Any] = {"add": shards}
        if changed is not None:
            step.update(shard=changed, record=self.shards[changed])
        if fields:
            step["job"] = fields
        self.step(step)

    def job(self, **fields: Any) -> None:
        """Set and record fields of the job."""
        self.data.update(fields)  # type: ignore[typeddict-item]
        self.step({"job": fields})

    def step(self, step: dict[str, Any]) -> None:
        if self.steps > max(64, 2 * len(self.shards)):
            self.rewrite()  # the journal now costs more to replay than the record to write
            return
        if self.journal is None:
            self.journal = open(self.path("journal.jsonl"), "ab")  # noqa: SIM115
        self.journal.write(_dumps_line(step).encode("utf-8") + b"\n")
        self.journal.flush()
        os.fsync(self.journal.fileno())
        self.steps += 1

    def rewrite(self) -> None:
        """The record whole, under a new generation, and an empty journal for it."""
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        self.data["generation"] = self.data.get("generation", 0) + 1
        with _AtomicFile(self.path("state.json")) as out:
            out.file.write(_dumps_line(self.data).encode("utf-8"))
        with _AtomicFile(self.path("journal.jsonl")) as out:
            out.file.write(_dumps_line({"generation": self.data["generation"]}).encode() + b"\n")
        self.steps = 0


def _upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """A record of the first version (0.1.0, one state.json rewritten at each step) in the
    shape of this one, so that a job begun before an upgrade is resumed, not lost."""
    usage: dict[str, int] = {}
    for shard in data.get("shards", []):  # a direct job's answers file was a shard then
        _added(usage, shard.get("usage") or {})
    shards = [shard for shard in data.pop("shards", []) if shard.get("status") != "direct"]
    for shard in shards:
        if shard["round"] == 1:  # r1-0012ab.jsonl: the twelfth shard, its first half's second
            stem = shard["name"][len("r1-") : -len(".jsonl")]
            digits = stem.rstrip("ab")
            shard["order"] = f"{int(digits):010d}{stem[len(digits) :]}"
    status = _JobStatus.RUNNING.value
    if data.pop("written", False):
        status = _JobStatus.WRITTEN.value
    elif data.get("cancelled"):
        status = _JobStatus.CANCELLING.value
    batches = sum(shard.get("made", 0) for shard in shards)
    data.update(version=_STATE_VERSION, generation=0, status=status, shards=shards)
    data.setdefault("batches", batches)
    data.setdefault("usage", usage)
    return data


def _lock(path: str) -> IO[bytes]:
    """An open file whose exclusive lock this process holds until it closes the file.

    The system drops the lock when the process ends, however it ends, so a job killed with
    SIGKILL is not left locked; a second process on the same job is refused, rather than let
    two of them write one record.
    """
    handle = open(path, "a+b")  # noqa: SIM115
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        folder = os.path.dirname(path)
        raise OpenAIError(f"another process is running the job in {folder}") from None
    return handle


def _line_index(paths: list[str], files: int = 0) -> dict[str, int]:
    """Where each custom_id's result line is in ``paths``: offset, file (numbered from
    ``files``) and whether it succeeded, packed in one int (a million of them cost a third of
    what tuples would). Lines are taken in order, by ``_supersedes``."""
    index: dict[str, int] = {}
    for number, path in enumerate(paths, files):
        with open(path, "rb") as handle:
            offset = 0
            for line in handle:
                if line.strip():
                    data = json.loads(line)
                    custom_id = data.get("custom_id")
                    if not isinstance(custom_id, str):
                        custom_id = _json_text(custom_id)
                    ok = _line_ok(data)
                    held = index.get(custom_id)
                    if _supersedes(None if held is None else bool(held & 1), ok):
                        index[custom_id] = ((offset << _FILE_BITS | number) << 1) | ok
                offset += len(line)
    return index


def _line_ok(data: dict[str, Any]) -> bool:
    response = data.get("response")
    status = response.get("status_code") if isinstance(response, dict) else None
    return data.get("error") is None and isinstance(status, int) and 200 <= status < 300


_FILE_BITS = 20  # in a packed place: up to a million result files


class _LineReader:
    """Lines read back from result files by their packed place, the files kept open."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.open: dict[int, IO[bytes]] = {}

    def __enter__(self) -> _LineReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self.open.values():
            handle.close()

    def at(self, place: int) -> bytes:
        number, offset = place & ((1 << _FILE_BITS) - 1), place >> _FILE_BITS
        handle = self.open.get(number)
        if handle is None:
            if len(self.open) >= 64:  # a long job has many files: keep a few open at once
                self.open.pop(next(iter(self.open))).close()
            handle = self.open[number] = open(self.paths[number], "rb")  # noqa: SIM115
        handle.seek(offset)
        line = handle.readline()
        return line if line.endswith(b"\n") else line + b"\n"


def _added(total: dict[str, int], usage: Mapping[str, int]) -> None:
    """Add one batch's (or answer's) token counts to ``total``."""
    for name, value in usage.items():
        total[name] = total.get(name, 0) + value


def _may_pass(result: BatchResult) -> bool:
    """Whether a failed line may pass if sent again: a 5xx, 408, 409 or 429, or no answer at
    all (its batch expired or was cancelled before it ran)."""
    status = result.status_code
    return not result.ok and (status is None or status in _RETRYABLE_LINE_STATUSES)


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def _usage_of(batch: Batch) -> dict[str, int]:
    usage = batch.usage if isinstance(batch.usage, BatchUsage) else None
    if usage is None:
        return {}
    cached = usage.input_tokens_details.cached_tokens if usage.input_tokens_details else 0
    reasoning = usage.output_tokens_details.reasoning_tokens if usage.output_tokens_details else 0
    return {
        "input_tokens": usage.input_tokens or 0,
        "cached_tokens": cached or 0,
        "output_tokens": usage.output_tokens or 0,
        "reasoning_tokens": reasoning or 0,
    }


def _usage_in(body: Any) -> dict[str, int]:
    """Tokens an answer used, named as ``Batch.usage`` names them, from any endpoint's names
    (chat's and embeddings' prompt and completion tokens, the Responses API's own)."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return {}

    def number(name: str, inner: str = "") -> int:
        value = usage.get(name)
        if inner:
            value = value.get(inner) if isinstance(value, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return {
        "input_tokens": number("input_tokens") or number("prompt_tokens"),
        "cached_tokens": number("input_tokens_details", "cached_tokens")
        or number("prompt_tokens_details", "cached_tokens"),
        "output_tokens": number("output_tokens") or number("completion_tokens"),
        "reasoning_tokens": number("output_tokens_details", "reasoning_tokens")
        or number("completion_tokens_details", "reasoning_tokens"),
    }


def _check_settings(settings: dict[str, Any], max_requests: int) -> None:
    """Refuse, before anything is sent, settings that could not work."""
    for name, (low, high, _) in _JOB_SETTINGS.items():
        value = settings[name]
        whole = name not in _FRACTIONAL
        if name == "batch_size":
            high = min(high, max_requests)
        if value is None and _JOB_SETTINGS[name][2] is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (whole and not isinstance(value, int)) or not low <= value <= high:
            kind = "a whole number" if whole else "a number"
            none = ", or None" if _JOB_SETTINGS[name][2] is None else ""
            raise _ArgumentError(f"{name} must be {kind} from {low:g} to {high:,g}{none}")


class _CostCap:
    """The most a job may spend, in USD (``max_cost``), over all its runs.

    A piece of work (a batch job's shard, a direct job's request) is started only if what the
    job has spent, plus the worst case of everything it has running, plus the piece's own
    worst case, stays within the cap. A piece holds its worst case until it ends, and then
    what its tokens cost is spent (an answer that says no tokens: its worst case).

    A request's worst case is not the estimate, which may fall short (digits, code): it is
    its input at most (``_input_bound``: a token a byte of its text) and the most output its
    limits allow (``_output_limit``). A request that may cost more than its text says (an
    image, audio or a file; a tool OpenAI bills for) has no such bound: ``_cost_cap``
    refuses the cap.
    """

    def __init__(self, limit: float, price: _Price) -> None:
        self.limit, self.price = limit, price

    def worst(self, url: str, body: Mapping[str, Any]) -> float:
        """The most a request may cost."""
        return self.price.cost(_input_bound(body), _output_limit(body, url) or 0)

    def worst_of(self, path: str) -> float:
        """The worst case of every request in a file of them."""
        total = 0.0
        for _, raw in _binary_lines(path):
            if raw.strip():
                data = json.loads(raw)
                total += self.worst(data["url"], data["body"])
        return total

    def spent(self, usage: Mapping[str, int]) -> float:
        tokens = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
        return self.price.cost(*tokens, usage.get("cached_tokens", 0))

    def fits(self, spent: float, held: float, worst: float) -> bool:
        return spent + held + worst <= self.limit + 1e-9  # a sum of floats: within a rounding


def _cost_cap(
    limit: float | None, prices: _Prices, model: str | None, path: str
) -> _CostCap | None:
    """The job's cost cap, or None; refused before anything is sent when it could not be
    kept: no price known for the model, or requests whose cost has no bound."""
    if limit is None:
        return None
    price = prices.price(model)
    if price is None:
        known = f"no price is known for {model}" if model else "the input names no model"
        raise _ArgumentError(
            f"max_cost needs the model's price, and {known}: nothing was sent",
            setting="max_cost",
        )
    unbounded: dict[str, int] = {}
    for data in read_jsonl(path):
        why = _unbounded(data["url"], data["body"])
        if why:
            unbounded[why] = unbounded.get(why, 0) + 1
    if unbounded:
        said = "; ".join(f"{count:,} {why}" for why, count in unbounded.items())
        raise _ArgumentError(
            f"max_cost needs a bound on every request's cost, and these have none: {said}. "
            "Nothing was sent",
            setting="max_cost",
        )
    return _CostCap(limit, price)


#: Content a model is billed for beyond its text (parts of a message, or input items), and
#: the tools OpenAI bills by the call; a tool of a type not named here is a function's.
_UNTEXT = frozenset({"image_url", "input_image", "input_audio", "input_file", "file", "audio"})
_FREE_TOOLS = frozenset({"function", "custom"})


def _unbounded(url: str, body: Mapping[str, Any]) -> str | None:
    """Why a request's cost has no bound a cap can hold it to, or None."""
    if _output_limit(body, url) is None:
        return "with no output limit (max_tokens, max_completion_tokens or max_output_tokens)"
    tools = body.get("tools")
    if isinstance(tools, list) and any(
        isinstance(tool, dict) and tool.get("type", "function") not in _FREE_TOOLS for tool in tools
    ):
        return "with a tool OpenAI bills for (web or file search, code, images)"
    if _has_untext(body.get("messages", body.get("input"))):
        return "with an image, audio or a file (billed beyond its bytes)"
    return None


def _has_untext(value: object) -> bool:
    """Whether messages, content or input items hold anything but text."""
    if isinstance(value, list):
        return any(_has_untext(item) for item in value)
    if isinstance(value, dict):
        if value.get("type") in _UNTEXT or not _UNTEXT.isdisjoint(value):
            return True
        return _has_untext(value.get("content"))
    return False


#: Each unique request paid once: the sieve before a job's rounds (dedupe), and the cache of
#: answers across jobs that it reads and RESULTS adds to.
_CACHE_ROWS = 10_000  # answers added to a cache in one transaction (see _Cache.add)
_CACHE_WAIT = 60.0  # seconds a cache waits for another process's transaction to end
_CACHE_LOOKUP = 500  # keys looked up in one query (SQLite before 3.32 allows 999 parameters)
_CACHE_KEYS_READ = 250_000  # keys a sieve may hold, read at once rather than looked up: 25 MB
_TOKEN_NAMES = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")
#: The canonical form of a request: made once, as ``json.dumps`` would make one each call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _request_key(data: Mapping[str, Any]) -> bytes:
    """The sha256 of a request's endpoint and body as canonical JSON: the same for two
    requests that differ only in their custom_id, their keys' order or their spacing."""
    import hashlib

    canonical = _CANONICAL.encode([data.get("url"), data.get("body")])
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).digest()


class _Cache:
    """Successful answers kept across jobs, by the sha256 of their request's endpoint and
    canonical body: a SQLite file in WAL mode, so that jobs in several processes may read
    and add to one cache at once.

    An answer is added with INSERT OR IGNORE on its key, and the hits of a job are recorded
    under the job's id with INSERT OR REPLACE, each write in a transaction of its own: a
    process killed at any moment leaves the file as it was before the transaction under way,
    and a job run again after a kill adds nothing twice and counts its hits once.
    """

    def __init__(self, path: str, existing: bool = False) -> None:
        """The cache at ``path``, made if it is not there; with ``existing`` (stats, prune),
        one that is, and a SQLite file that is not a cache is refused, not changed."""
        try:
            import sqlite3
        except ImportError:
            raise OpenAIError(
                f"this Python was built without the sqlite3 module, which a cache ({path}) "
                "needs; use a Python that has it (python.org's builds and most distributions' "
                "do), or run without a cache"
            ) from None
        self.path, folder = path, os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path) or not os.path.isdir(folder):
            what = "is a folder" if os.path.isdir(path) else f"is in no folder: {folder} is not"
            raise OpenAIError(f"the cache {path} {what}; a cache is a file, named in full")
        try:  # isolation_level=None: this class begins and ends each transaction itself
            self.db = sqlite3.connect(path, timeout=_CACHE_WAIT, isolation_level=None)
        except sqlite3.Error as exc:
            raise OpenAIError(f"the cache {path} cannot be opened: {exc}") from None
        deadline = time.monotonic() + _CACHE_WAIT  # each try waits too: the whole wait
        while True:
            try:
                self.setup(existing, deadline)
                return
            except sqlite3.OperationalError as exc:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                # Two processes making one cache at once: the switch to WAL does not wait
                # for the other as a write does, so this waits for it, as long as a write.
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    self.db.close()
                    raise OpenAIError(f"the cache {path} cannot be used: {exc}") from None
            except (sqlite3.Error, OpenAIError) as exc:
                self.db.close()
                if isinstance(exc, OpenAIError):
                    raise
                raise OpenAIError(f"the cache {path} cannot be used: {exc}") from None
            time.sleep(0.05)

    def setup(self, existing: bool, deadline: float) -> None:
        """WAL mode, the wait for others' writes, and the tables, in a cache new or not. A
        cache made already is only read here, so that opening it waits for no writer."""
        wait = max(deadline - time.monotonic(), 0.0)
        self.db.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
        tables = {
            row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if existing and "answers" not in tables:
            raise OpenAIError(
                f"{self.path} is not a cache of openai_batch's (it has no table of answers); "
                "nothing in it was changed"
            )
        if {"answers", "hits"} <= tables:
            self.db.execute("PRAGMA synchronous=NORMAL")
            return
        if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.db.execute("PRAGMA journal_mode=WAL")  # kept in the file: done once
        # A commit reaches the disk with the next checkpoint, not at once: a crash of the
        # machine may lose the last answers added (sent again by the next job), and never
        # leaves the file inconsistent; a killed process loses nothing.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS answers (key BLOB PRIMARY KEY, url TEXT, "
            "model TEXT, response TEXT NOT NULL, input_tokens INTEGER, cached_tokens "
            "INTEGER, output_tokens INTEGER, reasoning_tokens INTEGER, created REAL)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS hits (job TEXT PRIMARY KEY, model TEXT, "
            "hits INTEGER, input_tokens INTEGER, cached_tokens INTEGER, output_tokens "
            "INTEGER, reasoning_tokens INTEGER, created REAL)"
        )
        self.db.execute("COMMIT")

    def __enter__(self) -> _Cache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.db.close()

    def keys(self, requests: int) -> set[bytes] | None:
        """Every key the cache holds, when that is cheaper than looking up a job's
        ``requests`` keys (reading a key costs about a quarter of looking one up) and fits
        in memory; None when it is not. What another process adds or prunes meanwhile is
        as a lookup would find it a moment earlier: a request that misses is sent, and
        its answer added if it still is not kept (``find`` answers only what it finds)."""
        held = self.db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        if held > min(4 * requests, _CACHE_KEYS_READ):
            return None
        return {key for (key,) in self.db.execute("SELECT key FROM answers")}

    def find(self, keys: list[bytes]) -> dict[bytes, tuple[str, tuple[int, ...]]]:
        """The responses kept for those of ``keys`` (at most ``_CACHE_LOOKUP``) that the
        cache holds, as JSON text, each with its four token counts; one query for all."""
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = self.db.execute(
            f"SELECT key, response, {', '.join(_TOKEN_NAMES)} FROM answers WHERE key IN ({marks})",
            keys,
        )
        return {key: (str(response), tuple(tokens)) for key, response, *tokens in rows}

    def add(self, rows: Iterable[tuple[Any, ...]]) -> int:
        """Add answers (key, the 32 bytes of a ``_request_key``; url, model, response, four
        token counts, created), a transaction each ``_CACHE_ROWS``; an answer whose key is
        kept already is left as it is. Returns how many were new."""
        import itertools

        added, rows = 0, iter(rows)
        while True:
            chunk = list(itertools.islice(rows, _CACHE_ROWS))
            if not chunk:
                return added
            # in the order of the index of keys, which random keys would otherwise update
            # a page here and a page there: a fifth cheaper once the cache holds 100,000
            chunk.sort(key=lambda row: row[0])
            before = self.db.total_changes
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany(
                    "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            added += self.db.total_changes - before

    def hits(
        self, job: str, model: str | None, hits: int, usage: Mapping[str, int], now: float
    ) -> None:
        """Record that ``job`` was answered ``hits`` times from the cache, sparing ``usage``;
        a job recorded again replaces its own row."""
        tokens = [usage.get(name, 0) for name in _TOKEN_NAMES]
        self.db.execute(
            "INSERT OR REPLACE INTO hits VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (job, model, hits, *tokens, now),
        )

    def stats(self) -> dict[str, Any]:
        """Entries and tokens by model, the oldest and newest, and hits by model."""
        models: dict[str, dict[str, Any]] = {}
        sums = ", ".join(f"SUM({name})" for name in _TOKEN_NAMES)
        for row in self.db.execute(
            f"SELECT model, COUNT(*), {sums}, MIN(created), MAX(created) FROM answers "
            "GROUP BY model ORDER BY model"
        ):
            entry = models.setdefault(str(row[0]), {"hits": 0, "saved_usage": {}})
            entry.update(entries=row[1], usage=dict(zip(_TOKEN_NAMES, row[2:6])))
            entry.update(oldest=row[6], newest=row[7])
        for row in self.db.execute(f"SELECT model, SUM(hits), {sums} FROM hits GROUP BY model"):
            entry = models.setdefault(str(row[0]), {"entries": 0, "usage": {}})
            entry.update(hits=row[1], saved_usage=dict(zip(_TOKEN_NAMES, row[2:6])))
        entries = sum(entry.get("entries", 0) for entry in models.values())
        return {"path": self.path, "entries": entries, "bytes": self.size(), "models": models}

    def size(self) -> int:
        return sum(
            os.path.getsize(self.path + end)
            for end in ("", "-wal")
            if os.path.exists(self.path + end)
        )

    def prune(self, before: float | None, model: str | None) -> dict[str, int]:
        """Delete the answers added before ``before`` (a time), of ``model``, or both; how
        many went, by model."""
        where: list[str] = []
        values: list[Any] = []
        if before is not None:
            where.append("created < ?")
            values.append(before)
        if model is not None:
            where.append("model = ?")
            values.append(model)
        condition = " AND ".join(where) or "1"
        self.db.execute("BEGIN IMMEDIATE")
        try:
            rows = self.db.execute(
                f"SELECT model, COUNT(*) FROM answers WHERE {condition} GROUP BY model", values
            ).fetchall()
            self.db.execute(f"DELETE FROM answers WHERE {condition}", values)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return {str(name): count for name, count in rows}

    def vacuum(self) -> None:
        """Give the space of deleted answers back to the file system."""
        self.db.execute("VACUUM")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class _Sieve:
    """The first step of a job begun with ``dedupe`` or ``cache``, before any round: the
    input read once, into the requests to send and the answers known already.

    It writes into the job's folder ``send.jsonl``, the requests to send (with ``dedupe``,
    only the first of those with the same endpoint and body; with a cache, only those it does
    not answer), in input order, and ``send.keys``, their keys; ``cached.jsonl``, the cache's
    answers, each under its request's own custom_id; ``duplicates.jsonl``, each request that
    copies an earlier one, and which one; and ``plan``, a byte for each request saying which
    of the three answers it. Then it records what it found in one step: a kill before that
    step makes the next run sieve again. The drivers send ``send.jsonl``.
    """

    FILES = ("send.jsonl", "send.keys", "cached.jsonl", "duplicates.jsonl", "plan")
    SENT, CACHED, COPY = b"s", b"c", b"d"

    def __init__(self, job: _Job) -> None:
        self.job, self.record = job, job.record
        self.seen: dict[bytes, str] = {}  # key -> the custom_id of the first request sent
        self.counts = {"to_send": 0, "cache_hits": 0, "deduplicated": 0}
        self.hit_usage: dict[str, int] = {}

    def run(self) -> None:
        data = self.record.data
        cache_path = data.get("cache")
        cache = _Cache(cache_path) if cache_path else None
        files = [_AtomicFile(self.record.path(name)) for name in self.FILES]
        try:
            known = None if cache is None else cache.keys(data["requests"])
            for chunk in self.chunks(data["input"]):
                # a key sent already is not looked up: with dedupe, its copy is a copy
                wanted = [key for _, key, _ in chunk if key not in self.seen]
                if known is not None:  # a cache read whole: a query for its hits alone
                    wanted = [key for key in wanted if key in known]
                hits = cache.find(wanted) if cache is not None else {}
                lines: tuple[list[bytes], ...] = ([], [], [], [], [])  # for each of FILES
                for raw, key, custom_id in chunk:
                    self.place(raw, key, custom_id, hits.get(key), *lines)
                for out, some in zip(files, lines):  # a write a chunk: each write costs
                    out.file.write(b"".join(some))
            for out in files:
                out.commit()
        finally:
            for out in files:
                out.discard()  # a no-op once committed
            if cache is not None:
                cache.db.close()
        counts = self.counts
        self.record.job(sieved={"send": self.FILES[0], **counts, "hit_usage": self.hit_usage})
        self.job.event("sieved", **counts)

    @staticmethod
    def chunks(path: str) -> Iterator[list[tuple[bytes, bytes, str]]]:
        """The input's requests, each as its line, its key and its custom_id, in runs of
        ``_CACHE_LOOKUP``: a cache is asked about a run at once, not about each request."""
        chunk: list[tuple[bytes, bytes, str]] = []
        for _, raw in _binary_lines(path):
            if raw.strip():
                # text, not bytes: json.loads would guess the encoding of each line, and
                # the input was validated as UTF-8
                request = json.loads(raw.decode("utf-8"))
                chunk.append((raw, _request_key(request), request["custom_id"]))
                if len(chunk) == _CACHE_LOOKUP:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def place(
        self,
        raw: bytes,
        key: bytes,
        custom_id: str,
        hit: tuple[str, tuple[int, ...]] | None,
        *files: list[bytes],
    ) -> None:
        """Put one request where it goes, in the lines for each of FILES: answered from the
        cache (a copy of a request the cache answers is answered from it too), a copy of one
        sent, or to send."""
        send, keys, cached, copies, plan = files
        if hit is not None:
            cached.append(_cached_line(custom_id, hit[0]))
            if any(hit[1]):  # the tokens kept beside the response: it is not parsed again
                _added(self.hit_usage, dict(zip(_TOKEN_NAMES, hit[1])))
            self.counts["cache_hits"] += 1
            plan.append(self.CACHED)
        elif key in self.seen:  # only with dedupe
            copies.append(_line_bytes({"custom_id": custom_id, "of": self.seen[key]}))
            self.counts["deduplicated"] += 1
            plan.append(self.COPY)
        else:
            if self.record.data.get("dedupe", False):
                self.seen[key] = custom_id
            send.append(raw if raw.endswith(b"\n") else raw + b"\n")
            keys.append(key)
            self.counts["to_send"] += 1
            plan.append(self.SENT)

    def write(self, answered: Iterator[_Answered], out: IO[bytes], tally: dict[str, Any]) -> None:
        """RESULTS' lines in input order, by the plan: each sent request's from ``answered``
        (which gives them in the order they were sent), a copy's from the request it copies,
        under its own custom_id, and a cache hit's from ``cached.jsonl``.

        A sent request's line that has copies is kept in a file of the job's folder until
        its copies come, so that memory holds where each is, never the lines.
        """
        import contextlib

        copied = {copy["of"] for copy in read_jsonl(self.record.path("duplicates.jsonl"))}
        copies = read_jsonl(self.record.path("duplicates.jsonl"))
        kept: dict[str, tuple[int, bool, str]] = {}  # custom_id -> offset, ok, reason
        saved: dict[str, int] = dict(self.record.data["sieved"]["hit_usage"])
        sent_counts = {"succeeded": 0, "failed": 0}  # the lines the driver's progress counts
        path = self.record.path
        requests = (raw for _, raw in _binary_lines(path("send.jsonl")) if raw.strip())
        with contextlib.ExitStack() as files:
            plan, hits = (
                files.enter_context(open(path(n), "rb")) for n in ("plan", "cached.jsonl")
            )
            spill = files.enter_context(open(path("copied.tmp"), "w+b"))
            for chunk in iter(lambda: plan.read(_CHUNK), b""):
                for kind in chunk:
                    if kind == self.CACHED[0]:
                        text, ok, reason = hits.readline(), True, ""
                    elif kind == self.COPY[0]:
                        text, ok, reason = self.copy(next(copies), kept, spill, saved)
                    else:
                        custom_id, text, ok, reason = self.sent(next(requests), answered)
                        sent_counts["succeeded" if ok else "failed"] += 1
                        if custom_id in copied:
                            kept[custom_id] = (spill.tell(), ok, reason)
                            spill.write(text)
                    _count(tally, ok, reason)
                    out.write(text)
        _remove_quietly(path("copied.tmp"))
        sieved = self.record.data["sieved"]
        tally.update(cache_hits=sieved["cache_hits"], deduplicated=sieved["deduplicated"])
        tally.update(saved_usage=saved, sent=sent_counts)

    def sent(self, raw: bytes, answered: Iterator[_Answered]) -> tuple[str, bytes, bool, str]:
        """The line of ``raw``, the next request sent; one saying why, for a request never
        sent (the job was cancelled before its first round began)."""
        found = next(answered, None)
        if found is not None:
            return found[0], found[2], found[3], found[4]
        custom_id = json.loads(raw)["custom_id"]
        error = self.job.no_result([])
        line = {"id": None, "custom_id": custom_id, "response": None, "error": error}
        return custom_id, _line_bytes(line), False, error["code"]

    @staticmethod
    def copy(
        copy: dict[str, Any],
        kept: dict[str, tuple[int, bool, str]],
        spill: IO[bytes],
        saved: dict[str, int],
    ) -> tuple[bytes, bool, str]:
        """A copy's line: the line of the request it copies, under its own custom_id."""
        offset, ok, reason = kept[copy["of"]]
        spill.seek(offset)
        line = json.loads(spill.readline())
        spill.seek(0, os.SEEK_END)
        line["custom_id"] = copy["custom_id"]
        if ok:
            _added(saved, _usage_in((line.get("response") or {}).get("body")))
        return _line_bytes(line), ok, reason


def _response_of(line: bytes, decoder: json.JSONDecoder) -> tuple[str, dict[str, Any]]:
    """A result line's response object, and its text as the line has it.

    Read from where ``"response":`` begins, which outside a string it can only do as a key
    (a quote inside a string is escaped), rather than parsing the whole line and writing the
    response again: a cache adds an answer for the cost of reading it once.
    """
    text = line.decode("utf-8")
    found = text.find('"response":')
    if found >= 0:
        start = found + len('"response":')
        while text[start : start + 1] in (" ", "\t"):
            start += 1
        try:
            response, end = decoder.raw_decode(text, start)
        except ValueError:
            response = None
        if isinstance(response, dict) and "status_code" in response:
            return text[start:end], response
    response = json.loads(text)["response"]
    return _line_bytes(response)[:-1].decode("utf-8"), response


def _cached_line(custom_id: str, response: str) -> bytes:
    """A Batch API output line for a request the cache answered: the response kept, as it
    was kept, under the request's own custom_id."""
    head = _dumps_line({"id": _cache_line_id(), "custom_id": custom_id})[:-1]
    return f'{head},"response":{response},"error":null}}\n'.encode("utf-8", "surrogatepass")


def _cache_line_id() -> str:
    return "batch_req_" + os.urandom(12).hex()


def _count(tally: dict[str, Any], ok: bool, reason: str) -> None:
    """Count one line of RESULTS."""
    tally["requests"] += 1
    tally["succeeded" if ok else "failed"] += 1
    if not ok:
        tally["failures"][reason] = tally["failures"].get(reason, 0) + 1


if TYPE_CHECKING:
    from typing import Protocol

    class _RoundDriver(Protocol):
        """How a job's rounds get their answers: the seam between the engine and a driver.
        The engine asks nothing else of a driver, and no caller asks which one runs."""

        def __init__(self, job: _Job) -> None: ...
        def busy(self) -> bool: ...  # a round is under way (a resumed job finishes it first)
        def plan(self, round_: int) -> bool: ...  # begin a round of what has no final result
        def drive(self) -> None: ...  # drive the round under way to its end
        def cancel(self) -> None: ...  # cancel what runs; start nothing more
        def progress(self) -> tuple[int, int, dict[str, int], dict[str, Any]]: ...
        def sources(self) -> tuple[list[_Segment], list[str], dict[str, list[str]]]: ...
        # batches made, tokens used, and answers that said no tokens (their cost not known)
        def totals(self) -> tuple[int, dict[str, int], int]: ...
        def kept(self) -> bool: ...  # its result files are all still in the folder
        def server_files(self) -> list[str]: ...  # to delete once RESULTS is written
        def local_files(self) -> list[str]: ...  # ... and from the job's folder
        def close(self) -> None: ...


#: The round drivers, by the mode a job records: each section that defines one adds it.
_DRIVERS: dict[str, Callable[[_Job], _RoundDriver]] = {}


class _Segment:
    """What the RESULTS writer reads for a run of requests in input order: the file that holds
    those requests, and the result files that answer them."""

    def __init__(self, requests: str, results: list[str], endings: list[str]) -> None:
        self.requests, self.results, self.endings = requests, results, endings


class _Job:
    """The engine of a job: the record and its lock, the rounds, RESULTS, the endings, the
    clean-up, the report and the events. A round driver answers each round's requests."""

    def __init__(
        self,
        client: Client,
        record: _Record,
        settings: dict[str, Any],
        on_event: Callable[[dict[str, Any]], object] | None,
        prices: _Prices | None = None,
        cap: _CostCap | None = None,
    ) -> None:
        self.client, self.record, self.settings = client, record, settings
        self.on_event = on_event
        self.prices = _Prices() if prices is None else prices
        self.cap = cap
        self.capped: float | None = None  # the worst case of the work the cap kept back
        self.left = 0.0  # ... and of the requests RESULTS, as last written, has no result for
        self.unsent = 0  # ... those requests, copies (of a sieved job) aside
        # Under a cap, what work of unknown cost may have cost, at its worst: answers that
        # said no tokens, and (direct) requests in flight when a run was killed.
        self.unpriced = 0.0
        self.clock, self.sleep = client._transport.clock, client._transport.sleep
        self.began = self.clock()  # in this process, for the pace and the time left
        self.done_before: int | None = None
        self.driver: _RoundDriver = _DRIVERS[record.data["mode"]](self)

    @property
    def data(self) -> _JobRecord:
        return self.record.data

    @property
    def source(self) -> str:
        """The file of requests the driver sends: the input, or what the sieve kept of it."""
        sieved = self.data.get("sieved")
        return self.record.path(sieved["send"]) if sieved else self.data["input"]

    @property
    def to_send(self) -> int:
        """How many requests the driver sends: the input's, less the sieve's."""
        sieved = self.data.get("sieved")
        return int(sieved["to_send"]) if sieved else self.data["requests"]

    def event(self, kind: str, **facts: Any) -> None:
        if self.on_event is not None:
            self.on_event({"event": kind, **facts, "progress": self.progress()})

    def progress(self) -> dict[str, Any]:
        """Where the job stands, in the same shape whatever drives it: requests by outcome
        (one whose failure may pass on a later round is pending), the work under way, tokens
        and what they cost, the time since it began and, from the pace so far, the time left."""
        data = self.data
        succeeded, failed, usage, work = self.driver.progress()
        done = succeeded + failed
        pending = self.to_send - done
        if self.done_before is None:
            self.done_before = done
        elapsed = max(self.clock() - self.began, 1e-3)
        rate = (done - self.done_before) / elapsed
        left = round(pending / rate, 1) if rate > 0 and pending else None
        requests = {"succeeded": succeeded, "failed": failed, "pending": pending}
        sieved = data.get("sieved")
        if sieved:  # answered without being sent: counted apart, and never pending
            requests.update(cached=sieved["cache_hits"], deduplicated=sieved["deduplicated"])
        return {
            "round": data["round"],
            "rounds": self.settings["rounds"],
            "requests": requests,
            "work": work,
            "usage": usage,
            "spend": self.spend(usage),
            "per_second": round(rate, 1),
            "left": left,
            "elapsed": round(max(self.clock() - data["started"], 0.0), 3),
        }

    def spend(self, usage: Mapping[str, int]) -> dict[str, Any]:
        """What the tokens so far cost. Usage is known by batch (or by answer), not by model,
        and a batch runs one model: the input's, which validation checked is one."""
        spend = _spend(self.prices, self.data.get("model"), usage)
        if self.cap is not None:
            spend["max_cost"] = self.cap.limit
        return spend

    def run(self) -> None:
        """Rounds until every request has a final result, then RESULTS, then the clean-up."""
        data = self.data
        ended = (_JobStatus.WRITTEN.value, _JobStatus.FINISHED.value)
        if data["status"] in ended and not os.path.exists(data["output"]):
            if not self.kept():
                raise OpenAIError(
                    f"{data['output']} was written and has since been removed, and the job's "
                    f"files went with its end; remove {self.record.folder} to run it again"
                )
            self.write()  # again, from the job's files: nothing is sent
        elif data["status"] in ended:
            self.event("already_written", output=data["output"])
        sieving = data.get("dedupe") or data.get("cache")
        if sieving and "sieved" not in data and data["status"] == _JobStatus.RUNNING.value:
            _Sieve(self).run()  # the first step, before any request is sent
        try:
            while data["status"] not in ended:
                if self.capped is not None:
                    self.stop_at_cap()
                if self.driver.busy():
                    self.driver.drive()
                elif (
                    data["status"] == _JobStatus.CANCELLING.value
                    or data["round"] >= self.settings["rounds"]
                    or (data["round"] and not self.progress()["requests"]["pending"])
                    or not self.driver.plan(data["round"] + 1)
                ):
                    self.write()
        finally:
            self.driver.close()
        if data["status"] == _JobStatus.WRITTEN.value:
            self.finish()

    def at_cap(self, worst: float) -> None:
        """The next piece of work, whose worst case is ``worst``, would pass the cost cap: the
        job starts nothing more, and stops once what runs has ended (``stop_at_cap``)."""
        if self.capped is None:
            self.capped = worst
            assert self.cap is not None
            source = self.cap.price.source
            self.event("max_cost", max_cost=self.cap.limit, worst=round(worst, 6), prices=source)

    def stop_at_cap(self) -> NoReturn:
        """Write RESULTS with what the job has, each request not sent saying so, and stop:
        the job stays open, and a run with a higher cap sends the rest."""
        assert self.cap is not None
        left = self.write(final=False)
        report = self.report()
        spent = self.cap.spent(report.usage) + self.unpriced
        unsent = report.failures.get("max_cost", 0)
        copies = unsent - self.unsent  # of a sieved job: answered once their original is
        them = "copy of them" if copies == 1 else "copies of them"
        which = f" ({self.unsent:,} to send, {copies:,} {them})" if copies else ""
        unknown = (
            " (counting at its worst what was sent and whose cost is not known)"
            if self.unpriced
            else ""
        )
        raise JobStoppedError(
            f"the job stopped at its cost cap of {_usd_given(self.cap.limit)}, with "
            f"{_usd(spent)} spent at {self.cap.price.source}{unknown}: "
            f"{_plural(unsent, 'request')} with no result{which}, whose worst case is "
            f"{_usd(math.ceil(left * 100) / 100)} more. {self.data['output']} has what was "
            "done, and a line saying so for each of those; the job is kept, and run again with "
            "a higher cap it sends only those",
            "max_cost",
            report=report,
            needed=math.ceil((spent + left) * 100) / 100,
        )

    def cancel(self) -> None:
        """Cancel the job's running work, keeping what it has done, and start no more.

        The job then ends as soon as what runs has: RESULTS gets what arrived, and a line
        saying why for each request that got nothing.
        """
        if self.data["status"] != _JobStatus.RUNNING.value:
            return
        self.record.job(status=_JobStatus.CANCELLING.value, cancelled=True)

    # -- the end ------------------------------------------------------------------------------

    def write(self, final: bool = True) -> float:
        """RESULTS, atomically: one line per request, in input order, each the line the
        server wrote, byte for byte; or, for a request with none, a line saying why. A job
        that was sieved fans the answers out to the requests that were not sent (see
        ``_Sieve.write``); with a cache, the successes are added to it on the way. Unless
        ``final`` (a job stopped at its cost cap), the job stays open; what is returned is
        the worst case of the requests with no result, under a cap (0.0 otherwise).
        """
        tally = self.with_cache() if self.data.get("cache") else self.lines_into(None)
        seconds = self.clock() - self.data["started"]
        batches, usage, unpriced = self.driver.totals()
        status = _JobStatus.WRITTEN.value if final else self.data["status"]
        self.record.job(
            status=status,
            tally=tally,
            seconds=seconds,
            batches=batches,
            usage=usage,
            unpriced=unpriced,
        )
        self.event("written", output=self.data["output"])
        return self.left

    def with_cache(self) -> dict[str, Any]:
        """RESULTS written, its successes added to the job's cache. A cache that cannot be
        opened or written does not keep RESULTS from the answers, which are paid for: RESULTS
        is written without it, and a ``"cache_failed"`` event says why."""
        import sqlite3

        path = self.data["cache"]
        assert path is not None
        try:
            cache = _Cache(path)
        except (OpenAIError, sqlite3.Error) as exc:
            error: BaseException = exc
        else:
            try:
                return self.lines_into(cache)
            except sqlite3.Error as exc:
                error = exc
            finally:
                cache.db.close()
        self.event("cache_failed", cache=path, error=str(error))
        return self.lines_into(None)

    def lines_into(self, cache: _Cache | None) -> dict[str, Any]:
        """RESULTS' lines written, atomically, and counted; with a cache, added to it."""
        tally: dict[str, Any] = {"requests": 0, "succeeded": 0, "failed": 0, "failures": {}}
        self.left, self.unsent = 0.0, 0
        with _AtomicFile(self.data["output"]) as out:
            answered = self.answered()
            if cache is not None and self.data.get("sieved"):
                answered = self.kept_in(cache, answered)
            if self.data.get("sieved"):
                _Sieve(self).write(answered, out.file, tally)
            for _, _, text, ok, reason in answered:  # all of it, or what the sieve left:
                _count(tally, ok, reason)  # nothing, but the cache's last rows go in now
                out.file.write(text)
        sieved = self.data.get("sieved")
        if cache is not None and sieved:  # a row for the job, however often it is written
            job, model = self.data["job"], self.data.get("model")
            cache.hits(job, model, sieved["cache_hits"], sieved["hit_usage"], self.clock())
        return tally

    def answered(self) -> Iterator[_Answered]:
        """The sent requests' lines for RESULTS, in the order they were sent: for each, its
        custom_id, its request line, its line (the server's, byte for byte, or one saying why
        it has none), whether it succeeded and, if not, why in a word.

        The driver gives the requests in runs (a first-round shard of a batch job), each with
        the result files that answer it; results of later rounds, which may be for any
        request, are indexed once. Memory holds the index of one run and of the retried
        requests, never the lines, and never the whole job.
        """
        segments, late, late_endings = self.driver.sources()
        later = _line_index(late)
        with _LineReader(late) as late_lines:
            for segment in segments:
                files = segment.results
                own = _line_index(files)
                with _LineReader(files) as lines:
                    for _, raw in _binary_lines(segment.requests):
                        if not raw.strip():
                            continue
                        request = json.loads(raw)  # the input was validated
                        custom_id = request["custom_id"]
                        place, newer = own.pop(custom_id, None), later.pop(custom_id, None)
                        reader: _LineReader | None = lines
                        if newer is not None and _supersedes(
                            None if place is None else bool(place & 1), bool(newer & 1)
                        ):
                            place, reader = newer, late_lines
                        if place is None or reader is None:
                            endings = segment.endings + late_endings.get(custom_id, [])
                            error = self.no_result(endings)
                            line = {"id": None, "custom_id": custom_id, "response": None}
                            line["error"] = error
                            text = _dumps_line(line).encode("utf-8") + b"\n"
                            if self.cap is not None:  # what sending it would cost, at worst
                                self.left += self.cap.worst(request["url"], request["body"])
                                self.unsent += 1
                            yield custom_id, raw, text, False, error["code"]
                        else:
                            text, ok = reader.at(place >> 1), bool(place & 1)
                            reason = "" if ok else _failure_reason(text)
                            yield custom_id, raw, text, ok, reason

    def kept_in(self, cache: _Cache, answered: Iterator[_Answered]) -> Iterator[_Answered]:
        """``answered``, its successes added to ``cache`` on the way, a transaction each
        ``_CACHE_ROWS``.

        They are added as RESULTS is written, not as they arrive: then each request has its
        one final line whichever driver answered it and however often it was sent, and both
        drivers add the same way. A kill before RESULTS is renamed into place loses nothing:
        the next run writes RESULTS again, and what was added already is left as it is.
        """
        model, url, now = self.data.get("model"), self.data["endpoint"], self.clock()
        rows: list[tuple[Any, ...]] = []
        decoder = json.JSONDecoder()
        with open(self.record.path("send.keys"), "rb") as keys:  # the sieve's, in sent order
            for answer in answered:
                key, ok = keys.read(32), answer[3]
                if ok:
                    kept, response = _response_of(answer[2], decoder)
                    usage = _usage_in(response.get("body"))
                    tokens = [usage.get(name, 0) for name in _TOKEN_NAMES]
                    rows.append((key, url, model, kept, *tokens, now))
                    if len(rows) >= _CACHE_ROWS:
                        cache.add(rows)
                        rows = []
                yield answer
        cache.add(rows)

    def kept(self) -> bool:
        """The job's files are all still in its folder: RESULTS can be written again."""
        sieved = self.data.get("sieved")
        files = _Sieve.FILES if sieved else ()
        return self.driver.kept() and all(os.path.exists(self.record.path(f)) for f in files)

    def no_result(self, endings: list[str]) -> dict[str, str]:
        """Why a request has no result, from how the work it was sent in ended."""
        said = []
        for status, what in (
            ("expired", "its batch expired"),
            ("cancelled", "its batch was cancelled"),
            ("failed", "its batch failed"),
            ("completed", "its batch completed without a line for it"),
        ):
            count = sum(ending.split(":", 1)[0] == status for ending in endings)
            if count:
                said.append(f"{what} {_times(count)}")
        errors = [ending.split(":", 1)[1] for ending in endings if ":" in ending]
        if errors:
            said.append(f"the batch said: {errors[-1]}")
        last = endings[-1].split(":", 1)[0] if endings else "completed"
        if self.capped is not None and last != "failed":
            assert self.cap is not None
            code = "max_cost"
            limit = _usd_given(self.cap.limit)
            said = [f"the job stopped at its cost cap of {limit} before it had one"]
        elif self.data.get("cancelled"):
            code = "job_cancelled"
            said.append("the job was cancelled")
        elif last == "failed":
            code = "batch_failed"
            said.append("a batch that fails validation is not sent again; fix what it says")
        else:
            code = "no_result" if last in ("completed", "not_started") else f"batch_{last}"
            rounds = _plural(self.data["round"], "round")
            said.append(f"the job was out of rounds after {rounds}")
        return {"code": code, "message": "no result: " + "; ".join(said)}

    def finish(self) -> None:
        """Delete the job's files from the server, and from its folder what a rerun does not
        need, once RESULTS is safe on disk (unless ``keep_files``)."""
        if self.settings["keep_files"]:
            return
        cleaned, left = set(self.data["cleaned"]), 0
        deleted: list[str] = []
        for file_id in self.driver.server_files():
            if file_id in cleaned:
                continue
            try:
                self.client.files.delete(file_id)
            except NotFoundError:
                pass  # gone already: expired, or deleted by a run that was killed
            except APIError as exc:  # RESULTS is safe: the next run deletes it
                self.event("clean_up_failed", file_id=file_id, error=str(exc))
                left += 1
                continue
            deleted.append(file_id)
        # One step for all: a kill before it only makes the next run delete them again.
        self.record.job(cleaned=self.data["cleaned"] + deleted, left=left)
        if left:
            return
        self.record.job(status=_JobStatus.FINISHED.value)
        sieved = _Sieve.FILES if self.data.get("sieved") else ()
        for name in [*self.driver.local_files(), *sieved]:
            _remove_quietly(self.record.path(name))

    def report(self) -> JobReport:
        """The job's report, from its RESULTS and its record."""
        data = self.data
        seconds = data.get("seconds", self.clock() - data["started"])
        report = JobReport(data["output"], rounds=data["round"], seconds=seconds)
        tally = data["tally"]  # counted as RESULTS was written
        report.requests, report.succeeded = tally["requests"], tally["succeeded"]
        report.failed, report.failures = tally["failed"], dict(tally["failures"])
        report.files_left = data.get("left", 0)
        report.batches, report.usage = data["batches"], dict(data["usage"])
        spend = self.spend(report.usage)
        report.model = data.get("model")
        report.cost, report.prices, report.cost_note = spend["cost"], spend["prices"], spend["note"]
        report.standard_cost, report.standard_prices = (
            spend["standard_cost"],
            spend["standard_prices"],
        )
        if data.get("sieved"):
            report.cache_hits, report.deduplicated = tally["cache_hits"], tally["deduplicated"]
            report.saved = self.spend(tally["saved_usage"])["cost"]
        report.unpriced = data.get("unpriced", 0)
        if report.unpriced:  # the amounts leave those answers out: say so, and no saving
            report.cost_note = (
                f"{_plural(report.unpriced, 'answer')} said no tokens, so what they cost is "
                "not known, and not counted"
            )
            report.saved = None
        return report


def _failure_reason(line: bytes) -> str:
    """Why a request failed, in a word for the report: the HTTP status of the answer it got,
    or, with none, the error's code."""
    result = BatchResult.from_dict(json.loads(line))
    if result.status_code is not None:
        return f"HTTP {result.status_code}"
    return (result.error.code if result.error else None) or "no_result"


class _BatchRounds:
    """Drives a job's rounds through the Batch API: each round's requests cut into shards, each
    a batch, started under the active and token budgets, polled, and their results kept."""

    mode = "Batch API"

    def __init__(self, job: _Job) -> None:
        self.job, self.record, self.client = job, job.record, job.client
        self.settings = job.settings
        self.endpoint = job.data["endpoint"]
        self.backoff = _Backoff(self.settings["poll_interval"] or _FIRST_POLL)
        self.outage = _Outage(job.clock, _MAX_OUTAGE, _FIRST_ANSWER_WAIT)
        import collections

        # Kept as the shards move, so that a step costs the same in a job of ten thousand
        # shards as in one of ten: the queue, the running shards (a dict: an ordered set) and
        # the tokens they hold, and their requests done so far, from their request_counts.
        self.live: dict[int, int] = {}
        self.live_done = 0
        self.queued: collections.deque[int] = collections.deque()
        self.running: dict[int, None] = {}
        self.held = 0
        self.cancelled: set[int] = set()  # running shards whose cancel this run has sent
        self.ceiling: int | None = None  # tokens in flight at the last collision
        self.clean = 0  # batches ended well since
        self.succeeded = self.failed = 0
        self.usage: dict[str, int] = {}
        self.worsts: dict[str, float] = {}  # each shard's worst case, under a cost cap
        self.looked_up = False  # under a cap: the shards whose create may have gone out
        self.ended = 0
        for number, shard in enumerate(self.record.shards):
            self.count(number, shard)
        self.budget: int | None = self.record.data.get("budget")
        wanted = self.settings["max_enqueued_tokens"]
        if self.record.data["settings"].get("max_enqueued_tokens") != wanted:
            self.budget = wanted  # the caller's new limit, rather than what an old one taught
            recorded = {**self.record.data["settings"], "max_enqueued_tokens": wanted}
            self.record.job(settings=recorded, budget=wanted)

    def count(self, number: int, shard: _ShardRecord) -> None:
        """Take a shard into the counts, as it is now."""
        if shard["status"] == _ShardStatus.QUEUED.value:
            self.queued.append(number)
        elif shard["status"] == _ShardStatus.RUNNING.value:
            self.run(number)
        else:
            self.ended += shard["status"] != _ShardStatus.SPLIT.value
            self.succeeded += shard.get("succeeded", 0)
            self.failed += shard.get("failed", 0)
            _added(self.usage, shard.get("usage") or {})
            if self.job.cap is not None and shard.get("succeeded") and not shard.get("usage"):
                self.job.unpriced += self.worst(number)  # its cost not known: at its worst

    def run(self, number: int) -> None:
        self.running[number] = None
        self.held += self.record.shards[number]["tokens"]

    def stop(self, number: int) -> None:
        """A running shard ended, or goes back to the queue."""
        del self.running[number]
        self.held -= self.record.shards[number]["tokens"]
        self.live_done -= self.live.pop(number, 0)

    def close(self) -> None:
        pass

    def progress(self) -> tuple[int, int, dict[str, int], dict[str, Any]]:
        done = self.live_done
        work = {
            "unit": "shard",
            "done": self.ended,
            "active": len(self.running),
            "queued": len(self.queued),
        }
        return self.succeeded + done, self.failed, dict(self.usage), work

    def busy(self) -> bool:
        return bool(self.queued or self.running)

    def kept(self) -> bool:
        return all(
            os.path.exists(self.record.path(name))
            for shard in self.record.shards
            for name in [shard["name"], *shard["files"]]
            if shard["status"] != _ShardStatus.SPLIT.value
        )

    def totals(self) -> tuple[int, dict[str, int], int]:
        usage: dict[str, int] = {}
        unpriced = 0
        for shard in self.record.shards:
            _added(usage, shard.get("usage") or {})
            unpriced += 0 if shard.get("usage") else shard.get("succeeded", 0)
        return sum(shard.get("made", 0) for shard in self.record.shards), usage, unpriced

    # -- rounds and shards --------------------------------------------------------------------

    def plan(self, round_: int) -> bool:
        """Cut the next round's shards: every request with no final result yet."""
        most_bytes = MAX_INPUT_BYTES if self.budget is None else max(1, self.budget * 4)
        limits = (
            self.settings["batch_size"],
            min(most_bytes, MAX_INPUT_BYTES),
            MAX_EMBEDDING_INPUTS,
        )
        shards: list[_Shard] = []
        embeddings = self.endpoint in (_EMBEDDINGS_URL, "/embeddings")  # Azure's, without /v1
        for line, data in self.pending(round_ > 1 or embeddings):
            inputs = _embedding_inputs(data["body"]) if embeddings and data else 0
            if not shards or not shards[-1].fits(len(line), inputs, limits):
                if shards:
                    shards[-1].commit()
                name = f"r{round_}-{len(shards) + 1:04d}.jsonl"
                shards.append(_Shard(self.record.path(name)))
            shards[-1].add(line, inputs)
        if shards:
            shards[-1].commit()
        job = self.record.data["job"]
        records: list[_ShardRecord] = []
        for number, shard in enumerate(shards, 1):
            record: _ShardRecord = {
                "name": os.path.basename(shard.path),
                "order": f"{number:010d}",
                "round": round_,
                "requests": shard.requests,
                "tokens": _estimate_tokens(shard.bytes),
                "key": f"job-{job}-r{round_}-s{number}",
                "tries": 0,
                "status": _ShardStatus.QUEUED.value,
                "file_id": None,
                "batch_id": None,
                "files": [],
            }
            records.append(record)
        if shards:
            self.add(records, round=round_)
            self.job.event("round", round=round_, shards=len(shards))
        return bool(shards)

    def add(self, shards: list[_ShardRecord], changed: int | None = None, **fields: Any) -> None:
        """Record new shards (and a change), and queue them."""
        first = len(self.record.shards)
        self.record.add(shards, changed, **fields)
        self.queued.extend(range(first, first + len(shards)))

    def pending(self, read: bool) -> Iterator[tuple[bytes, dict[str, Any] | None]]:
        """The request lines with no final result, in input order; parsed if ``read`` (the
        first round's go as they are, unread)."""
        if self.record.data["round"] == 0:
            for _, raw in _binary_lines(self.job.source):
                if raw.strip():
                    line = raw if raw.endswith(b"\n") else raw + b"\n"
                    yield line, json.loads(line) if read else None
            return
        segments, late, endings = self.sources()
        later = _line_index(late)
        for segment in segments:
            if segment.endings and segment.endings[0].startswith("failed"):
                continue  # failed validation: it would fail the same way again
            own = _line_index(segment.results)
            for _, raw in _binary_lines(segment.requests):
                data = json.loads(raw)
                custom_id = data["custom_id"]
                place, newer = own.pop(custom_id, None), later.pop(custom_id, None)
                if newer is not None and _supersedes(
                    None if place is None else bool(place & 1), bool(newer & 1)
                ):
                    place, files = newer, late
                else:
                    files = segment.results
                failed = any(e.startswith("failed") for e in endings.get(custom_id, []))
                if not failed and (place is None or not self.final(files, place)):
                    yield (raw if raw.endswith(b"\n") else raw + b"\n"), data

    def final(self, files: list[str], place: int) -> bool:
        if place & 1:
            return True
        with _LineReader(files) as lines:
            return not _may_pass(BatchResult.from_dict(json.loads(lines.at(place >> 1))))

    def sources(self) -> tuple[list[_Segment], list[str], dict[str, list[str]]]:
        """The first round's shards in input order, each with its result files; the later
        rounds' result files; and for each request of a later round, how its batches ended."""
        segments: list[_Segment] = []
        late: list[str] = []
        endings: dict[str, list[str]] = {}
        first = sorted(
            (s for s in self.record.shards if s["round"] == 1 and s["status"] != "split"),
            key=lambda s: s["order"],
        )
        for shard in first:
            files = [self.record.path(name) for name in shard["files"]]
            segments.append(_Segment(self.record.path(shard["name"]), files, _ending(shard)))
        for shard in self.record.shards:
            if shard["round"] == 1 or shard["status"] == "split":
                continue
            late += [self.record.path(name) for name in shard["files"]]
            if shard.get("results", 0) < shard["requests"]:
                for data in read_jsonl(self.record.path(shard["name"])):
                    endings.setdefault(data["custom_id"], []).extend(_ending(shard))
        return segments, late, endings

    # -- submitting and polling ---------------------------------------------------------------

    def drive(self) -> None:
        """Start queued shards within the budgets, poll the running ones, until none is left.

        The pauses between polls grow while nothing ends, and start again when one does.
        """
        cancelling = self.record.data["status"] == _JobStatus.CANCELLING.value
        while self.queued or self.running:
            if cancelling:
                self.cancel()  # each pass, until every batch the job may have made is asked
            while self.queued and not cancelling and self.room_for(self.queued[0]):
                if not self.affords() or not self.start(self.queued[0]):
                    break
            if not self.running and (not self.queued or self.job.capped is not None):
                return
            ended = self.ended
            for number in list(self.running):
                self.check(number)
            if cancelling and not self.running and not self.queued:
                return
            if self.queued or self.running:
                self.job.event("progress")
                if self.ended != ended:
                    self.backoff.reset()
                self.job.sleep(self.backoff.next())

    def room_for(self, number: int) -> bool:
        if not self.running:
            return True  # one shard at a time always goes, whatever the budget
        if len(self.running) >= self.settings["max_active"]:
            return False
        tokens = self.record.shards[number]["tokens"]
        return self.budget is None or self.held + tokens <= self.budget

    def worst(self, number: int) -> float:
        """A shard's worst case under the cost cap, read from its file once."""
        name = self.record.shards[number]["name"]
        if name not in self.worsts:
            assert self.job.cap is not None
            self.worsts[name] = self.job.cap.worst_of(self.record.path(name))
        return self.worsts[name]

    def affords(self) -> bool:
        """Whether the next queued shard may start under the cost cap, with what runs.

        One that does not fit waits while others run, since they may end under their worst
        case. With nothing running it is cut in halves until the first fits; a single request
        that does not fit stops the job starting work. A shard whose create may have gone out
        is looked up first: a batch found runs, and is waited for.
        """
        import functools

        cap = self.job.cap
        if cap is None:
            return True
        if not self.looked_up:  # a batch they made runs, and holds its worst case
            self.looked_up = self.look_up()
            if not self.looked_up:
                return False
        while self.job.capped is None and self.queued:
            number = self.queued[0]
            shard, worst = self.record.shards[number], self.worst(number)
            held = sum(self.worst(running) for running in self.running)
            if cap.fits(cap.spent(self.usage) + self.job.unpriced, held, worst):
                return True
            if self.running:
                return False
            sent = shard.get("sent")
            if sent == _shard_key(shard):
                looked = self.call("create", functools.partial(self.made_with, sent))
                if looked is None:
                    return False  # looked up again on the next pass
                self.adopt(number, looked[0])
                if looked[0] is not None:
                    return False
                continue
            if shard["requests"] == 1:
                self.job.at_cap(worst)
            else:
                self.split(number)
                self.queued.rotate(2)  # its halves, from the back of the queue to the front
        return False

    def look_up(self) -> bool:
        """Look up each queued shard whose create may have gone out (a run killed in it):
        its batch, found, runs. False if the server did not answer, to look again."""
        import functools

        for number in list(self.queued):
            shard = self.record.shards[number]
            sent = shard.get("sent")
            if sent and sent == _shard_key(shard):
                looked = self.call("create", functools.partial(self.made_with, sent))
                if looked is None:
                    return False
                self.adopt(number, looked[0])
        return True

    def adopt(self, number: int, found: Batch | None) -> None:
        """A queued shard whose create may have gone out, looked up: its batch, found, runs;
        with none, no create went out."""
        shard = self.record.shards[number]
        if found is not None:
            shard["batch_id"], shard["status"] = found.id, _ShardStatus.RUNNING.value
            shard["made"] = shard.get("made", 0) + 1
            self.queued.remove(number)
            self.run(number)
        else:
            shard["sent"] = None
        self.record.shard(number)

    def call(self, what: str, make: Callable[[], _T]) -> _T | None:
        """A call of the Batch API, its outage ridden out: None after a failure that is the
        server's (no answer, a 5xx, a 429), to be tried again on the next pass, until the
        server has not answered for too long; then the job stops, to be run again."""
        try:
            made = make()
        except (
            APIConnectionError,
            InternalServerError,
            RateLimitError,
            APIResponseValidationError,  # a proxy's page in place of the API's answer
        ) as exc:
            if isinstance(exc, RateLimitError) and exc.code == "insufficient_quota":
                raise JobStoppedError(
                    f"the account is out of quota ({exc.message}); the job keeps what it has: "
                    "add credit, then run it again",
                    "quota",
                ) from exc
            if isinstance(exc, OutcomeUnknownError):
                if exc.idempotency_key is None:
                    raise  # no key the batch would carry: no second try can tell
            elif isinstance(exc, APIConnectionError) and not exc._retryable:
                raise  # sending again cannot help (a certificate is not trusted)
            if not self.outage.down():
                what = "answered only errors" if isinstance(exc, APIStatusError) else "not answered"
                raise JobStoppedError(
                    f"the server has {what} for {self.outage.seconds:.0f} s ({exc}); the job "
                    "keeps what it has: run it again to resume",
                    "outage",
                ) from exc
            self.job.event("server_trouble", what=what, error=str(exc))
            return None
        self.outage.up()
        return made

    def start(self, number: int) -> bool:
        """Upload a shard (again, if a kill lost the record) and create its batch by its key;
        False if the server did not answer, to be tried again."""
        shard = self.record.shards[number]
        if shard["file_id"] is None:
            path = self.record.path(shard["name"])
            upload = self.call(
                "upload", lambda: self.client.files.create(file=path, purpose="batch")
            )
            if upload is None:
                return False
            shard["file_id"] = upload.id
            self.record.shard(number)
            self.job.event("uploaded", shard=shard["name"], file_id=upload.id)
        key = _shard_key(shard)
        never_sent = shard.get("sent") != key
        if never_sent:  # recorded first: a kill after this line may leave a batch to find
            shard["sent"] = key
            self.record.shard(number)
        file_id = shard["file_id"]
        assert file_id is not None
        batch = self.call(
            "create",
            lambda: self.client.batches.create(
                input_file_id=file_id,
                endpoint=self.endpoint,
                idempotency_key=key,
                metadata={"openai_batch_job": self.record.data["job"]},
                _never_sent=never_sent,
            ),
        )
        if batch is None:
            return False
        shard["batch_id"], shard["status"] = batch.id, _ShardStatus.RUNNING.value
        shard["made"] = shard.get("made", 0) + 1
        self.record.shard(number)
        self.queued.remove(number)
        self.run(number)
        self.job.event("created", shard=shard["name"], batch_id=batch.id)
        return True

    def check(self, number: int) -> None:
        """Poll a running shard's batch; once it has ended, keep its results."""
        import functools

        shard = self.record.shards[number]
        batch_id = shard["batch_id"]
        assert batch_id is not None
        batch = self.call("poll", lambda: self.client.batches.retrieve(batch_id))
        if batch is None:
            return
        counts = batch.request_counts
        if isinstance(counts, BatchRequestCounts):
            done = counts.completed or 0
            self.live_done += done - self.live.get(number, 0)
            self.live[number] = done
        if not batch.is_terminal:
            return
        if batch.status == "failed" and any(
            error.code == "token_limit_exceeded" for error in _error_list(batch)
        ):
            self.requeue(number)
            return
        names, server_files = [], []
        for file_id, kind in ((batch.output_file_id, "output"), (batch.error_file_id, "errors")):
            if file_id:
                name = f"{batch.id}_{kind}.jsonl"
                fetch = functools.partial(self.download, file_id, self.record.path(name))
                try:
                    if self.call("download", fetch) is None:
                        return  # polled again, and fetched again, on the next pass
                except NotFoundError:  # expired or deleted: its requests go again next round
                    shard.setdefault("errors", []).append(f"its {kind} file {file_id} is gone")
                else:
                    names.append(name)
                server_files.append(file_id)  # deleted at the end, should it be there after all
        shard["files"] += names
        shard["server_files"] = shard.get("server_files", []) + server_files
        shard["results"], shard["succeeded"], shard["failed"], lines = self.tally(names)
        # A server that fills no batch usage (llama-stack) still gives each line's.
        usage = _usage_of(batch)
        shard["status"] = _text(batch.status)
        shard["usage"] = usage if any(usage.values()) or not lines else lines
        if batch.status == "failed":
            shard["errors"] = _batch_errors(batch)[:_SHOWN_ERRORS]
        self.record.shard(number)
        self.stop(number)
        self.count(number, shard)
        if self.budget is not None and shard["status"] == _ShardStatus.COMPLETED.value:
            self.grow(shard["tokens"])
        self.job.event("ended", shard=shard["name"], batch_id=batch.id, status=_text(batch.status))

    def grow(self, tokens: int) -> None:
        """The budget a collision cut grows back as batches end without one: a shard's worth
        for each budget's worth of batches that end (so by one shard a "window", as a direct
        job's concurrency does), up to the caller's limit. It stays under the level that
        collided until ``_CLEAN_ENDS`` batches have ended well since, so that it does not
        trip the limit again at once."""
        assert self.budget is not None
        self.clean += 1
        if self.ceiling is not None and self.clean >= _CLEAN_ENDS:
            self.ceiling = None
        wanted = self.settings["max_enqueued_tokens"]
        grown = self.budget + max(1, tokens * tokens // self.budget)
        if self.ceiling is not None:
            grown = min(grown, max(self.ceiling - 1, self.budget))
        self.budget = grown if wanted is None else min(grown, wanted)
        self.record.job(budget=self.budget)

    def download(self, file_id: str, path: str) -> bool:
        with self.client.files.content(file_id) as content:
            content.write_to_file(path)
        return True

    def tally(self, names: list[str]) -> tuple[int, int, int, dict[str, int]]:
        """A shard's results: how many, how many succeeded, how many failed for good, and the
        tokens their lines say they used."""
        results = succeeded = failed = 0
        usage: dict[str, int] = {}
        for name in names:
            for result in iter_results(self.record.path(name)):
                results += 1
                succeeded += result.ok
                failed += not result.ok and not _may_pass(result)
                if result.ok:
                    _added(usage, _usage_in(result.body))
        return results, succeeded, failed, usage

    def requeue(self, number: int) -> None:
        """A batch over the enqueued-token limit: not its requests' failure. It goes again
        once another ends, and the job keeps fewer tokens in flight until batches end well."""
        shard = self.record.shards[number]
        others = len(self.running) - 1
        held = self.held - shard["tokens"]
        if others:
            self.budget = held if self.budget is None else min(self.budget, held)
            self.ceiling, self.clean = self.held, 0  # what collided
            self.record.job(budget=self.budget)
        alone = shard.get("alone", 0) + (not others)
        shard["status"], shard["batch_id"] = _ShardStatus.QUEUED.value, None
        shard["tries"], shard["alone"] = shard["tries"] + 1, alone
        self.stop(number)
        if alone and shard["requests"] > 1:
            self.split(number)  # over the limit with nothing of ours running: too big
        elif alone > _ALONE_TRIES:
            shard["status"] = _ShardStatus.FAILED.value
            shard["errors"] = [
                f"token_limit_exceeded: over the enqueued-token limit {alone} times with no "
                "other batch of this job running; the limit is too low for this request, or "
                "other work holds it"
            ]
            self.record.shard(number)
            self.count(number, shard)
        else:
            self.record.shard(number)
            self.queued.appendleft(number)
        self.job.event("over_token_limit", shard=shard["name"], budget=self.budget)
        if not others and shard["status"] == _ShardStatus.QUEUED.value:
            self.job.sleep(_MAX_POLL)  # others' batches may hold the queue

    def split(self, number: int) -> None:
        """Cut a shard that is over the token limit on its own into two new shards, recorded
        with the split in one step: a kill before it leaves the shard to be cut again."""
        shard = self.record.shards[number]
        half = shard["requests"] // 2
        stem = shard["name"][: -len(".jsonl")]
        parts: list[_ShardRecord] = []
        with open(self.record.path(shard["name"]), "rb") as lines:
            for suffix, count in (("a", half), ("b", shard["requests"] - half)):
                name, size = f"{stem}{suffix}.jsonl", 0
                with _AtomicFile(self.record.path(name)) as out:
                    for _ in range(count):
                        line = lines.readline()
                        out.file.write(line)
                        size += len(line)
                parts.append(
                    {
                        **{"name": name, "round": shard["round"], "requests": count},
                        **{"order": shard.get("order", "") + suffix},
                        **{"tokens": _estimate_tokens(size), "key": shard["key"] + suffix},
                        **{"tries": 0, "status": "queued", "file_id": None, "batch_id": None},
                        "files": [],
                    }
                )
        shard["status"] = _ShardStatus.SPLIT.value
        self.add(parts, number)  # the halves and the split, in one step
        if number in self.queued:
            self.queued.remove(number)

    def cancel(self) -> None:
        """Cancel every batch the job may have made, and start no more shards.

        A queued shard whose create may have gone out (a kill, a Ctrl-C) is looked up by its
        key first, for as long as the batch list may lag: a batch found is cancelled like any
        running one. Only then is the shard marked not started. A lookup or a cancel that
        meets an outage is made again on the next pass; run again after a kill, the job goes
        on cancelling.
        """
        import functools

        for number in list(self.queued):
            shard = self.record.shards[number]
            sent = shard.get("sent")
            looked: list[Batch | None] | None = [None]
            if sent:
                looked = self.call("cancel", functools.partial(self.made_with, sent))
            if looked is None:
                continue  # the list could not be read: looked up again on the next pass
            if looked[0] is not None:
                self.adopt(number, looked[0])
                continue
            shard["status"] = _ShardStatus.NOT_STARTED.value
            self.count(number, shard)
            self.record.shard(number)
            self.queued.remove(number)
        for number in list(self.running):
            if number in self.cancelled:
                continue
            shard = self.record.shards[number]
            batch_id = shard["batch_id"]
            assert batch_id is not None
            if self.call("cancel", functools.partial(self.send_cancel, batch_id)) is not None:
                self.cancelled.add(number)
                self.job.event("cancelling", shard=shard["name"], batch_id=batch_id)

    def made_with(self, key: str) -> list[Batch | None]:
        return [self.client.batches._made_with(key, settle=True)]

    def send_cancel(self, batch_id: str) -> bool:
        try:
            self.client.batches.cancel(batch_id)
        except (ConflictError, NotFoundError):
            pass  # it ended on its own meanwhile: its results are kept all the same
        return True

    # -- the end ------------------------------------------------------------------------------

    def server_files(self) -> list[str]:
        return [
            file_id
            for shard in self.record.shards
            for file_id in [shard["file_id"], *shard.get("server_files", [])]
            if file_id
        ]

    def local_files(self) -> list[str]:
        return [name for shard in self.record.shards for name in [shard["name"], *shard["files"]]]


_DRIVERS[_BatchRounds.mode] = _BatchRounds


def _shard_key(shard: _ShardRecord) -> str:
    """The idempotency key a shard's next create goes with: a new one after each requeue."""
    return shard["key"] + (f"-t{shard['tries']}" if shard["tries"] else "")


def _ending(shard: _ShardRecord) -> list[str]:
    """How a shard ended, for the requests it has no line for: its status, with its batch's
    last error if it failed."""
    if shard.get("results", 0) >= shard["requests"]:
        return []
    errors = shard.get("errors") or []
    return [shard["status"] + (f":{errors[-1]}" if errors else "")]


def _run_job(
    client: Client,
    input: _PathLike,
    output: _PathLike,
    settings: dict[str, Any],
    on_event: Callable[[dict[str, Any]], object] | None,
    cancel: bool = False,
    mode: str = "Batch API",
    prices: Mapping[str, Any] | _Prices | None = None,
    dedupe: bool = False,
    cache: _PathLike | None = None,
) -> JobReport:
    """Begin, resume or cancel the job of ``output``; return its report once RESULTS is in.

    A job begun tells ``on_event`` first what it will cost (an ``"estimate"`` event: the
    ``InputEstimate``'s fields), before anything is sent."""
    cache_path = None if cache is None else os.path.abspath(cache)
    prices = prices if isinstance(prices, _Prices) else _Prices(prices)
    if mode == "direct":  # _DirectRounds.mode: requests sent one by one, at standard prices
        prices = prices.direct()
    clock = client._transport.clock
    input_path, output_path = os.path.abspath(input), os.path.abspath(output)
    if input_path == output_path or (
        os.path.exists(output_path) and os.path.samefile(input_path, output_path)
    ):
        raise _ArgumentError(
            f"the output is the input file ({input}): the results would overwrite the requests",
            setting="output",
        )
    if os.path.isdir(output_path):  # found now, not when the paid-for results are written
        raise _ArgumentError(
            f"the output is a folder ({output}): the results are one file, named in full",
            setting="output",
        )
    if not os.path.isdir(os.path.dirname(output_path)):
        raise FileNotFoundError(2, "No such folder for RESULTS", os.path.dirname(output_path))
    _check_settings(settings, _PROVIDERS[client._provider].max_requests)
    begin: dict[str, Any] = {}
    estimate: InputEstimate | None = None
    cap: _CostCap | None = None
    if not os.path.exists(os.path.join(output_path + ".job", "state.json")):
        if cancel:
            raise OpenAIError(f"there is no job to cancel in {output_path}.job")
        # Validated once, before anything is sent; a resumed job's input is checked by hash.
        summary = validate_input(
            input_path,
            max_requests=_NO_LIMIT,
            max_bytes=_NO_LIMIT,
            max_embedding_inputs=_NO_LIMIT,
            provider=client._provider,
            prices=prices,
        )
        begin = {"endpoint": summary.endpoint or "", "requests": summary.requests}
        begin.update(started=clock(), output=output_path, mode=mode, model=summary.model)
        begin.update(dedupe=bool(dedupe), cache=cache_path)
        if cache_path is not None:
            _Cache(cache_path).db.close()  # a cache that cannot be used is found now
        estimate = summary.estimate
        cap = _cost_cap(settings.get("max_cost"), prices, summary.model, input_path)
    record = _Record.open(output_path, input_path, settings, begin)
    try:
        if record.data["mode"] != mode:
            raise OpenAIError(
                f"the job in {record.folder} is a {record.data['mode']} job, not a {mode} one; "
                f"run it as it began, or remove {record.folder} to start again"
            )
        began = (record.data.get("dedupe", False), record.data.get("cache"))
        if not cancel and began != (bool(dedupe), cache_path):
            raise OpenAIError(
                f"the job in {record.folder} began with dedupe {'on' if began[0] else 'off'} "
                f"and {f'the cache {began[1]}' if began[1] else 'no cache'}; run it as it "
                f"began, or remove {record.folder} to start again"
            )
        if not begin:  # resumed: the cap is checked now, as one is when a job begins
            cap = _cost_cap(settings.get("max_cost"), prices, record.data.get("model"), input_path)
        job = _Job(client, record, settings, on_event, prices, cap)
        if estimate is not None:
            from dataclasses import asdict

            job.event("estimate", **asdict(estimate))
        if cancel:
            job.cancel()
        job.run()
        return job.report()
    finally:
        record.close()


###############################################################################################
# Direct rounds: the same batch file, straight to a server with no Batch API
###############################################################################################

_ANSWERS = "answers.jsonl"
_SPEND_LOG = "spend.jsonl"  # under a cost cap
_TICK = 0.5  # seconds between progress events and disk syncs; a worker's longest nap
_SLOW_DOWN = frozenset({429, 503})  # "too many requests", and Ollama's "server busy"
#: A request refused for the server being full (429, 503), or with no answer while the server
#: is down, is held back: the whole run pauses (1, 2, 4 ... 60 s, or as Retry-After asks) and
#: the request goes again; at most this often a round, so that one request that is always
#: refused (one larger than a tokens-per-minute limit) does not hold the job.
_MAX_HOLDS = 3
_GATEWAY = frozenset({502, 503, 504})  # a gateway's answers when the server behind it is not
_PROBE_TIMEOUT = 10.0  # seconds a probe of the server waits for any answer
#: The first answers all one of these, with no success: the wrong base URL or key, not the
#: requests; the run stops, sending nothing more and writing none of them.
_WRONG_PLACE = frozenset({401, 403, 404, 405}) | _REDIRECTS
_WRONG_PLACE_STOP = 3


def _names_model(error: APIError) -> bool:
    """Whether a 404 is about the model a request names, not the address it went to."""
    if not isinstance(error, APIStatusError) or error.status_code != 404:
        return False
    return error.code == "model_not_found" or "model" in error.message.lower()


class _DirectRounds:
    """Drives a job's rounds with no Batch API: each request POSTed straight to the server,
    at most ``concurrency`` at once, each answer appended to ``answers.jsonl`` as it arrives.

    A round sends every request with no final answer in that file, so a rerun after a kill
    sends only those. Every request is sent at most ``rounds * (max_retries + 1 + _MAX_HOLDS)``
    times over the whole job, reruns included: a round's failures are written, and a request
    whose failures fill its rounds is final, whatever round the job is in.
    """

    mode = "direct"

    def __init__(self, job: _Job) -> None:
        self.job, self.record, self.settings = job, job.record, job.settings
        self.answers: _Answers | None = None
        self.log: _SpendLog | None = None
        self.round: _DirectRound | None = None
        self.policy: _DirectPolicy | None = None
        self.cuts = 0  # the pacer's cuts already told of

    def open(self) -> _Answers:
        if self.answers is None:
            self.answers = _Answers(self.record.path(_ANSWERS), self.settings["rounds"])
        return self.answers

    def spend_log(self) -> _SpendLog | None:
        """Under a cost cap, the log of what is sent and what comes back, opened once a run:
        what it says may have been spent at worst is spent."""
        if self.job.cap is not None and self.log is None:
            self.log = _SpendLog(self.record.path(_SPEND_LOG))
            self.job.unpriced += self.log.unknown
        return self.log

    def close(self) -> None:
        if self.answers is not None:
            self.answers.close()
        if self.log is not None:
            self.log.close()

    def busy(self) -> bool:
        return False  # a round cut short by a kill is not recorded: planned again

    def kept(self) -> bool:
        return os.path.exists(self.record.path(_ANSWERS))

    def totals(self) -> tuple[int, dict[str, int], int]:
        answers = self.open()
        return 0, answers.counts()["usage"], answers.unpriced  # no batch: answers alone

    def progress(self) -> tuple[int, int, dict[str, int], dict[str, Any]]:
        live = self.record.data["status"] in (_JobStatus.RUNNING.value, "cancelling")
        counts = self.open().counts() if live else None
        tally = self.record.data.get("tally")
        if counts is None:  # written: from RESULTS' own count
            counted = (tally or {}).get("sent") or tally or {}  # what was sent, if sieved
            succeeded, failed = counted.get("succeeded", 0), counted.get("failed", 0)
            usage: dict[str, int] = dict(self.record.data.get("usage") or {})
        else:
            succeeded, failed, usage = counts["succeeded"], counts["failed"], counts["usage"]
        flight = self.round
        window = self.settings["concurrency"]
        active = 0
        if flight is not None:
            active, window = flight.pacer.in_flight, flight.pacer.window
        pending = self.job.to_send - succeeded - failed
        work = {
            "unit": "request",
            "done": succeeded + failed,
            "active": active,
            "queued": max(pending - active, 0),
            "limit": window,
        }
        return succeeded, failed, usage, work

    def plan(self, round_: int) -> bool:
        """A round: every request with no final answer yet, sent straight to the server.

        The round is recorded only once it is over, so that a round cut short by a kill is
        finished by the next run rather than counted.
        """
        answers = self.open()
        pending = self.job.to_send - len(answers.final)
        if pending <= 0:
            return False
        self.record.data["round"] = round_  # in memory, for the events: recorded once it is over
        self.job.event("round", round=round_, requests=pending)
        flight = _DirectRound(self, answers)
        self.fly(flight)
        if flight.capped is not None:  # cut short: the round is run again, with a higher cap
            self.job.at_cap(flight.capped)
            return True
        self.record.job(round=round_)
        return True

    def drive(self) -> None:
        pass  # never busy: each round is driven whole by plan()

    def fly(self, flight: _DirectRound) -> None:
        """Send the round's requests from ``concurrency`` threads; report and sync meanwhile."""
        import threading

        self.round = flight
        for _ in range(flight.workers):
            threading.Thread(target=flight.work, daemon=True).start()
        clock = self.job.clock
        tick = clock() + _TICK
        stopped: float | None = None
        try:
            # Woken often in real time, to end as soon as the round does; the ticks are on the
            # client's clock, as every other wait is. Once the round has stopped for good, the
            # requests still in flight get a second (of real time) to come back: their
            # answers are not waited for, and go again when the job is run again.
            while not flight.finished.wait(_TICK / 10):
                if flight.failure is not None:
                    stopped = stopped or time.monotonic()
                    if time.monotonic() - stopped > 1.0:
                        break
                if clock() < tick:
                    continue
                tick = clock() + _TICK
                flight.answers.sync()
                if flight.pacer.cuts > self.cuts:
                    self.cuts = flight.pacer.cuts
                    paused = max(flight.pacer.resume_at - clock(), 0.0)
                    self.job.event(
                        "slowed", concurrency=flight.pacer.window, paused=round(paused, 3)
                    )
                self.job.event("progress")
        finally:
            flight.stop()  # the workers take nothing more; what is in flight is sent again
            flight.answers.sync()
        if flight.failure is not None:
            raise flight.failure

    def cancel(self) -> None:
        pass  # nothing runs on the server between two runs

    def sources(self) -> tuple[list[_Segment], list[str], dict[str, list[str]]]:
        # No batch ran: a request with no answer was never sent (the job was cancelled).
        self.open()  # which cuts off a line a kill left half written
        answers = [self.record.path(_ANSWERS)]
        return [_Segment(self.job.source, answers, [])], [], {}

    def server_files(self) -> list[str]:
        return []

    def local_files(self) -> list[str]:
        return [_ANSWERS, _SPEND_LOG]


_DRIVERS[_DirectRounds.mode] = _DirectRounds


class _SpendLog:
    """Under a cost cap, a direct job's requests as they go and as they come back, a line
    each, flushed as written: ``["+", n, worst]``, then ``["-", n, unpriced]``.

    A request that went and never came back (the run was killed, or stopped without waiting
    for it) may have been billed though its answer was never written; one that came back
    with no tokens said cost an unknown amount. Both count as spent at their worst case, in
    this run and in every later one: the log is read when a run opens it, and written whole
    again as one line of that sum (``["=", usd]``), atomically.
    """

    def __init__(self, path: str) -> None:
        import itertools
        import threading

        self.unknown, out = 0.0, {}
        if os.path.exists(path):
            with open(path, "rb") as handle:
                for line in handle:
                    try:
                        kind, key, *rest = json.loads(line)
                    except ValueError:
                        break  # a line a kill cut short: nothing follows it
                    if kind == "=":
                        self.unknown += key
                    elif kind == "+":
                        out[key] = rest[0]
                    elif kind == "-":
                        self.unknown += out.pop(key, 0.0) if rest[0] else 0.0
                        out.pop(key, None)
        self.unknown += sum(out.values())
        with _AtomicFile(path) as whole:
            whole.file.write(_dumps_line(["=", self.unknown]).encode("utf-8") + b"\n")
        self.file = open(path, "ab")  # noqa: SIM115
        self.lock = threading.Lock()
        self.serial = itertools.count()

    def write(self, entry: list[Any]) -> None:
        with self.lock:
            if not self.file.closed:  # a request back after the run stopped: it counts then
                self.file.write(_dumps_line(entry).encode("utf-8") + b"\n")
                self.file.flush()

    def out(self, worst: float) -> int:
        number = next(self.serial)
        self.write(["+", number, worst])
        return number

    def back(self, number: int, unpriced: bool) -> None:
        self.write(["-", number, unpriced])

    def close(self) -> None:
        with self.lock:
            self.file.close()


class _Answers:
    """A direct job's answers: Batch API output lines, appended in the order they arrive.

    Each line is flushed as it is written, so a killed process loses none of them. The file is
    synced to disk every ``_TICK`` rather than after each line: a sync costs milliseconds, more
    than an answer takes at a thousand a second, and what it guards against is a crash of the
    whole machine, after which the unsynced answers' requests are simply sent again.
    """

    def __init__(self, path: str, rounds: int) -> None:
        import threading

        self.lock = threading.Lock()
        self.rounds = rounds
        self.final: set[str] = set()  # the custom_ids that are done: the only index kept
        self.failures: dict[str, int] = {}  # custom_id -> rounds it failed in a way that may pass
        self.succeeded = self.failed = self.added = 0  # added: lines this process wrote
        self.unpriced = 0  # successes that said no tokens
        self.usage: dict[str, int] = {}
        self.synced = True
        kept = 0
        if os.path.exists(path):
            with open(path, "rb") as handle:
                for line in handle:
                    if not line.endswith(b"\n"):
                        break  # a line a kill cut short
                    try:
                        result = BatchResult.from_dict(_parse_line(line, path, 0))
                    except ValueError:  # not a line: what a crash of the machine leaves
                        break
                    kept += len(line)
                    self.count(result, _usage_in(result.body))
        self.file = open(path, "ab")  # noqa: SIM115
        self.file.truncate(kept)  # the cut line, if any, and whatever follows it

    def count(self, result: BatchResult, usage: dict[str, int]) -> None:
        _added(self.usage, usage)
        self.unpriced += result.ok and not usage
        custom_id = result.custom_id
        if custom_id in self.final:
            return
        if result.ok or not _may_pass(result):
            final = True
        else:  # its rounds filled by failures: final too, whichever round the job is in
            self.failures[custom_id] = self.failures.get(custom_id, 0) + 1
            final = self.failures[custom_id] >= self.rounds
        if final:
            self.failures.pop(custom_id, None)
            self.final.add(custom_id)
            self.succeeded += result.ok
            self.failed += not result.ok

    def add(self, line: bytes, result: BatchResult, usage: dict[str, int]) -> None:
        with self.lock:
            if self.file.closed:
                return  # the run has stopped: the request goes again when the job resumes
            self.file.write(line)
            self.file.flush()
            self.synced, self.added = False, self.added + 1
            self.count(result, usage)

    def counts(self) -> dict[str, Any]:
        with self.lock:
            return {"succeeded": self.succeeded, "failed": self.failed, "usage": dict(self.usage)}

    def sync(self) -> None:
        """Sync the lines written so far to disk, letting more be written meanwhile."""
        with self.lock:
            if self.synced or self.file.closed:
                return
            self.synced = True
            descriptor = self.file.fileno()  # every line is flushed already
        os.fsync(descriptor)

    def close(self) -> None:
        self.sync()
        with self.lock:
            self.file.close()


class _WorkQueue:
    """A direct round's requests still to send: the input's lines with no final answer, in
    order, and the requests waiting for a retry, in a heap by when they are due, so that a
    wait never takes a thread. Every change wakes the workers waiting for work: a worker
    that has seen the end of the input waits only while something may still come back.
    Memory holds the requests in flight or waiting, never the input file.
    """

    def __init__(self, path: str, final: set[str], clock: Callable[[], float]) -> None:
        import itertools
        import threading

        self.path, self.final, self.clock = path, final, clock
        self.lines: Iterator[tuple[int, bytes]] | None = _binary_lines(path)
        self.due: list[tuple[float, int, _Send]] = []
        self.order = itertools.count()  # ties in the heap go first come, first served
        self.busy = 0  # requests taken and not yet done
        self.lock = threading.Condition()
        self.stopped = False

    def take(self, sleep: Callable[[float], None]) -> _Send | None:
        """The next request to send: a retry that is due, else the next line with no final
        answer; None once nothing is left, or the round has stopped."""
        import heapq

        while True:
            with self.lock:
                if self.stopped:
                    return None
                now = self.clock()
                if self.due and self.due[0][0] <= now:
                    self.busy += 1
                    return heapq.heappop(self.due)[2]
                if self.lines is not None:
                    line = next(self.lines, None)
                    if line is None:
                        self.lines = None
                        self.lock.notify_all()
                    else:
                        self.busy += 1
                        request = self.parse(*line)
                        if request is not None:
                            return request
                        self.busy -= 1
                        continue
                if not (self.busy or self.due):
                    return None  # nothing left, and nothing in flight may come back
                if not self.due:
                    self.lock.wait()  # for an answer in flight, which may bring a retry
                    continue
                nap = min(self.due[0][0] - now, _TICK)
            sleep(nap)

    def parse(self, number: int, raw: bytes) -> _Send | None:
        if not raw.strip():
            return None
        data = _parse_line(raw, self.path, number)
        if data["custom_id"] in self.final:
            return None
        return _Send(data, _estimate_tokens(len(raw)))

    def later(self, send: _Send, delay: float) -> None:
        """``send`` goes again in ``delay`` seconds."""
        import heapq

        with self.lock:
            heapq.heappush(self.due, (self.clock() + delay, next(self.order), send))
            self.lock.notify_all()

    def done(self) -> None:
        """A request taken is done with, answered or put back for later."""
        with self.lock:
            self.busy -= 1
            self.lock.notify_all()

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            self.lock.notify_all()


class _Send:
    """One request of a direct round, and what its sends so far met."""

    def __init__(self, data: dict[str, Any], tokens: int) -> None:
        self.data, self.tokens = data, tokens
        self.worst: float | None = None  # its cost at worst, held under a cost cap in flight
        self.flight = 0  # its number in the spend log, while in flight under a cap
        self.tries = 0  # retries taken, for the client's retry rules
        self.sends = 0  # sends this round
        self.sent = 0.0  # when it was last sent
        self.holds = 0
        self.statuses: list[int] = []  # what each send met: a status, or 0 for no answer

    @property
    def custom_id(self) -> str:
        return str(self.data["custom_id"])


class _DirectPolicy:
    """What a direct round does with an answer that is not a success: try the request again
    (and when), hold it while the server is down or full, write it as the request's own
    failure, or stop the round because the address, the key or the account is wrong.

    A failure is the request's own only when the server is seen at work: a success came back
    after this request was sent, or a probe (a GET of ``/models`` with the same key) gets an
    answer now. A failure with no answer, or a 5xx or 429, when neither is so, means the
    server is down or behind a gateway that cannot reach it: the request is held, the round
    pauses, and the outage clock runs (see ``_Outage``). Answers that say the address or the
    key is wrong are kept back, unwritten, until a success or a probe says otherwise.
    """

    def __init__(self, flight: _DirectRound, succeeded: bool) -> None:
        self.flight = flight  # the round under way
        self.outage = _Outage(flight.clock, _MAX_OUTAGE, _FIRST_ANSWER_WAIT)
        self.last_success: float | None = None
        self.succeeded = succeeded  # a success seen: the server and the key were right
        self.misplaced: dict[str, APIError] = {}  # the first wrong-place answers, by request
        self.parked: list[tuple[_Send, _Answer]] = []  # ... kept back, unwritten
        self.pauses = _Backoff(1.0, _MAX_POLL, factor=2.0)  # 1, 2, 4 ... 60 s, in a row
        self.probed: tuple[float, int, bool] | None = None  # when, its status, JSON or not

    def answered(self, status: int) -> None:
        """An answer came back: unless a gateway's, the server is at work."""
        if status not in _GATEWAY:
            self.outage.up()
        if 200 <= status < 300:
            self.last_success, self.succeeded = self.flight.clock(), True
            self.pauses.reset()

    def park(self, send: _Send, answer: _Answer) -> bool:
        """Whether ``send``'s failed answer is not to be written now: it says the address,
        the key or the account is wrong, which stops the round (the answer is dropped), or
        may be (it is kept back until a success or a probe says the server is right)."""
        status, error = answer[0], answer[3]
        assert error is not None
        stop = self.stop_for(error, status)
        if stop is not None:
            self.flight.give_up(stop)
            return True
        if self.succeeded:
            return False
        if status not in _WRONG_PLACE and not isinstance(error, APIResponseValidationError):
            return False
        flight = self.flight
        with flight.lock:
            self.misplaced.setdefault(send.custom_id, error)
            self.parked.append((send, answer))
            many = len(self.misplaced) >= min(_WRONG_PLACE_STOP, flight.requests_left())
            redirected = any(e.status_code in _REDIRECTS for e in self._statuses())
        if not many:
            return True
        if not redirected and self.probe()[1]:  # a GET with the same key works: the requests'
            self.succeeded = True  # own failures (an unknown model), to be written
            return True
        first = next(iter(self.misplaced.values()))
        why = (
            "the server does not know the model they name"
            if _names_model(first)
            else "the base URL (for vLLM, llama.cpp and Ollama it ends in /v1) or the key is "
            "not the server's"
        )
        flight.give_up(
            JobStoppedError(
                f"the first {len(self.misplaced)} requests all failed ({first.message}), "
                "and none succeeded, so nothing more was sent and none of them was "
                f"written: {why}",
                "address",
                first,
            )
        )
        return True

    def _statuses(self) -> list[APIStatusError]:
        return [e for e in self.misplaced.values() if isinstance(e, APIStatusError)]

    def stop_for(self, error: APIError, status: int) -> JobStoppedError | None:
        """The stop an answer calls for even after successes: an account out of quota; a
        redirect; a 401 or 403 once the key has worked, unless a probe with it still works
        (then the request alone is refused, as a model it may not use)."""
        if isinstance(error, APIStatusError) and error.code == "insufficient_quota":
            return JobStoppedError(
                f"the account is out of quota ({error.message}); nothing more was sent, "
                "and the answers so far are kept: add credit, then run the job again",
                "quota",
            )
        if not self.succeeded or not (status in (401, 403) or status in _REDIRECTS):
            return None
        if status not in _REDIRECTS and self.probe()[1]:
            return None
        what = "a redirect" if status in _REDIRECTS else f"HTTP {status}"
        return JobStoppedError(
            f"the server answered {what} ({error.message}) after answering requests "
            "before it: the key has changed or expired, or the address has moved. The "
            "answers so far are kept; with a good key and address, run the job again to "
            "send the rest",
            "credentials",
        )

    def unpark(self) -> list[tuple[_Send, _Answer]]:
        """The answers kept back, once the server is known to be the right one."""
        with self.flight.lock:
            parked, self.parked = self.parked, []
        return parked

    def decide(self, send: _Send, error: APIError, status: int, headers: _Headers) -> float | None:
        """Seconds until ``send`` goes again, or None to write its failure. (May stop the
        round.)"""
        flight = self.flight
        served = self.last_success is not None and self.last_success >= send.sent
        trouble = status == 0 or status >= 500 or status == 429
        if trouble and not served and not self.up():
            # Down: held for as long as the outage lasts, its sends not counted against it.
            if not self.outage.down():
                flight.give_up(self.stopped(error))
                return _TICK
            return self.hold(send, headers)
        delay = flight.transport.retry_delay(error, send.tries)
        if delay is not None:
            send.tries += 1
            return delay
        if status in _SLOW_DOWN and send.holds < _MAX_HOLDS:
            send.holds += 1
            return self.hold(send, headers)
        return None

    def up(self) -> bool:
        """Whether the server answers a probe now, and not as a gateway with nothing behind."""
        status = self.probe()[0]
        if status == 0 or status in _GATEWAY:
            return False
        self.outage.up()
        return True

    def probe(self) -> tuple[int, bool]:
        """A GET of ``/models`` with the request's key: its status (0 for no answer), and
        whether it worked (a 2xx with a JSON object, not a proxy's page). Kept for a second,
        so that many failing requests at once probe once."""
        now = self.flight.clock()
        held = self.probed
        if held is not None and now - held[0] < 1.0:
            return held[1], held[2]
        transport, status, works = self.flight.transport, 0, False
        try:
            response, connection, request = transport.respond(
                "GET",
                transport.url("/models"),
                transport.merged_headers(None),
                None,
                min(_PROBE_TIMEOUT, _phase(transport.timeout, "read") or _PROBE_TIMEOUT),
            )
            raw = transport.read_and_release(response, connection, request)
            status = response.status
            if 200 <= status < 300:
                try:
                    works = isinstance(json.loads(raw), dict)
                except ValueError:
                    works = False
        except APIConnectionError:
            pass
        self.probed = (now, status, works)
        return status, works

    def hold(self, send: _Send, headers: _Headers) -> float:
        """Hold ``send`` back, and pause the whole round: the server is down or full."""
        now = self.flight.clock()
        asked = _retry_after(headers, now) if headers else None  # type: ignore[arg-type]
        pacer = self.flight.pacer
        # A new pause is longer than the last, if in a row; a request held during one, no.
        grown = self.pauses.next() if now >= pacer.resume_at else self.pauses.pause
        pause = min(max(asked if asked is not None else grown, 0.0), _MAX_OUTAGE)
        if self.outage.since is not None:  # no longer than the outage may yet last
            pause = min(pause, max(self.outage.remaining(), _TICK))
        pacer.pause(pause)
        return pause

    def stopped(self, error: APIError) -> JobStoppedError:
        waited = "has not answered" if not self.outage.answered else "stopped answering"
        if isinstance(error, APIStatusError):
            waited = "has answered only errors" if not self.outage.answered else "failed"
        return JobStoppedError(
            f"the server {waited} for {self.outage.seconds:.0f} s ({error.message}); the "
            "answers so far are kept: run the job again to send the rest",
            "outage",
        )


if TYPE_CHECKING:
    # status (0: no answer), headers, body, the error it is if not a success, tokens used
    _Body_ = Optional[Tuple[Any, Optional[bytes]]]
    _Answer = Tuple[int, Dict[str, str], _Body_, Optional[APIError], Dict[str, int]]


class _DirectRound:
    """One round of a direct job under way: its work queue, its workers, its policy for what
    is not a success, the pacer they share, and the answers they write."""

    def __init__(self, rounds: _DirectRounds, answers: _Answers) -> None:
        import threading

        job, settings = rounds.job, rounds.settings
        self.job, self.transport, self.answers = job, job.client._transport, answers
        self.clock, self.sleep = job.clock, job.sleep
        self.round, self.rounds = job.data["round"], settings["rounds"]
        self.workers = settings["concurrency"]
        self.pacer = _Pacer(
            self.workers,
            settings.get("max_requests_per_minute"),
            settings.get("max_tokens_per_minute"),
            self.clock,
            self.sleep,
        )
        self.queue = _WorkQueue(job.source, answers.final, self.clock)
        self.policy = rounds.policy or _DirectPolicy(self, answers.succeeded > 0)
        self.policy.flight = self
        rounds.policy = self.policy  # one for all the rounds of this run
        self.answers_due = job.to_send - len(answers.final)
        self.added_before = answers.added
        self.failure: BaseException | None = None
        self.finished = threading.Event()
        self.left = self.workers  # the workers still running
        self.lock = threading.Lock()
        # Under a cost cap: the worst case held by the requests in flight, how many hold it,
        # and what answers with no tokens said may have cost, at most.
        self.cap = job.cap
        self.capped: float | None = None  # the worst case of the request the cap kept back
        self.held, self.holding = 0.0, 0
        self.spending = threading.Condition()
        self.log = rounds.spend_log()

    def stop(self) -> None:
        self.queue.stop()
        self.pacer.stop()
        with self.spending:
            self.spending.notify_all()

    def reserve(self, send: _Send) -> bool:
        """Hold ``send``'s worst case under the cost cap, waiting while requests in flight may
        end under theirs; False, and the round starts nothing more, once it cannot fit."""
        cap = self.cap
        assert cap is not None
        if send.worst is None:
            send.worst = cap.worst(send.data["url"], send.data["body"])
        with self.spending:
            while not cap.fits(
                cap.spent(self.answers.counts()["usage"]) + self.job.unpriced,
                self.held,
                send.worst,
            ):
                if not self.holding or self.capped is not None or self.queue.stopped:
                    if self.capped is None and not self.queue.stopped:
                        self.capped = send.worst
                    self.queue.stop()  # what is in flight comes back; nothing more goes
                    return False
                self.spending.wait(_TICK)
            self.held += send.worst
            self.holding += 1
        assert self.log is not None
        send.flight = self.log.out(send.worst)  # before it goes: a kill now counts it spent
        return True

    def release(self, send: _Send, unpriced: bool) -> None:
        """``send`` is back: its worst case is no longer held (and is spent, if it succeeded
        with no tokens said)."""
        assert send.worst is not None
        assert self.log is not None
        self.log.back(send.flight, unpriced)
        with self.spending:
            self.holding -= 1
            self.held = self.held - send.worst if self.holding else 0.0
            self.job.unpriced += send.worst if unpriced else 0.0
            self.spending.notify_all()

    def give_up(self, failure: BaseException) -> None:
        """Stop the round: nothing more is sent, and the job says what is wrong."""
        with self.lock:
            if self.failure is None:
                self.failure = failure
        self.stop()

    def requests_left(self) -> int:
        """How many requests this round has still to answer, at least one."""
        return max(self.answers_due - (self.answers.added - self.added_before), 1)

    def work(self) -> None:
        """A worker: take requests and send them until none is left or the round stops."""
        try:
            while True:
                send = self.queue.take(self.sleep)
                if send is None:
                    return
                try:
                    self.send(send)
                finally:
                    self.queue.done()
        except BaseException as exc:  # a full disk, a bug: the round stops and says why
            self.give_up(exc)
        finally:
            with self.lock:
                self.left -= 1
                if not self.left:
                    self.finished.set()

    def send(self, send: _Send) -> None:
        """Send one request, within the cost cap if there is one."""
        if self.cap is None:
            self.try_once(send)
            return
        if not self.reserve(send):
            return  # kept back by the cap: sent when the job runs again
        unpriced = False
        try:
            unpriced = self.try_once(send)
        finally:
            self.release(send, unpriced)

    def try_once(self, send: _Send) -> bool:
        """Send one request; write its answer, or put it back to be tried again. True if it
        succeeded with no tokens said, so that what it cost is not known."""
        epoch = self.pacer.acquire(send.tokens)
        if epoch is None:
            return False  # the round stopped while it waited
        send.sends += 1
        send.sent = self.clock()
        status, headers, raw, error = self.post(send.data)
        body: tuple[Any, bytes | None] | None = None
        usage: dict[str, int] = {}
        if error is None:
            body, error = _answer_body(raw, status, send.data["url"], headers)
            usage = _usage_in(body[0]) if body is not None and status < 300 else {}
            self.policy.answered(status if error is None else 0)
        send.statuses.append(status)
        used = usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
        self.pacer.release(epoch, status, headers, used - send.tokens if used else 0)
        answer: _Answer = (status, headers, body, error, usage)
        if error is not None and (self.failure is not None or self.policy.park(send, answer)):
            return False  # not written: the round has stopped, or the answer is kept back
        self.settle(send, answer)
        if self.policy.succeeded and self.failure is None:  # the server is the right one
            for parked, kept in self.policy.unpark():
                # Judged again, as if it came now: a success sent before it says nothing of
                # the key it met (a 401 kept back stops the round if a probe fails too).
                if self.failure is None and not self.policy.park(parked, kept):
                    self.settle(parked, kept)
        return error is None and not usage

    def settle(self, send: _Send, answer: _Answer) -> None:
        """Write an answer, or put its request back to be tried again."""
        status, headers, body, error, usage = answer
        if error is not None:
            delay = self.policy.decide(send, error, status, headers)
            if delay is not None:
                self.queue.later(send, delay)
                return
        if body is not None and (error is None or status not in _RETRYABLE_LINE_STATUSES):
            line, result = _answer_line(send.custom_id, status, headers, body)
        else:  # its line says how often it failed, and how
            assert error is not None
            line, result = _failure_line(
                send, error, status, headers, body, self.round, self.rounds
            )
        self.answers.add(line, result, usage)

    def post(self, data: dict[str, Any]) -> tuple[int, dict[str, str], bytes, APIError | None]:
        """One try: status, headers and body, or the connection error; ``/v1`` is in the base
        URL already, so ``/v1/chat/completions`` goes to ``{base_url}/chat/completions``."""
        transport, url = self.transport, data["url"]
        path = url[3:] if url.startswith("/v1/") else url
        sent = transport.merged_headers(None)
        try:
            response, connection, request = transport.respond(
                "POST", transport.url(path), sent, _Body.json(data["body"]), transport.timeout
            )
            raw = transport.read_and_release(response, connection, request)
        except APIConnectionError as exc:
            return 0, {}, b"", exc
        headers = _lower_headers(response)
        if response.status >= 300:  # a server or a proxy may echo the key in an error
            raw = _scrub(raw.decode("utf-8", "replace"), _secrets(sent)).encode("utf-8")
        return response.status, headers, raw, None


class _Pacer:
    """A direct job's shared brake: how many requests may be in flight, and when the next may go.

    The window of requests in flight follows AIMD, as TCP's does: each answer widens it by
    1/window (so by one request per window's worth of answers), up to ``concurrency``, and a
    429 or a 503 halves it, once a window, since the refusals of requests sent before a cut
    say nothing new. A server says it is full only that way: latency is no guide to an LLM
    server, whose batching slows each answer as load grows while answers per second still
    climb. A ``Retry-After`` holds every request until it has passed. The per-minute budgets
    are spent evenly, at most a second's worth at once, since servers enforce a minute's
    limit over shorter spans too.
    """

    def __init__(
        self,
        concurrency: int,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        import threading

        self.ceiling, self.limit = concurrency, float(concurrency)
        self.clock, self.sleep = clock, sleep
        self.lock = threading.Condition()
        self.in_flight = self.epoch = self.cuts = 0
        self.resume_at = 0.0
        self.stopped = threading.Event()
        now = clock()
        self.requests = None if requests_per_minute is None else _Budget(requests_per_minute, now)
        self.tokens = None if tokens_per_minute is None else _Budget(tokens_per_minute, now)

    @property
    def window(self) -> int:
        return int(self.limit)

    def acquire(self, tokens: int) -> int | None:
        """Wait for room in the window and in the budgets; the window's epoch, or None if
        the round stopped meanwhile."""
        with self.lock:
            while self.in_flight >= int(self.limit) and not self.stopped.is_set():
                self.lock.wait()
            if self.stopped.is_set():
                return None
            self.in_flight += 1
            now = self.clock()
            at = now
            if self.requests is not None:
                at = max(at, self.requests.spend(1, now))
            if self.tokens is not None:
                at = max(at, self.tokens.spend(tokens, now))
            epoch = self.epoch
        while not self.stopped.is_set():
            wait = max(at, self.resume_at) - self.clock()
            if wait <= 0:
                return epoch
            self.sleep(min(wait, _TICK))
        self.release(epoch, 0, {}, 0)
        return None

    def release(self, epoch: int, status: int, headers: Mapping[str, str], tokens: int) -> None:
        """A request is back: ``status`` (0 for no answer) and ``headers`` steer the window,
        ``tokens`` more than it was charged for (from its usage) are charged now."""
        with self.lock:
            self.in_flight -= 1
            if status in _SLOW_DOWN and epoch == self.epoch:
                # Once a window, as the cut: the refusals of requests sent before it say nothing
                # new, and pausing for each would stop a server that is merely full.
                self.limit = max(self.limit / 2, 1.0)
                self.epoch += 1
                self.cuts += 1
                asked = _retry_after(headers, self.clock()) if headers else None
                if asked is not None and 0 < asked <= _MAX_RETRY_AFTER:
                    self.resume_at = max(self.resume_at, self.clock() + asked)
            elif 200 <= status < 300:
                self.limit = min(self.limit + 1 / self.limit, float(self.ceiling))
            if tokens and self.tokens is not None:
                self.tokens.spend(tokens, self.clock())
            self.lock.notify(max(int(self.limit) - self.in_flight, 0))

    def stop(self) -> None:
        with self.lock:
            self.stopped.set()
            self.lock.notify_all()

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds``: the server is down or full."""
        with self.lock:
            self.resume_at = max(self.resume_at, self.clock() + seconds)


class _Budget:
    """A per-minute budget, spent evenly: it refills continuously and holds a second's worth
    (or one request's worth, if that is more), so no burst can exceed what a second allows."""

    def __init__(self, per_minute: int, now: float) -> None:
        self.rate = per_minute / 60.0
        self.most = max(self.rate, 1.0)
        self.level, self.at = self.most, now

    def spend(self, amount: float, now: float) -> float:
        """Spend ``amount`` (or give it back, if negative); the moment it is covered by."""
        self.level = min(self.level + (now - self.at) * self.rate, self.most) - amount
        self.at = now
        return now if self.level >= 0 else now - self.level / self.rate


def _answer_body(
    raw: bytes, status: int, url: str, headers: Mapping[str, str]
) -> tuple[tuple[Any, bytes | None] | None, APIError | None]:
    """An answer's body, as JSON with its bytes when they can go into a line as they came, or
    as text when it is not JSON; and the error the answer is, if it is not a success.

    A 2xx is a success only with a response in it: a JSON object that is not an error. An
    HTML page, a body that is not JSON or one that holds NaN or Infinity, and ``{"error":
    ...}`` come from something other than the API (a proxy, a login page, a gateway).
    """
    stripped = raw.strip()
    data: Any = None
    try:
        text = stripped.decode("utf-8")
        data, end = _decode_line(text)
        whole = end == len(text)
    except _NotFinite as exc:
        message = f"the response body is not valid JSON: {exc.at(raw)}"
        return None, APIResponseValidationError(message, None, status_code=status)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        whole = False
    body = (data, None if b"\n" in stripped else stripped) if whole else None
    if status >= 300:
        if body is None:  # not UTF-8 or not JSON: kept as text, as the Batch API keeps it
            body = (raw.decode("utf-8", "replace"), None)
        error = _status_error(status, dict(headers), raw, _RequestInfo("POST", url))
        return body, error
    if body is None or not isinstance(data, dict) or data.get("error") is not None:
        kind = headers.get("content-type", "no content type").split(";")[0]
        shown = _clip(raw.decode("utf-8", "replace").strip(), 120)
        what = "an error" if isinstance(data, dict) else f"{kind}, not a JSON response"
        message = f"the server answered {status} with {what}: {shown!r}"
        return None, APIResponseValidationError(message, None, status_code=status)
    return body, None


def _failure_line(
    send: _Send,
    error: APIError,
    status: int,
    headers: Mapping[str, str],
    body: tuple[Any, bytes | None] | None,
    round_: int,
    rounds: int,
) -> tuple[bytes, BatchResult]:
    """The output line of a request whose sends this round all failed: its last answer, if
    it had one, and an error saying how often it was sent and what each send met."""
    custom_id, times = send.custom_id, len(send.statuses)
    line: dict[str, Any] = {"id": _answer_id(), "custom_id": custom_id, "response": None}
    last = send.statuses[-1] if send.statuses else 0
    if isinstance(error, APITimeoutError):
        code, what = "timeout", "timed out"
    elif isinstance(error, APIResponseValidationError):
        code, what = "invalid_response", "got no response it could use"
    elif status == 0:
        code, what = "connection_error", "got no answer"
    elif last == 429:
        code, what = "rate_limit_exceeded", "was refused with HTTP 429"
    else:
        code, what = "server_error" if last >= 500 else f"http_{last}", f"got HTTP {last}"
    if len(set(send.statuses)) > 1:
        what = f"failed ({', '.join(f'HTTP {s}' if s else 'no answer' for s in send.statuses)})"
    message = f"{what} {times} {'time' if times == 1 else 'times'} in round {round_} of {rounds}"
    if last == 429:
        message += ": it may be larger than the tokens-per-minute limit"
    elif last in (502, 504):
        message += ", from a gateway in front of the server"
    if not isinstance(error, APITimeoutError):
        message += f"; the last: {error.message}"
    if body is not None:  # an answer that is not a success: kept, as a batch keeps it
        request_id = headers.get("x-request-id")
        line["response"] = {"status_code": status, "request_id": request_id, "body": body[0]}
    found = BatchResultError(code, message)
    line["error"] = {"code": code, "message": message}
    shown = status if body is not None else None
    return _line_bytes(line), BatchResult(custom_id, status_code=shown, error=found)


def _answer_line(
    custom_id: str, status: int, headers: Mapping[str, str], body: tuple[Any, bytes | None]
) -> tuple[bytes, BatchResult]:
    """The Batch API output line of an answer; the server's bytes are kept as they came."""
    request_id = headers.get("x-request-id")
    response = {"status_code": status, "request_id": request_id, "body": None}
    line = {"id": _answer_id(), "custom_id": custom_id, "response": response, "error": None}
    data, kept = body
    if kept is None:
        response["body"] = data
        return _line_bytes(line), BatchResult(custom_id, status_code=status)
    # spliced in for "body": null, the last value of the response
    head, tail = _line_bytes(line).rsplit(b'"body":null', 1)
    return b"".join([head, b'"body":', kept, tail]), BatchResult(custom_id, status_code=status)


def _answer_id() -> str:
    return "batch_req_" + os.urandom(12).hex()


###############################################################################################
# The client
###############################################################################################


def _default_random() -> float:
    import random

    return random.random()


class _ResourceViews:
    """``client.with_raw_response`` and ``client.with_streaming_response``: each resource of
    the client, seen through that view (``client.with_raw_response.batches.retrieve(id)``)."""

    def __init__(self, client: Any, view: str) -> None:
        self._client, self._view = client, view

    def __repr__(self) -> str:
        return f"<{self._view} of {self._client!r}>"

    def __getattr__(self, name: str) -> Any:
        if name not in ("batches", "files", "models", "webhooks"):
            raise AttributeError(f"{self._view} has no {name!r}")
        return getattr(getattr(self._client, name), self._view)


def _refuse_http_client(http_client: object, name: str) -> None:
    """An httpx client is refused with what to do instead: nothing here uses httpx."""
    if http_client is not None:
        raise OpenAIError(
            f"{name} is not used: this module sends with the standard "
            "library (proxies come from HTTPS_PROXY, CA certificates from SSL_CERT_FILE)"
        )


class Client:
    """The OpenAI Batch API: ``client.batches`` and ``client.files``. Also exported as OpenAI.

    Settings left out come from OPENAI_API_KEY, OPENAI_ORG_ID, OPENAI_PROJECT_ID and
    OPENAI_BASE_URL; OPENAI_CUSTOM_HEADERS adds headers under ``default_headers``. Proxies
    come from HTTPS_PROXY, HTTP_PROXY and NO_PROXY, extra CA certificates from SSL_CERT_FILE
    and SSL_CERT_DIR. ``clock``, ``sleep`` and ``random`` replace ``time.time``,
    ``time.sleep`` and ``random.random`` for retries and waiting (tests pass fakes). The key
    is sent in the Authorization header and shown nowhere else.
    """

    def __init__(
        self,
        api_key: str | Callable[[], str] | None = None,
        *,
        organization: str | None = None,
        project: str | None = None,
        base_url: str | None = None,
        timeout: _TimeoutArg = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, str] | None = None,
        webhook_secret: str | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        random: Callable[[], float] | None = None,
        http_client: object = None,
    ) -> None:
        _refuse_http_client(http_client, "http_client")
        # A callable key is asked for before every try, as the official client asks it.
        self._api_key_provider = api_key if callable(api_key) else None
        self.api_key = "" if callable(api_key) else self._key(api_key)
        self.organization = organization or os.environ.get("OPENAI_ORG_ID") or None
        self.project = project or os.environ.get("OPENAI_PROJECT_ID") or None
        url = _base_url(base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL)
        # read back with a trailing slash, as the official client's is; paths join without it
        self.base_url = url + "/"
        given = DEFAULT_TIMEOUT if isinstance(timeout, NotGiven) else timeout
        self.timeout = _timeout(given)  # None: wait forever
        self.max_retries = int(max_retries)
        if self.max_retries < 0:
            raise _ArgumentError(f"max_retries must be 0 or more, not {max_retries!r}")
        headers = _with_custom_headers(default_headers or {})
        self.default_headers = {k: _header_value(k, v) for k, v in headers.items()}
        self.default_query = {str(k): str(v) for k, v in (default_query or {}).items()}
        if webhook_secret is None:  # as the official client: "" given stays "" (and fails)
            webhook_secret = os.environ.get("OPENAI_WEBHOOK_SECRET")
        self.webhook_secret = webhook_secret
        self._transport = _Transport(
            base_url=url,
            headers=self._headers(),
            timeout=self.timeout,
            retry=_RetryPolicy(max_retries=self.max_retries),
            clock=clock or time.time,
            sleep=sleep or time.sleep,
            random=random or _default_random,
            query=self._query(),
            credentials=self._credentials,
        )
        self.batches = Batches(self)
        self.files = Files(self)
        self.models = Models(self)
        self.webhooks = Webhooks(self)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, "
            f"organization={self.organization!r}, project={self.project!r}, "
            f"timeout={self.timeout}, max_retries={self.max_retries})"
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the kept-alive connections; as the official client, this one is then done
        with: a request raises ``RuntimeError``."""
        self._transport.close()

    def is_closed(self) -> bool:
        """Whether ``close()`` has been called."""
        return self._transport.closed

    _provider = "openai"  # whose rules validate_input checks this client's files by

    def _key(self, given: str | None) -> str:
        return _api_key(given)

    def _fresh_key(self) -> str:
        """The key for one try: a callable's answer, kept as ``api_key`` as the official
        client keeps it, or the key given."""
        if self._api_key_provider is not None:
            self.api_key = _provided_key(self._api_key_provider())
        return self.api_key

    def _credentials(self) -> dict[str, str]:
        """The headers that carry the key, for one request."""
        return {"Authorization": f"Bearer {self._fresh_key()}"}

    def _query(self) -> dict[str, str]:
        return dict(self.default_query)

    def _headers(self) -> dict[str, str]:
        python = ".".join(str(part) for part in sys.version_info[:3])
        headers = {
            "Accept": "application/json",
            "User-Agent": f"openai-batch/{__version__} (Python {python}; {sys.platform})",
        }
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        headers.update(self.default_headers)
        return headers

    @property
    def with_raw_response(self) -> Any:
        """Every resource's calls giving the HTTP response: ``.batches.retrieve(id).headers``."""
        return _ResourceViews(self, "with_raw_response")

    @property
    def with_streaming_response(self) -> Any:
        """Every resource's calls as context managers for the response."""
        return _ResourceViews(self, "with_streaming_response")

    def with_options(
        self,
        *,
        api_key: str | Callable[[], str] | None = None,
        organization: str | None = None,
        project: str | None = None,
        base_url: str | None = None,
        timeout: _TimeoutArg = None,
        max_retries: int | None = None,
        default_headers: Mapping[str, str] | None = None,
        set_default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, str] | None = None,
        set_default_query: Mapping[str, str] | None = None,
        http_client: object = None,
    ) -> Client:
        """A new client with these settings changed and the others kept. ``default_headers``
        and ``default_query`` add to this client's; ``set_default_*`` replace them."""
        _refuse_http_client(http_client, "http_client")
        transport = self._transport
        return Client(
            api_key or self._api_key_provider or self.api_key,
            organization=organization or self.organization,
            project=project or self.project,
            base_url=base_url or self.base_url,
            timeout=self.timeout if timeout is None or isinstance(timeout, NotGiven) else timeout,
            max_retries=self.max_retries if max_retries is None else max_retries,
            default_headers=_merged(
                "headers", self.default_headers, default_headers, set_default_headers
            ),
            default_query=_merged("query", self.default_query, default_query, set_default_query),
            webhook_secret=self.webhook_secret,
            clock=transport.clock,
            sleep=transport.sleep,
            random=transport.random,
        )

    copy = with_options

    # -- the batch lifecycle ---------------------------------------------------------------

    def submit(
        self,
        path_or_requests: _PathLike | Iterable[_Row],
        *,
        endpoint: BatchEndpoint | str | None = None,
        completion_window: CompletionWindow | str = CompletionWindow.HOURS_24,
        metadata: Mapping[str, str] | None = None,
        on_upload: Callable[[FileObject], object] | None = None,
        idempotency_key: str | None = None,
        strict: bool = False,
        on_validated: Callable[[InputSummary], object] | None = None,
    ) -> Batch:
        """Validate, upload and start a batch from a JSONL file or from requests.

        Raises ``InputFileError`` before any request when the input has problems. The endpoint
        is read from the lines when not given. ``on_upload(file)`` is called once the input is
        uploaded: should starting the batch then fail, that file can be used without uploading
        it again (``batches.create(input_file_id=file.id, ...)``). With ``idempotency_key``, a
        batch already made with that key is returned, and nothing is uploaded (see
        ``batches.create``). ``on_validated(summary)`` sees the file's summary, warnings
        included, before anything is sent; ``strict=True`` refuses a file with warnings.
        """
        _check_metadata(metadata)
        _identity(_own_metadata(metadata), idempotency_key)
        if not isinstance(path_or_requests, (str, os.PathLike)):
            import tempfile

            with tempfile.TemporaryDirectory(prefix="openai-batch-") as directory:
                path = os.path.join(directory, "requests.jsonl")
                write_jsonl(path, path_or_requests)
                return self.submit(
                    path,
                    endpoint=endpoint,
                    completion_window=completion_window,
                    metadata=metadata,
                    on_upload=on_upload,
                    idempotency_key=idempotency_key,
                    strict=strict,
                    on_validated=on_validated,
                )
        summary = validate_input(
            path_or_requests, endpoint=endpoint, strict=strict, provider=self._provider
        )
        if on_validated is not None:
            on_validated(summary)
        if idempotency_key is not None:
            made = self.batches._made_with(idempotency_key)
            if made is not None:
                return _same_call(made, idempotency_key, None, summary.endpoint or "")
        upload = self.files.create(file=path_or_requests, purpose="batch")
        if on_upload is not None:
            on_upload(upload)
        return self.batches.create(
            input_file_id=upload.id,
            endpoint=summary.endpoint or "",
            completion_window=completion_window,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )

    def _batch(self, batch_or_id: Batch | str) -> Batch:
        return batch_or_id if isinstance(batch_or_id, Batch) else self.batches.retrieve(batch_or_id)

    def results(self, batch_or_id: Batch | str, *, partial: bool = False) -> Iterator[BatchResult]:
        """Stream a batch's results: its output file, then its error file.

        Given an id, the batch is fetched first; given a ``Batch``, its file ids are used as
        they are, so pass a fresh one. A batch that is still running raises
        ``BatchNotFinishedError``, since its results are not all in: wait for it first, or pass
        ``partial=True`` for what has arrived.
        """
        batch = self._batch(batch_or_id)
        if not batch.is_terminal and isinstance(batch_or_id, Batch):
            batch = self.batches.retrieve(batch.id)  # a Batch kept from before may be stale
        if not batch.is_terminal and not partial:
            raise BatchNotFinishedError(
                f"{batch.id} is still {_text(batch.status)}: its results are not all in yet. "
                "Wait for it to finish, or ask for what has arrived (partial=True).",
                batch,
            )
        return self._results(batch)

    def _results(self, batch: Batch) -> Iterator[BatchResult]:
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                with self.files.content(file_id) as content:
                    yield from iter_results(content)

    def run(
        self,
        input: _PathLike,
        output: _PathLike,
        *,
        batch_size: int = MAX_REQUESTS,
        max_active: int = DEFAULT_MAX_ACTIVE,
        max_enqueued_tokens: int | None = None,
        rounds: int = DEFAULT_ROUNDS,
        poll_interval: float | None = None,
        keep_files: bool = False,
        on_event: Callable[[dict[str, Any]], object] | None = None,
        cancel: bool = False,
        direct: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_requests_per_minute: int | None = None,
        max_tokens_per_minute: int | None = None,
        prices: Mapping[str, Any] | _Prices | None = None,
        max_cost: float | None = None,
        dedupe: bool = False,
        cache: _PathLike | None = None,
    ) -> JobReport:
        """Run every request of a JSONL file of any size, across as many batches as it takes.

        The input is validated first; nothing is sent if it has problems. It is cut into
        shards under the Batch API's limits (``batch_size`` lowers the request limit). At most
        ``max_active`` batches run at once, holding at most ``max_enqueued_tokens`` prompt
        tokens (estimated as characters over four). A batch over the enqueued-token limit goes
        again later, and the job keeps fewer tokens in flight. Requests with no result, or a
        failure that may pass (5xx, 429, an expired batch), go again in up to ``rounds``
        rounds. ``output`` is written atomically at the end: one Batch API output line per
        request, in input order. The job's record lives in ``output + ".job"``: running the
        same call again after any crash resumes it, and never makes a batch twice. Once
        ``output`` is written, the files the job put on the server are deleted unless
        ``keep_files``. ``on_event(dict)`` sees each step, with ``"progress"``: where the job
        stands. ``cancel=True`` cancels the job's running batches instead, and ends the job
        with what they did.

        ``direct=True`` sends each request straight to its endpoint under the base URL, for a
        server with no Batch API: at most ``concurrency`` at once (fewer while the server
        answers 429), within ``max_requests_per_minute`` and ``max_tokens_per_minute``.
        Answers are kept as they arrive, so a rerun sends only the requests with none.

        What the job will cost comes first, as an ``"estimate"`` event (as ``validate_input``
        gives it); events' ``"progress"`` and the report carry what it has cost so far, from
        the tokens the server says were used, at the model's batch price and at its standard
        price. ``prices`` (``{model: (input, output[, cached_input])}`` in USD per million
        tokens) come before a JSON file named by ``OPENAI_BATCH_PRICES``, and that before the
        table; a bad price raises ``ValueError`` before anything is sent.

        ``max_cost`` (USD) caps what the job spends over all its runs: a batch, or a direct
        request, starts only if what is spent plus the worst case of all that runs stays
        within it (a request's worst case: its input at most, a token a byte of its text,
        and its most output). At the cap, the job starts nothing more, lets what runs end,
        writes ``output`` with a line for each request with no result, and raises
        ``JobStoppedError`` (reason ``"max_cost"``, with ``report`` and ``needed``); run
        again with a higher cap, it sends only those. With no price known for the model, or
        a request whose cost has no bound (no output limit; an image, audio or a file; a
        billed tool), it raises ``ValueError`` before anything is sent.

        ``dedupe=True`` sends once each set of requests with the same endpoint and body
        (as canonical JSON), and gives each custom_id the answer under its own custom_id; it
        is off by default, since sampling at a temperature above zero wants distinct answers.
        ``cache`` names a SQLite file of successful answers kept across jobs (several
        processes may share it): a request it holds is answered from it, unsent, and a
        request the server answers with a success is added to it. The report counts both,
        and what their tokens would have cost. A job resumed keeps the choice it began with.
        """
        settings = {
            "batch_size": batch_size,
            "max_active": max_active,
            "max_enqueued_tokens": max_enqueued_tokens,
            "rounds": rounds,
            "poll_interval": poll_interval,
            "keep_files": keep_files,
            "concurrency": concurrency,
            "max_requests_per_minute": max_requests_per_minute,
            "max_tokens_per_minute": max_tokens_per_minute,
            "max_cost": max_cost,
        }
        for name in ("max_requests_per_minute", "max_tokens_per_minute"):
            if settings[name] is not None and not direct:
                raise _ArgumentError(f"{name} goes with direct=True (a batch has no such limit)")
        mode = "direct" if direct else "Batch API"  # _DirectRounds.mode, _BatchRounds.mode
        return _run_job(
            self, input, output, settings, on_event, cancel, mode, prices, dedupe, cache
        )

    def download(self, batch_or_id: Batch | str, directory: _PathLike = ".") -> list[str]:
        """Save a batch's output and error files into ``directory``; return their paths.

        The files are named ``<batch id>_output.jsonl`` and ``<batch id>_errors.jsonl`` and
        written atomically; a file the batch does not have is skipped.
        """
        batch = self._batch(batch_or_id)
        os.makedirs(directory, exist_ok=True)
        paths = []
        for file_id, kind in ((batch.output_file_id, "output"), (batch.error_file_id, "errors")):
            if file_id:
                name = "".join(c if c.isalnum() or c in "-_." else "_" for c in batch.id)
                path = os.path.join(os.fspath(directory), f"{name}_{kind}.jsonl")
                with self.files.content(file_id) as content:
                    content.write_to_file(path)
                paths.append(path)
        return paths


#: The official package's name for the client, so that only the import changes.
OpenAI = Client


def _merged(
    what: str,
    kept: Mapping[str, str],
    added: Mapping[str, str] | None,
    replacing: Mapping[str, str] | None,
) -> dict[str, str]:
    """A copy's default headers or query: the kept ones with ``added``, or ``replacing``."""
    if added is not None and replacing is not None:
        raise _ArgumentError(
            f"The `default_{what}` and `set_default_{what}` arguments are mutually exclusive"
        )
    return dict(replacing) if replacing is not None else {**kept, **(added or {})}


def _provided_key(key: object) -> str:
    """What an ``api_key`` callable gave, checked as a key given is."""
    if not isinstance(key, str) or not key.strip():
        raise OpenAIError("Expected the `api_key` callable to return a non-empty string.")
    return _api_key(key)


def _api_key(given: str | None) -> str:
    key = (given if given is not None else os.environ.get("OPENAI_API_KEY") or "").strip()
    if not key:
        raise OpenAIError(
            "The api_key client option must be set either by passing api_key to the client "
            "or by setting the OPENAI_API_KEY environment variable"
        )
    bad = [index for index, char in enumerate(key) if not " " < char < "\x7f"]
    if bad:
        # Say where, never what: the message must not carry any of the key.
        raise OpenAIError(
            f"The API key has a character that cannot be sent in an HTTP header "
            f"(position {bad[0] + 1} of {len(key)}); check how it was copied."
        )
    return key


def _with_custom_headers(given: Mapping[str, str]) -> dict[str, str]:
    """``default_headers`` over those of OPENAI_CUSTOM_HEADERS, as the official client reads
    it: a "Name: value" a line, names and values stripped, a line without a colon skipped.
    A gateway's Authorization given there replaces the key's, unless ``default_headers``
    gives one of its own, in any case."""
    text = os.environ.get("OPENAI_CUSTOM_HEADERS")
    if text is None:
        return dict(given)
    found = {}
    for line in text.split("\n"):
        name, colon, value = line.partition(":")
        if colon:
            found[name.strip()] = value.strip()
    if any(name.lower() == "authorization" for name in given):
        found = {name: value for name, value in found.items() if name.lower() != "authorization"}
    return {**found, **given}


def _base_url(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.username is not None or parts.password is not None:
        # Named without them, since a password is as secret as a key.
        raise OpenAIError(
            f"base_url for {parts.hostname} holds a user name or password, which this client "
            "does not send; put credentials in default_headers instead"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OpenAIError(f"base_url must be an http:// or https:// URL, not {url!r}")
    return url.strip().rstrip("/")


###############################################################################################
# Azure OpenAI: the same client, with Azure's address, api-version and credentials
###############################################################################################


class AzureOpenAI(Client):
    """The client for an Azure OpenAI resource, with the official package's constructor.

    Requests go to ``{azure_endpoint}/openai/batches...`` and ``/openai/files...`` (files and
    batches never take a deployment path, so ``azure_deployment`` is kept but not used), each
    with ``?api-version=``, the recovery lookup after a lost create and every page of a list
    included. The key goes in the ``api-key`` header; an Entra ID token (``azure_ad_token``,
    or ``azure_ad_token_provider``, called for every request) goes in ``Authorization:
    Bearer``. Left out, they come from AZURE_OPENAI_API_KEY, AZURE_OPENAI_AD_TOKEN (which wins
    over the key, as in the official package), AZURE_OPENAI_ENDPOINT and OPENAI_API_VERSION.
    Azure's "v1" surface (``https://RESOURCE.openai.azure.com/openai/v1/``, no api-version)
    takes the plain ``OpenAI(base_url=..., api_key=...)`` instead.
    """

    def __init__(
        self,
        *,
        api_version: str | None = None,
        azure_endpoint: str | None = None,
        azure_deployment: str | None = None,
        api_key: str | Callable[[], str] | None = None,
        azure_ad_token: str | None = None,
        azure_ad_token_provider: Callable[[], str] | None = None,
        organization: str | None = None,
        project: str | None = None,
        webhook_secret: str | None = None,
        base_url: str | None = None,
        timeout: _TimeoutArg = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        random: Callable[[], float] | None = None,
        http_client: object = None,
    ) -> None:
        _refuse_http_client(http_client, "http_client")
        given = [c for c in (api_key, azure_ad_token, azure_ad_token_provider) if c is not None]
        if len(given) > 1:
            raise OpenAIError(
                "The `api_key`, `azure_ad_token` and `azure_ad_token_provider` arguments are "
                "mutually exclusive; only one can be passed at a time"
            )
        if not given:
            azure_ad_token = os.environ.get("AZURE_OPENAI_AD_TOKEN") or None
            if azure_ad_token is None:
                api_key = os.environ.get("AZURE_OPENAI_API_KEY") or None
        if api_key is None and azure_ad_token is None and azure_ad_token_provider is None:
            raise OpenAIError(
                "Missing credentials. Please pass one of `api_key`, `azure_ad_token`, "
                "`azure_ad_token_provider`, or the `AZURE_OPENAI_API_KEY` or "
                "`AZURE_OPENAI_AD_TOKEN` environment variables."
            )
        api_version = api_version or os.environ.get("OPENAI_API_VERSION") or None
        if api_version is None:
            raise _ArgumentError(
                "Must provide either the `api_version` argument or the `OPENAI_API_VERSION` "
                "environment variable"
            )
        if base_url is None:
            azure_endpoint = azure_endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT") or None
            if azure_endpoint is None:
                raise _ArgumentError(
                    "Must provide one of the `base_url` or `azure_endpoint` arguments, or the "
                    "`AZURE_OPENAI_ENDPOINT` environment variable"
                )
            base_url = _base_url(azure_endpoint) + "/openai"
        elif azure_endpoint is not None:
            raise _ArgumentError("base_url and azure_endpoint are mutually exclusive")
        self.api_version, self.azure_endpoint = api_version, azure_endpoint
        self.azure_deployment = azure_deployment if azure_endpoint else None
        self._azure_ad_token = _header_value("Authorization", azure_ad_token or "")
        self._azure_ad_token_provider = azure_ad_token_provider
        super().__init__(
            api_key,
            organization=organization,
            project=project,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            default_query=default_query,
            webhook_secret=webhook_secret,
            clock=clock,
            sleep=sleep,
            random=random,
        )

    _provider = "azure"

    def _key(self, given: str | None) -> str:
        return "" if given is None else _api_key(given)  # a token instead: no key at all

    def _credentials(self) -> dict[str, str]:
        provider = self._azure_ad_token_provider
        if provider is not None:
            token = provider()
            if not isinstance(token, str) or not token:
                raise _ArgumentError(
                    "Expected `azure_ad_token_provider` argument to return a non-empty string."
                )
            return {"Authorization": "Bearer " + _header_value("Authorization", token)}
        if self._azure_ad_token:
            return {"Authorization": f"Bearer {self._azure_ad_token}"}
        return {"api-key": self._fresh_key()}

    def _query(self) -> dict[str, str]:
        return {**self.default_query, "api-version": self.api_version}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, "
            f"api_version={self.api_version!r}, timeout={self.timeout}, "
            f"max_retries={self.max_retries})"
        )

    def with_options(
        self,
        *,
        api_key: str | Callable[[], str] | None = None,
        azure_ad_token: str | None = None,
        azure_ad_token_provider: Callable[[], str] | None = None,
        api_version: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        base_url: str | None = None,
        timeout: _TimeoutArg = None,
        max_retries: int | None = None,
        default_headers: Mapping[str, str] | None = None,
        set_default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, str] | None = None,
        set_default_query: Mapping[str, str] | None = None,
        http_client: object = None,
    ) -> AzureOpenAI:
        """A new client with these settings changed and the others kept; see
        ``Client.with_options``."""
        _refuse_http_client(http_client, "http_client")
        transport = self._transport
        if not (api_key or azure_ad_token or azure_ad_token_provider):  # keep the ones it has
            azure_ad_token_provider = self._azure_ad_token_provider
            azure_ad_token = None if azure_ad_token_provider else self._azure_ad_token or None
            kept = self._api_key_provider or self.api_key
            api_key = None if azure_ad_token_provider or azure_ad_token else kept
        endpoint = None if base_url else self.azure_endpoint
        return AzureOpenAI(
            api_key=api_key,
            azure_ad_token=azure_ad_token,
            azure_ad_token_provider=azure_ad_token_provider,
            azure_endpoint=endpoint,
            base_url=base_url or (None if endpoint else self.base_url),
            api_version=api_version or self.api_version,
            azure_deployment=self.azure_deployment,
            organization=organization or self.organization,
            project=project or self.project,
            webhook_secret=self.webhook_secret,
            timeout=self.timeout if timeout is None or isinstance(timeout, NotGiven) else timeout,
            max_retries=self.max_retries if max_retries is None else max_retries,
            default_headers=_merged(
                "headers", self.default_headers, default_headers, set_default_headers
            ),
            default_query=_merged("query", self.default_query, default_query, set_default_query),
            clock=transport.clock,
            sleep=transport.sleep,
            random=transport.random,
        )

    copy = with_options


###############################################################################################
# Async: AsyncOpenAI and AsyncAzureOpenAI, the same calls awaited
###############################################################################################


async def _in_thread(function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``function(*args, **kwargs)`` on the event loop's thread pool, awaited.

    Batch work is a few slow calls, not thousands of quick ones, so each call runs the
    blocking client in a thread rather than reimplementing HTTP on asyncio; the loop stays
    free meanwhile. (``loop.run_in_executor`` rather than ``asyncio.to_thread``: 3.8 has no
    such function.)
    """
    import asyncio
    import functools

    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(function, *args, **kwargs))


class _Threads:
    """The threads an async client's calls run on: one for each call in flight, up to the
    official client's limit of connections (1,000), made as they are needed and kept idle for
    the next calls.

    Not the loop's default pool: it has min(32, cores + 4) threads, so that 200 calls awaited
    together would run 32 at a time, where the official client sends all 200 at once. A
    client's copies (``with_options``) share its threads, as the official copies share their
    connection pool; the threads end when the last of them is collected.
    """

    def __init__(self) -> None:
        self._pool: Any = None

    async def run(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        import asyncio
        import functools

        if self._pool is None:  # no await since the check: one loop cannot make two
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(_MAX_CONCURRENCY, thread_name_prefix="openai_batch")
        loop = asyncio.get_running_loop()
        call = functools.partial(function, *args, **kwargs)
        return await loop.run_in_executor(self._pool, call)


class AsyncPaginator(_Generic[_M]):
    """What an async ``list()`` gives: ``await`` it for the first page, or ``async for`` over
    every item of every page, each page fetched as the loop reaches it."""

    def __init__(self, first: Callable[[], CursorPage[_M]], run: _Run = _in_thread) -> None:
        self._first, self._run = first, run

    def __await__(self) -> Any:
        return self._page().__await__()

    async def _page(self) -> AsyncCursorPage[_M]:
        return AsyncCursorPage(await self._run(self._first), self._run)

    def __aiter__(self) -> Any:
        return self._items()

    async def _items(self) -> Any:
        page: AsyncCursorPage[_M] = await self
        async for item in page:
            yield item


class AsyncCursorPage(_Generic[_M]):
    """One page of an async list: ``data``, ``has_more``, and the next pages awaited."""

    def __init__(self, page: CursorPage[_M], run: _Run = _in_thread) -> None:
        self._page, self._run = page, run
        self.data, self.has_more = page.data, page.has_more
        self.first_id, self.last_id, self.object = page.first_id, page.last_id, page.object
        self._request_id = page._request_id

    def __repr__(self) -> str:
        return "<Async" + repr(self._page)[1:]

    def has_next_page(self) -> bool:
        """Whether another page may follow this one."""
        return self._page.has_next_page()

    def next_page_info(self) -> PageInfo | None:
        """Where the next page starts; see ``CursorPage.next_page_info``."""
        return self._page.next_page_info()

    def model_dump(self, **options: Any) -> dict[str, Any]:
        """The page as the official package dumps it; see ``CursorPage.model_dump``."""
        return self._page.model_dump(**options)

    def model_dump_json(self, *, indent: int | None = None, **options: Any) -> str:
        """``model_dump()`` as JSON."""
        return self._page.model_dump_json(indent=indent, **options)

    def to_dict(self) -> dict[str, Any]:
        """The page as the server sent it."""
        return self._page.to_dict()

    async def get_next_page(self) -> AsyncCursorPage[_M]:
        """Fetch the page after this one, on the thread pool."""
        return AsyncCursorPage(await self._run(self._page.get_next_page), self._run)

    async def iter_pages(self) -> Any:
        """This page, then each following page as the loop reaches it; a server whose cursors
        go round is refused, as ``CursorPage.iter_pages`` refuses it."""
        page = self
        yield page
        seen = {page.last_id}
        while page.has_next_page():
            page = await page.get_next_page()
            _check_not_seen(page._page, seen)
            yield page

    async def __aiter__(self) -> Any:
        async for page in self.iter_pages():
            for item in page.data:
                yield item


class _AsyncPieces(_Generic[_T]):
    """An ``async for`` over pieces already in memory, which may also be awaited first.

    The official content's ``aiter_*`` are ``async def`` functions that return httpx's
    iterator, so code written for it reads ``async for line in await content.aiter_lines()``;
    code written for httpx leaves the ``await`` out. Both work here.
    """

    def __init__(self, pieces: Iterator[_T]) -> None:
        self._pieces = pieces

    def __await__(self) -> Any:
        return self._itself().__await__()

    async def _itself(self) -> _AsyncPieces[_T]:
        return self

    def __aiter__(self) -> _AsyncPieces[_T]:
        return self

    async def __anext__(self) -> _T:
        try:
            return next(self._pieces)
        except StopIteration:
            raise StopAsyncIteration from None


class _AsyncContent:
    """A file's content, as the official async client gives it: read whole in the await,
    then ``read()``, ``text`` and ``write_to_file()`` at once, or ``await aread()`` and
    ``async for`` over ``aiter_bytes()``, ``aiter_text()`` or ``aiter_lines()``. For a file too
    big to hold, ``await client.download(...)`` streams it to disk.

    The body is in memory once awaited, so the ``a``-methods never touch the network and
    never block the loop; they are async only to be awaited as httpx's are.
    """

    def __init__(self, body: bytes) -> None:
        self.content = body

    def read(self) -> bytes:
        return self.content

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """The body in chunks of ``chunk_size`` bytes, or whole when it is None (as httpx)."""
        return _pieces(self.content, chunk_size)

    def iter_text(self, chunk_size: int | None = None) -> Iterator[str]:
        """The text in chunks of ``chunk_size`` characters, or whole when it is None."""
        return _pieces(self.text, chunk_size)

    def iter_lines(self) -> Iterator[str]:
        """The text's lines, split as httpx splits them (see ``_split_lines``)."""
        return iter(_split_lines(self.text))

    async def aread(self) -> bytes:
        return self.content

    def aiter_bytes(self, chunk_size: int | None = None) -> _AsyncPieces[bytes]:
        return _AsyncPieces(self.iter_bytes(chunk_size))

    def aiter_text(self, chunk_size: int | None = None) -> _AsyncPieces[str]:
        return _AsyncPieces(self.iter_text(chunk_size))

    def aiter_lines(self) -> _AsyncPieces[str]:
        return _AsyncPieces(self.iter_lines())

    def close(self) -> None:
        """Nothing to release: the connection went back to the pool in the await."""

    async def aclose(self) -> None:
        """Nothing to release, as ``close``."""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.content)

    def write_to_file(self, file: _PathLike) -> int:
        """Save the body to ``file`` atomically."""
        with _AtomicFile(file) as out:
            out.file.write(self.content)
        return len(self.content)

    stream_to_file = write_to_file

    async def astream_to_file(self, file: _PathLike) -> int:
        return await _in_thread(self.write_to_file, file)


class _AsyncWithStreamingResponse:
    """An async resource's calls, each an ``async with`` for the response:
    ``async with client.files.with_streaming_response.content(id) as response:``."""

    def __init__(self, streaming: _WithStreamingResponse, run: _Run) -> None:
        self._streaming, self._run = streaming, run

    def __getattr__(self, name: str) -> Callable[..., _AsyncStreamedResponseContext]:
        make = getattr(self._streaming, name)  # an unknown call raises AttributeError here
        return lambda *args, **kwargs: _AsyncStreamedResponseContext(
            make(*args, **kwargs), self._run
        )


class _AsyncStreamedResponseContext:
    """The blocking ``_StreamedResponseContext``, entered and left on the client's threads."""

    def __init__(self, context: _StreamedResponseContext, run: _Run) -> None:
        self._context, self._run = context, run

    async def __aenter__(self) -> _AsyncStreamedResponse:
        return _AsyncStreamedResponse(await self._run(self._context.__enter__), self._run)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._run(self._context.__exit__, *exc_info)


class _AsyncStreamedResponse:
    """A streamed response, as the official ``AsyncAPIResponse`` is read: ``headers``,
    ``status_code`` and the like at once; ``await`` for ``parse()``, ``read()``, ``text()``,
    ``json()``, ``stream_to_file()`` and ``close()``; ``async for`` over ``iter_bytes()``,
    ``iter_text()`` and ``iter_lines()``. The body is read on the client's threads, a piece
    at a time, so the loop stays free while a large file arrives."""

    _SAME: tuple[str, ...] = ("headers", "status_code", "url", "method", "retries_taken")
    _SAME += ("elapsed", "http_version", "request_id", "http_response", "http_request", "is_closed")

    def __init__(self, response: _StreamedResponse, run: _Run) -> None:
        self._response, self._run = response, run

    def __repr__(self) -> str:
        return repr(self._response)

    def __getattr__(self, name: str) -> Any:
        if name not in self._SAME:
            raise AttributeError(f"{type(self).__name__} has no {name!r}")
        return getattr(self._response, name)

    async def parse(self) -> Any:
        return await self._run(self._response.parse)

    async def read(self) -> bytes:
        body: bytes = await self._run(self._response.read)
        return body

    async def text(self) -> str:
        text: str = await self._run(self._response.text)
        return text

    async def json(self) -> Any:
        return await self._run(self._response.json)

    async def stream_to_file(self, file: _PathLike, *, chunk_size: int | None = None) -> None:
        await self._run(self._response.stream_to_file, file, chunk_size=chunk_size)

    async def close(self) -> None:
        await self._run(self._response.close)

    def iter_bytes(self, chunk_size: int | None = None) -> Any:
        return self._each(self._response.iter_bytes(chunk_size))

    def iter_text(self, chunk_size: int | None = None) -> Any:
        return self._each(self._response.iter_text(chunk_size))

    def iter_lines(self) -> Any:
        return self._each(self._response.iter_lines())

    async def _each(self, pieces: Iterator[Any]) -> Any:
        done = object()
        while True:
            piece = await self._run(next, pieces, done)
            if piece is done:
                return
            yield piece


class _Async:
    """One resource of an async client: the blocking resource's calls, each awaited."""

    _calls: tuple[str, ...] = ()
    _lists: tuple[str, ...] = ()

    def __init__(self, resource: Any, run: _Run = _in_thread) -> None:
        self._resource, self._run = resource, run

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._resource, name)
        if name in self._lists:
            return lambda *args, **kwargs: AsyncPaginator(
                lambda: method(*args, **kwargs), self._run
            )
        if name not in self._calls:
            raise AttributeError(f"{type(self).__name__} has no {name!r}")

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._run(method, *args, **kwargs)

        return call

    @property
    def with_raw_response(self) -> _Async:
        raw = _Async(self._resource.with_raw_response, self._run)
        raw._calls = tuple(n for n in (*self._calls, *self._lists) if n != "wait")
        return raw

    @property
    def with_streaming_response(self) -> _AsyncWithStreamingResponse:
        """The same calls, each an ``async with`` for the response (``_AsyncStreamedResponse``)."""
        return _AsyncWithStreamingResponse(self._resource.with_streaming_response, self._run)


class AsyncBatches(_Async):
    """``client.batches``, awaited; ``list()`` is awaited or iterated with ``async for``."""

    _calls = ("create", "retrieve", "cancel", "wait")
    _lists = ("list",)


class AsyncFiles(_Async):
    """``client.files``, awaited; ``content()`` gives a body to ``await .read()`` or save."""

    _calls = ("create", "retrieve", "delete", "wait_for_processing", "retrieve_content")
    _lists = ("list",)

    async def content(self, file_id: str, **options: Any) -> _AsyncContent:
        def whole() -> bytes:
            with self._resource.content(file_id, **options) as body:
                data: bytes = body.read()
            return data

        return _AsyncContent(await self._run(whole))

    @property
    def with_raw_response(self) -> _Async:
        raw = super().with_raw_response
        raw._calls += ("content",)
        return raw


class AsyncModels(_Async):
    _calls = ("retrieve", "delete")
    _lists = ("list",)


class AsyncWebhooks(_Async):
    """``client.webhooks``, awaited: the endpoint calls; ``unwrap`` and ``verify_signature``
    do no I/O and are called as they are, as in the official async client."""

    _calls = ("create", "retrieve", "update", "delete", "rotate_secret", "test")
    _lists = ("list",)

    def __init__(self, resource: Webhooks, run: _Run = _in_thread) -> None:
        super().__init__(resource, run)
        self.event_types = _Async(resource.event_types, run)
        self.event_types._calls = ("list",)
        self.unwrap = resource.unwrap
        self.verify_signature = resource.verify_signature


class AsyncOpenAI:
    """The client with ``async def`` calls: ``await client.batches.create(...)``, and
    ``async for batch in client.batches.list()``. It takes the same settings as ``OpenAI``.

    Each call runs the blocking client on a thread (see ``_Threads``): this way every rule of
    the blocking client (retries, the idempotent create, atomic downloads) holds unchanged.
    ``webhooks.unwrap`` and ``webhooks.verify_signature`` are the blocking client's: verifying
    a signature does no I/O.
    """

    _blocking: type[Client] = Client

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._threads = _Threads()
        self._wrap(self._blocking(*args, **kwargs))

    def _wrap(self, client: Client) -> None:
        # Every blocking client this one makes (with_options too) asks the wrapper for keys.
        provider = client._api_key_provider
        if provider is not None and not isinstance(provider, _LoopTokenProvider):
            client._api_key_provider = _LoopTokenProvider(provider, "api_key", "AsyncOpenAI")
        self._client = client
        self.batches = AsyncBatches(self._client.batches, self._run)
        self.files = AsyncFiles(self._client.files, self._run)
        self.models = AsyncModels(self._client.models, self._run)
        self.webhooks = AsyncWebhooks(self._client.webhooks, self._run)

    async def _run(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """One blocking call of this client's, on a thread of its own (see ``_Threads``), where
        a key or token provider's coroutine is awaited on this loop (``_LoopTokenProvider``)."""
        client = self._client
        for provider in (
            client._api_key_provider,
            getattr(client, "_azure_ad_token_provider", None),
        ):
            if isinstance(provider, _LoopTokenProvider):
                import asyncio

                function = provider.on_loop(function, asyncio.get_running_loop())
        return await self._threads.run(function, *args, **kwargs)

    def __repr__(self) -> str:
        return "Async" + repr(self._client)

    def __getattr__(self, name: str) -> Any:  # base_url, api_key, timeout, ...
        return getattr(self._client, name)

    @property
    def with_raw_response(self) -> Any:
        """Every resource's calls giving the HTTP response, awaited."""
        return _ResourceViews(self, "with_raw_response")

    @property
    def with_streaming_response(self) -> Any:
        """Every resource's calls, each an ``async with`` for the response, whose body is
        read as it is used (``_AsyncStreamedResponse``)."""
        return _ResourceViews(self, "with_streaming_response")

    def with_options(self, **changes: Any) -> AsyncOpenAI:
        """A new async client with these settings changed and the others kept."""
        made = object.__new__(type(self))
        made._threads = self._threads
        made._wrap(self._client.with_options(**changes))
        return made

    copy = with_options

    async def __aenter__(self) -> AsyncOpenAI:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._client.close()

    async def submit(self, *args: Any, **kwargs: Any) -> Batch:
        """``OpenAI.submit``, awaited."""
        return await self._run(self._client.submit, *args, **kwargs)

    async def run(self, *args: Any, **kwargs: Any) -> JobReport:
        """``OpenAI.run``, awaited: a job of any size, on a thread of its own."""
        return await self._run(self._client.run, *args, **kwargs)

    async def download(self, *args: Any, **kwargs: Any) -> list[str]:
        return await self._run(self._client.download, *args, **kwargs)

    async def results(self, batch_or_id: Batch | str, *, partial: bool = False) -> Any:
        """``OpenAI.results`` as an async iterator: ``async for result in ...``."""
        results = await self._run(self._client.results, batch_or_id, partial=partial)
        done = object()
        while True:
            result = await self._run(next, results, done)
            if result is done:
                return
            yield result


class _LoopTokenProvider:
    """An Azure token provider, or an ``api_key`` callable, as the async client calls it: for
    every request, from the worker thread the request runs on.

    A plain provider's token is used as it comes. An ``async def`` provider (what
    ``azure.identity.aio.get_bearer_token_provider`` gives) must run on the event loop the call
    was made from, where its credential's sessions live, not on a loop of its own: so each call
    tells this object its loop for the worker thread it runs on (``on_loop``), and the worker
    sends the provider's coroutine to that loop and waits for the token. A job's own threads
    have no call of their own; they use the loop of the latest call.
    """

    def __init__(
        self,
        provider: Callable[[], Any],
        name: str = "azure_ad_token_provider",
        owner: str = "AsyncAzureOpenAI",
    ) -> None:
        import threading

        self.provider, self.name, self.owner = provider, name, owner
        self._threads = threading.local()  # .loop: the loop of the call this thread runs
        self._latest: asyncio.AbstractEventLoop | None = None

    def on_loop(self, function: Callable[..., _T], loop: asyncio.AbstractEventLoop) -> Any:
        """``function``, to run on a worker thread for a call made on ``loop``."""
        self._latest = loop

        def run(*args: Any, **kwargs: Any) -> _T:
            self._threads.loop = loop
            try:
                return function(*args, **kwargs)
            finally:
                self._threads.loop = None

        return run

    def __call__(self) -> Any:
        token = self.provider()
        if not hasattr(token, "__await__"):
            return token  # a string, or what AzureOpenAI refuses with its own message
        import asyncio

        async def awaited() -> Any:
            return await token

        loop = getattr(self._threads, "loop", None) or self._latest
        if loop is None or loop.is_closed() or _on_loop_thread(loop):
            # waiting here would never end: the loop is gone, or it is this thread's own
            getattr(token, "close", lambda: None)()  # no "never awaited" warning
            raise OpenAIError(
                f"An async `{self.name}` can be awaited only by a call of {self.owner}, from "
                "the event loop it was made on."
            )
        return asyncio.run_coroutine_threadsafe(awaited(), loop).result()


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    import asyncio

    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:  # no loop runs on this thread
        return False


class AsyncAzureOpenAI(AsyncOpenAI):
    """``AzureOpenAI`` with ``async def`` calls; see ``AsyncOpenAI``. ``azure_ad_token_provider``
    may be a plain function or an ``async def`` one; either is called for every request,
    retries and pages included (see ``_LoopTokenProvider``)."""

    _blocking = AzureOpenAI

    def _wrap(self, client: Client) -> None:
        # Every blocking client this one makes (with_options too) asks the wrapper for tokens.
        if isinstance(client, AzureOpenAI):
            provider = client._azure_ad_token_provider
            if provider is not None and not isinstance(provider, _LoopTokenProvider):
                client._azure_ad_token_provider = _LoopTokenProvider(provider)
        super()._wrap(client)


###############################################################################################
# The module client: openai_batch.api_key = "...", then openai_batch.batches.create(...)
###############################################################################################

#: The official package's module settings, with its defaults: the one state this module keeps
#: apart from constants, since code written for `openai.api_key = ...` must run unchanged. A
#: setting left as None comes from the environment, as a client's does. Each use of the module
#: client reads them all (see `_module_client`), so a change is seen at the next call.
api_key: str | Callable[[], str] | None = None
organization: str | None = None
project: str | None = None
webhook_secret: str | None = None
base_url: str | None = None
timeout: float | Timeout | None = DEFAULT_TIMEOUT
max_retries: int = DEFAULT_MAX_RETRIES
default_headers: Mapping[str, str] | None = None
default_query: Mapping[str, object] | None = None
http_client: object = None  # an httpx client: refused when set, since nothing here uses httpx
#: "openai" or "azure"; left None, it is decided at first use (and kept) from the credentials
#: at hand: OPENAI_API_TYPE, else Azure's if any are set, else OpenAI's.
api_type: str | None = None
api_version: str | None = None
azure_endpoint: str | None = None
azure_ad_token: str | None = None
azure_ad_token_provider: Callable[[], str] | None = None

_MODULE_SETTINGS = (
    *("api_key", "organization", "project", "webhook_secret", "base_url", "timeout"),
    *("max_retries", "default_headers", "default_query", "http_client", "api_type"),
    *("api_version", "azure_endpoint", "azure_ad_token", "azure_ad_token_provider"),
)
_MODULE_RESOURCES = ("batches", "files", "models", "webhooks")
#: The module client and the settings it was made with. Two threads that first use it at once
#: may each make one; the last one kept serves, and the other is dropped unharmed.
_MODULE_CLIENT: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """``openai_batch.batches``, ``.files``, ``.models`` and ``.webhooks`` (PEP 562): nothing
    is made at import, and the client only at the first call."""
    if name in _MODULE_RESOURCES:
        return _ModuleResource(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _ModuleResource:
    """One resource of the module client, looked up again at each use, as the official
    package's proxies are: ``batches = openai_batch.batches`` kept, then a setting changed,
    is still the client of the settings of the moment."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"<openai_batch.{self._name} of the module client>"

    def __getattr__(self, attribute: str) -> Any:
        return getattr(getattr(_module_client(), self._name), attribute)


def _module_client() -> Client:
    """The client of the module's settings, made again whenever one has changed since.

    The official package makes its module client once and reads most settings from the
    module at each request; a client here fixes its settings when made, so it is made anew
    instead (the kept-alive connections of the one before are closed, its calls in flight
    finish). Azure's settings are read again too, where the official client keeps the first.
    """
    kind = _module_api_type()
    settings = {name: _settled(globals()[name]) for name in _MODULE_SETTINGS}
    made = _MODULE_CLIENT.get("client")
    if made is not None and _MODULE_CLIENT["settings"] == settings:
        return made  # type: ignore[no-any-return]
    _refuse_http_client(http_client, "openai_batch.http_client")
    client = _new_module_client(kind)
    _MODULE_CLIENT.update(client=client, settings=settings)
    if made is not None:
        made._transport.pool.close()
    return client


def _settled(value: object) -> object:
    """A setting as compared between uses: a mapping by its items, as it may change in place."""
    items = getattr(value, "items", None)
    return sorted(items(), key=repr) if callable(items) else value


def _module_api_type() -> str:
    """The module client's kind, decided at first use as the official package decides it,
    and kept in ``api_type`` (with Azure's endpoint and version, from the environment)."""
    global api_type, azure_endpoint, api_version
    env = os.environ.get
    azure_endpoint = azure_endpoint or env("AZURE_OPENAI_ENDPOINT")
    api_version = api_version or env("OPENAI_API_VERSION")
    if api_type is None:
        api_type = env("OPENAI_API_TYPE")
    if api_type is None:
        openai = env("OPENAI_API_KEY") is not None
        azure = azure_endpoint is not None or env("AZURE_OPENAI_API_KEY") is not None
        entra = env("AZURE_OPENAI_AD_TOKEN") is not None
        azure = azure or entra or azure_ad_token is not None or azure_ad_token_provider is not None
        if openai and azure:
            raise OpenAIError(
                "Ambiguous use of module client; please set `openai_batch.api_type` or the "
                "`OPENAI_API_TYPE` environment variable to `openai` or `azure`"
            )
        api_type = "azure" if azure else "openai"
    return api_type


def _new_module_client(kind: str) -> Client:
    query = None if default_query is None else {k: str(v) for k, v in default_query.items()}
    common: dict[str, Any] = {
        "organization": organization,
        "project": project,
        "webhook_secret": webhook_secret,
        "base_url": None if base_url is None else str(base_url),
        "timeout": timeout,
        "max_retries": max_retries,
        "default_headers": default_headers,
        "default_query": query,
    }
    if kind == "amazon-bedrock":
        raise OpenAIError("api_type 'amazon-bedrock' is not served by openai_batch")
    if kind != "azure":  # as the official package: any other kind is OpenAI's
        return Client(api_key, **common)
    return AzureOpenAI(
        api_key=api_key,
        api_version=api_version,
        azure_endpoint=azure_endpoint,
        azure_ad_token=azure_ad_token,
        azure_ad_token_provider=azure_ad_token_provider,
        **common,
    )


###############################################################################################
# Command line: output helpers
###############################################################################################

_EXIT_OK, _EXIT_ERROR, _EXIT_USAGE = 0, 1, 2
_EXIT_TIMEOUT = 124  # as timeout(1) exits: the batch may still finish
_EXIT_INTERRUPTED = 130  # 128 + SIGINT
_EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as git and coreutils end when the reader goes away
_COLORS = {
    "completed": "32",
    "failed": "31",
    "expired": "31",
    "cancelled": "33",
    "cancelling": "33",
    "validating": "34",
    "in_progress": "36",
    "finalizing": "36",
}


class _Console:
    """Where and how the command line writes: a terminal gets tables, a pipe gets TSV."""

    def __init__(
        self,
        out: IO[str],
        err: IO[str],
        tty: bool,
        color: bool,
        width: int,
        clock: Callable[[], float],
    ) -> None:
        self.out, self.err, self.tty, self.color, self.width = out, err, tty, color, width
        self.clock = clock
        self.live = 0  # the lines of progress on screen, the last without its newline
        # A stream that cannot carry "…" (PYTHONIOENCODING=ascii, an old code page) gets this
        # module's own symbols in ASCII. Any stream gets what it cannot carry as \u escapes,
        # as UTF-8 gets an unpaired surrogate in a result (its JSON escape, in --json).
        self.ascii = not all(_carries(stream, "…×–") for stream in (out, err))
        for stream in (out, err):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(errors="backslashreplace")

    @classmethod
    def detect(cls, clock: Callable[[], float]) -> _Console:
        """Read the terminal from stdout; OPENAI_BATCH_FORCE_TTY=1 forces terminal output."""
        import shutil

        forced = os.environ.get("OPENAI_BATCH_FORCE_TTY", "") not in ("", "0")
        tty = forced or sys.stdout.isatty()
        color = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        width = shutil.get_terminal_size((100, 24)).columns
        err = sys.stderr if sys.stderr is not None else open(os.devnull, "w")  # noqa: SIM115
        return cls(sys.stdout, err, tty, color, width, clock)

    def write(self, stream: IO[str], text: str) -> None:
        stream.write(text.translate(_ASCII_SYMBOLS) if self.ascii else text)
        stream.flush()

    def line(self, text: str = "") -> None:
        self.end_live()
        self.write(self.out, text + "\n")

    def note(self, text: str) -> None:
        """A message for the person, on stderr so that stdout stays data."""
        self.end_live()
        self.write(self.err, text + "\n")

    def redraw(self, text: str) -> None:
        """Replace the live lines on the terminal, each cut to its width but never its
        colours."""
        rows = text.split("\n")
        up = f"\x1b[{self.live - 1}F" if self.live > 1 else ""  # to the first of them
        cut = ["\r\x1b[2K" + _clip_visible(row, self.width - 1) for row in rows]
        self.write(self.out, up + "\n".join(cut))
        self.live = len(rows)

    def clear_live(self) -> None:
        """Take the live lines off the terminal, so that a note takes their place."""
        if self.live:
            up = f"\x1b[{self.live - 1}F" if self.live > 1 else ""
            self.write(self.out, up + "\r\x1b[J")
            self.live = 0

    def end_live(self) -> None:
        if self.live:
            self.live = 0
            self.write(self.out, "\n")

    def paint(self, status: str, text: str) -> str:
        code = _COLORS.get(status)
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and code else text

    def when(self, timestamp: object) -> str:
        """A time: "3h ago" on a terminal, ISO 8601 UTC in a pipe."""
        if not isinstance(timestamp, (int, float)):
            return "-" if self.tty else ""
        if self.tty:
            return _ago(self.clock() - timestamp, timestamp)
        return _iso(timestamp)


_ASCII_SYMBOLS = str.maketrans({"…": "...", "×": "x", "–": "-", "—": "-", "→": "->"})


def _carries(stream: IO[str], text: str) -> bool:
    """Whether ``stream``'s encoding can write ``text``."""
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _clip_visible(text: str, width: int) -> str:
    """``text`` cut to ``width`` visible characters; colour codes take no room and are all
    kept, so that a cut line still ends its colour."""
    import re

    pieces, room = [], width
    for piece in re.split(r"(\x1b\[[0-9;]*m)", text):
        if piece.startswith("\x1b["):
            pieces.append(piece)
        else:
            pieces.append(piece[: max(room, 0)])
            room -= len(piece)
    return "".join(pieces)


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _ago(seconds: float, timestamp: float) -> str:
    """How long ago (or, for an expiry, how far ahead) a time is, to one unit."""
    if abs(seconds) < 60:
        return "just now"
    if abs(seconds) >= 30 * 86400:
        return time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    if seconds < 0:
        return "in " + _duration(-seconds, parts=1)
    return _duration(seconds, parts=1) + " ago"


def _duration(seconds: float, parts: int = 2) -> str:
    """45s, 3m 12s, 2h 5m, 1d 3h."""
    left = int(seconds)
    pieces: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not pieces):
            pieces.append(f"{left // size}{unit}")
            left %= size
    return " ".join(pieces[:parts])


def _blank_if_none(value: object) -> str:
    """A value for a tab-separated cell: empty when the server left it out."""
    return "" if value is None else str(value)


def _size(count: int | None) -> str:
    if not isinstance(count, int):
        return "-"  # a server that left it out
    value, unit = float(count), "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"


def _table(
    console: _Console,
    header: list[str],
    rows: list[list[str]],
    shrinkable: tuple[int, ...] = (),
    status_column: int | None = None,
    middle: tuple[int, ...] = (),
    droppable: tuple[int, ...] = (),
) -> None:
    """Aligned columns fitted to the terminal: the ``shrinkable`` ones give up width first,
    down to 8, then the ``droppable`` ones are left out, in that order, until the table fits
    (a wrapped table is unreadable); the ``middle`` ones are cut in their middle."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    full = list(widths)
    excess = sum(widths) + 2 * (len(widths) - 1) - console.width
    for index in shrinkable:
        cut = min(excess, widths[index] - 8)
        if cut > 0:
            widths[index] -= cut
            excess -= cut
    shown = list(range(len(widths)))
    for index in droppable:
        if excess > 0:
            shown.remove(index)
            excess -= widths[index] + 2
    for number, row in enumerate([header, *rows]):
        cells = {index: _fit(row[index], widths[index], index in middle) for index in shown}
        if status_column is not None and number > 0:
            cells[status_column] = console.paint(row[status_column], cells[status_column])
        console.line("  ".join(cells.values()).rstrip())
    if len(shown) < len(widths) or any(widths[i] < full[i] for i in shown):
        console.note(f"(cut to fit {console.width} columns; `| cat` or --json shows all)")


def _fit(cell: str, width: int, middle: bool = False) -> str:
    """A cell padded or cut to ``width``: cut at its end, or in its ``middle`` so that the end
    that tells names apart (``…_output.jsonl``, ``…_error.jsonl``) stays."""
    if len(cell) <= width:
        return cell.ljust(width)
    if middle:
        head = (width - 1) // 3
        return cell[:head] + "…" + cell[len(cell) - (width - 1 - head) :]
    return cell[: width - 1] + "…"


def _progress(batch: Batch, blank: str = "-") -> str:
    counts = batch.request_counts
    if not isinstance(counts, BatchRequestCounts):
        return blank
    return f"{counts.completed}/{counts.failed}/{counts.total}"


def _batch_cells(console: _Console, batch: Batch) -> list[str]:
    blank = "-" if console.tty else ""
    return [
        batch.id,
        _text(batch.status),
        _text(batch.endpoint),
        batch.model or blank,
        _progress(batch, blank),
        console.when(batch.created_at),
    ]


def _show_rows(
    console: _Console,
    items: Iterable[_Model],
    as_json: bool,
    cells: Callable[[Any], list[str]],
    table: tuple[list[str], tuple[int, ...], int | None, str],
    middle: tuple[int, ...] = (),
    droppable: tuple[int, ...] = (),
) -> int:
    """A list: JSON a line, TSV in a pipe, or a table (header, shrinkable, status, empty note)."""
    if as_json:
        for item in items:
            console.line(json.dumps(item.to_dict(), ensure_ascii=False))
    elif not console.tty:
        for item in items:
            console.line("\t".join(cells(item)))
    else:
        header, shrinkable, status_column, empty = table
        rows = [cells(item) for item in items]
        if rows:
            _table(console, header, rows, shrinkable, status_column, middle, droppable)
        else:
            console.note(empty)
    return _EXIT_OK


def _show_batches(console: _Console, batches: Iterable[Batch], as_json: bool) -> int:
    header = ["ID", "STATUS", "ENDPOINT", "MODEL", "PROGRESS", "CREATED"]
    table = (header, (2, 3), 1, "No batches found.")
    return _show_rows(
        console,
        batches,
        as_json,
        lambda b: _batch_cells(console, b),
        table,
        droppable=(3, 2, 5, 4),  # model, endpoint, created, progress: the id and status stay
    )


def _show_batch(console: _Console, batch: Batch, as_json: bool) -> int:
    """One batch: its JSON, or field and value a line."""
    if as_json:
        console.line(batch.to_json())
        return _EXIT_OK
    counts = batch.request_counts
    details = [
        ("id", batch.id),
        ("status", console.paint(_text(batch.status), _text(batch.status))),
        ("endpoint", _text(batch.endpoint)),
        ("model", batch.model or ""),
        ("progress", _progress(batch, "") + (" (completed/failed/total)" if counts else "")),
        ("input_file_id", batch.input_file_id or ""),
        ("output_file_id", batch.output_file_id or ""),
        ("error_file_id", batch.error_file_id or ""),
        ("created", console.when(batch.created_at)),
        ("expires", console.when(batch.expires_at)),
    ]
    for stage in ("in_progress", "finalizing", "completed", "failed", "expired", "cancelled"):
        stamp = getattr(batch, stage + "_at")
        if stamp:
            details.append((stage.replace("_", " "), console.when(stamp)))
    metadata = batch.metadata if isinstance(batch.metadata, dict) else {}
    for key, value in sorted(metadata.items()):
        details.append(("metadata", f"{key}={value}"))
    if batch.idempotency_key is not None:  # ours, apart from the caller's own metadata
        details.append(("idempotency_key", batch.idempotency_key))
    for error in _batch_errors(batch):
        details.append(("error", error))
    _show_details(console, details)
    return _EXIT_OK


def _show_ending(console: _Console, batch: Batch) -> None:
    """How a finished batch ended, on its own clock; why, if badly; and the next command."""
    status = _text(batch.status)
    ended, started = batch.ended_at, batch.created_at
    took = f" after {_duration(ended - started)}" if ended and started else ""
    counts = "" if _progress(batch) == "-" else f": {_progress(batch)} completed/failed/total"
    console.note(f"{batch.id} {status}{took}{counts}")
    errors = _batch_errors(batch)
    for line in errors[:_SHOWN_ERRORS]:
        console.note(f"  {line}")
    if len(errors) > _SHOWN_ERRORS:
        console.note(f"  and {len(errors) - _SHOWN_ERRORS:,} more (openai-batch get {batch.id})")
    console.note(_next_step(batch))


def _next_step(batch: Batch) -> str:
    """The command to run after a batch has ended, or a hint at what went wrong."""
    status, counts = _text(batch.status), batch.request_counts
    total = counts.total or 0 if isinstance(counts, BatchRequestCounts) else 0
    done = (counts.completed or 0) if isinstance(counts, BatchRequestCounts) else 0
    failed = (counts.failed or 0) if isinstance(counts, BatchRequestCounts) else 0
    retry = f"openai-batch retry {batch.id} -o retry.jsonl"
    if status == "completed":
        if failed:
            return f"next: openai-batch results {batch.id} --failed, then {retry}"
        return f"next: openai-batch results {batch.id} (or: openai-batch download {batch.id})"
    if status == "failed":
        if any(error.code == "token_limit_exceeded" for error in _error_list(batch)):
            return (
                "hint: the organization's queue of enqueued tokens for this model is full; wait "
                "for running batches to finish (openai-batch list --status in_progress), or "
                "split the file (split_jsonl) and submit the parts one at a time"
            )
        return f"hint: fix what the errors name, then submit again; openai-batch get {batch.id}"
    left = max(total - done - failed, 0)
    return f"hint: {_plural(left, 'request')} did not run; {retry} writes them to a new file"


def _still_running(batch_id: str, batch: Batch | None) -> str:
    """What is true after a wait stops early: the batch goes on, and how to go on with it."""
    where = "may still be running"
    if batch is not None:
        counts = _progress(batch, "")
        shown = f" ({counts} completed/failed/total)" if counts else ""
        where = f"is still {_text(batch.status)}{shown}"
    return (
        f"{batch_id} {where} on the server; resume with `openai-batch wait {batch_id}`, "
        f"stop it with `openai-batch cancel {batch_id}`"
    )


def _show_details(console: _Console, details: list[tuple[str, str]]) -> None:
    """Field and value a line: aligned on a terminal, tab-separated in a pipe."""
    width = max(len(key) for key, _ in details)
    for key, value in details:
        console.line(f"{key.ljust(width)}  {value or '-'}" if console.tty else f"{key}\t{value}")


def _show_file(console: _Console, file: FileObject, as_json: bool) -> int:
    if as_json:
        console.line(file.to_json())
        return _EXIT_OK
    details = [
        ("id", file.id),
        ("filename", file.filename or ""),
        ("purpose", file.purpose or ""),
        ("bytes", _size(file.bytes) if console.tty else _blank_if_none(file.bytes)),
        ("created", console.when(file.created_at)),
        ("expires", console.when(file.expires_at)),
    ]
    _show_details(console, details)
    return _EXIT_OK


def _show_files(console: _Console, files: Iterable[FileObject], as_json: bool) -> int:
    def cells(file: FileObject) -> list[str]:
        size = _size(file.bytes) if console.tty else _blank_if_none(file.bytes)
        return [
            file.id,
            file.purpose or "",
            size,
            file.filename or "",
            console.when(file.created_at),
        ]

    table = (["ID", "PURPOSE", "SIZE", "FILENAME", "CREATED"], (3,), None, "No files found.")
    return _show_rows(console, files, as_json, cells, table, middle=(3,))


def _show_endpoints(console: _Console, endpoints: Iterable[WebhookEndpoint], as_json: bool) -> int:
    def cells(endpoint: WebhookEndpoint) -> list[str]:
        kinds = ",".join(endpoint.event_types or [])
        return [
            endpoint.id,
            endpoint.name or "",
            endpoint.url or "",
            kinds,
            console.when(endpoint.created_at),
        ]

    header = ["ID", "NAME", "URL", "EVENT TYPES", "CREATED"]
    table = (header, (3, 2, 1), None, "No webhook endpoints found.")
    return _show_rows(console, endpoints, as_json, cells, table)


def _show_endpoint(
    console: _Console, endpoint: WebhookEndpoint | WebhookEndpointWithSecret, as_json: bool
) -> int:
    """An endpoint's fields; with its signing secret, once, and a note to keep it now."""
    secret = endpoint.signing_secret if isinstance(endpoint, WebhookEndpointWithSecret) else None
    if as_json:
        console.line(endpoint.to_json())
    else:
        details = [
            ("id", endpoint.id),
            ("name", endpoint.name or ""),
            ("url", endpoint.url or ""),
            ("event_types", ",".join(endpoint.event_types or [])),
            ("created", console.when(endpoint.created_at)),
        ]
        if secret is None:
            details.append(("secret_hint", endpoint.signing_secret_hint or ""))
        else:
            details.append(("signing_secret", secret))
        _show_details(console, details)
    if secret is not None:
        console.note(
            "note: store the signing secret now (as OPENAI_WEBHOOK_SECRET, for one): "
            "it is not shown again"
        )
    return _EXIT_OK


def _result_detail(result: BatchResult | None) -> str:
    """The gist of a result: the answer's text, or why it failed."""
    if result is None:
        return "no result: the request did not run"
    if not result.ok:
        return result.error_message or "failed"
    body = result.body if isinstance(result.body, dict) else {}
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message") or {}
        return str(message.get("content") if isinstance(message, dict) else choices[0])
    if body.get("object") == "response":
        texts = [
            part.get("text", "")
            for item in body.get("output") or []
            if isinstance(item, dict)
            for part in item.get("content") or []
            if isinstance(part, dict) and part.get("type") == "output_text"
        ]
        return "".join(texts)
    if body.get("object") == "list" and isinstance(body.get("data"), list):
        return f"{len(body['data'])} embeddings"
    return json.dumps(result.body, ensure_ascii=False)


def _result_cells(
    request: BatchRequest | None, result: BatchResult | None, running: bool = False
) -> list[str]:
    custom_id = request.custom_id if request is not None else result.custom_id if result else ""
    outcome = "missing" if result is None else "ok" if result.ok else "failed"
    code = "" if result is None or result.status_code is None else str(result.status_code)
    detail = " ".join(_result_detail(result).split())
    if result is None and running:
        outcome, detail = "pending", "not run yet: the batch is still running"
    # A model's text may hold terminal escapes; shown raw, they would repaint the screen.
    return [_printable(cell) for cell in (custom_id, outcome, code, detail)]


def _printable(text: str) -> str:
    """``text`` with control characters shown as escapes, so that none reaches a terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class _JobProgress:
    """``run``'s display: a live block on a terminal; in a pipe, as ``wait`` does, a
    tab-separated line per event on stdout (and where the job stands, every few seconds while
    it moves, and a minute at most when it does not), with notes on stderr; with ``--json``
    each event as a JSON line."""

    MOVING, HEARTBEAT = 5.0, 60.0  # seconds between piped progress lines: moving, or still

    def __init__(self, console: _Console, as_json: bool) -> None:
        self.console, self.as_json = console, as_json
        self.last = console.clock()
        self.shown: dict[str, int] | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        console, kind = self.console, event["event"]
        if self.as_json:
            console.line(json.dumps(event, ensure_ascii=False))
            return
        if kind == "estimate":
            self.estimate(event)
            return
        progress = event["progress"]
        if not console.tty:
            self.piped(kind, event, progress)
            return
        note = _job_note(event)
        if note:
            console.clear_live()
            console.note(note)
        console.redraw(self.block(progress))

    def estimate(self, event: dict[str, Any]) -> None:
        """What the job will cost, before it starts: as validate says it."""
        estimate = InputEstimate(
            **{k: v for k, v in event.items() if k not in ("event", "progress")}
        )
        console = self.console
        if estimate.note and estimate.model:
            console.note(f"note: {estimate.note}: give --price {estimate.model}=IN,OUT[,CACHED]")
        if console.tty:
            model = f", model {estimate.model}" if estimate.model else ""
            console.note(f"estimate: {_plural(estimate.requests, 'request')}{model}")
            for line in _estimate_lines(estimate):
                console.note(f"    {line}")
            return
        fields = {  # output at most "" when unbounded; USD "" when unknown, as validate's
            "requests": estimate.requests,
            "input_tokens": estimate.input_tokens,
            "output_tokens": _blank_if_none(estimate.output_tokens),
            "input_usd": "" if estimate.input_cost is None else f"{estimate.input_cost:.6f}",
            "output_usd": "" if estimate.output_cost is None else f"{estimate.output_cost:.6f}",
            "prices": estimate.prices or "",
        }
        cells = [_iso(console.clock()), "estimate"]
        console.line("\t".join(cells + [f"{name}={value}" for name, value in fields.items()]))

    def piped(self, kind: str, event: dict[str, Any], progress: dict[str, Any]) -> None:
        now = self.console.clock()
        facts = [
            f"{key}={value}" for key, value in event.items() if key not in ("event", "progress")
        ]
        if kind == "progress":
            moved = progress["requests"] != self.shown
            if now - self.last < (self.MOVING if moved else self.HEARTBEAT):
                return
            facts = [f"{name}={count}" for name, count in _progress_facts(progress).items()]
        self.console.line("\t".join([_iso(now), kind, *facts]))
        self.last, self.shown = now, progress["requests"]

    @staticmethod
    def block(progress: dict[str, Any]) -> str:
        work, requests = progress["work"], progress["requests"]
        unit = work["unit"]
        limit = f" (at most {work['limit']:,} at once)" if "limit" in work else ""
        doing = f"{work['active']:,} {'in flight' if unit == 'request' else 'running'}{limit}"
        tokens = _tokens(progress["usage"])
        if not tokens:
            tokens = "no tokens reported by the server" if work["done"] else "no tokens yet"
        left = progress["left"]
        spend = progress.get("spend") or {}
        lines = [
            f"round {progress['round']} of {progress['rounds']}: "
            f"{_plural(work['done'], unit)} done, {doing}, {work['queued']:,} queued",
            f"requests: {requests['succeeded']:,} succeeded, {requests['failed']:,} failed, "
            f"{requests['pending']:,} pending"
            + (
                f", {requests['cached']:,} from the cache, {requests['deduplicated']:,} copies"
                if "cached" in requests
                else ""
            )
            + (f"; {progress['per_second']:,}/s" if progress["per_second"] else ""),
            f"{tokens}; {_duration(progress['elapsed'])} so far"
            + ("" if left is None or left < 1 else f", about {_duration(left)} left"),
        ]
        if progress["usage"] and spend.get("cost") is not None:
            cap = spend.get("max_cost")
            lines.append(
                f"spent {_usd(spend['cost'])} at {spend['prices']}"
                + ("" if cap is None else f", of a cap of {_usd(cap)}")
            )
        return "\n".join(lines)


def _progress_facts(progress: dict[str, Any]) -> dict[str, Any]:
    """Where a job stands in a few numbers, for a piped line: the spend in USD ("" with no
    price known) at the prices that the estimate line named."""
    requests, work = progress["requests"], progress["work"]
    cost = (progress.get("spend") or {}).get("cost")
    return {
        **requests,
        "active": work["active"],
        "per_second": progress["per_second"],
        "left": progress["left"],
        "spent_usd": "" if cost is None else f"{cost:.6f}",
    }


def _job_note(event: dict[str, Any]) -> str | None:
    """What a person watching a job on a terminal should read about an event, if anything."""
    kind, shard = event["event"], event.get("shard")
    if kind == "already_written":
        return f"{event['output']} is written already: the job is done"
    if kind == "clean_up_failed":
        return f"could not delete {event['file_id']} ({event['error']}); the next run will"
    if kind == "round" and "requests" in event:  # a round of requests sent one by one
        return f"round {event['round']}: {_plural(event['requests'], 'request')}"
    if kind == "round":
        return f"round {event['round']}: {_plural(event['shards'], 'shard')}"
    if kind == "slowed":
        paused = f", all paused for {event['paused']:g}s" if event["paused"] else ""
        return f"the server is busy: {event['concurrency']:,} in flight at most{paused}"
    if kind == "over_token_limit":
        budget = event.get("budget")
        held = f", with at most {budget:,} tokens in flight" if budget else ""
        return f"{shard}: over the enqueued-token limit; it goes again later{held}"
    if kind == "server_trouble":
        return f"the server did not answer a {event['what']} ({event['error']}); trying again"
    if kind == "cancelling":
        return f"{shard}: cancelling {event['batch_id']}"
    if kind == "sieved":  # the estimate before it counted every request of the input
        found = event["cache_hits"] + event["deduplicated"]
        return (
            f"{_plural(event['to_send'], 'request')} to send of {found + event['to_send']:,}: "
            f"{event['cache_hits']:,} answered from the cache, {event['deduplicated']:,} "
            "copies (the estimate counted all)"
        )
    if kind == "cache_failed":
        return (
            f"the answers were not added to the cache {event['cache']} ({event['error']}); "
            "the results are written all the same. Fix or remove that file to use it again"
        )
    if kind == "max_cost":
        return (
            f"the next work would pass the cost cap of {_usd_given(event['max_cost'])} at worst: "
            "nothing more starts, and what runs is let end"
        )
    if kind == "ended" and event["status"] != "completed":
        return f"{shard}: {event['batch_id']} {event['status']}"
    return None


def _tokens(usage: dict[str, int]) -> str:
    """Tokens used, as ``Batch.usage`` counts them, in a few words."""
    if not usage:
        return ""
    text = f"{usage.get('input_tokens', 0):,} tokens in"
    if usage.get("cached_tokens"):
        text += f" ({usage['cached_tokens']:,} cached)"
    text += f", {usage.get('output_tokens', 0):,} out"
    if usage.get("reasoning_tokens"):
        text += f" ({usage['reasoning_tokens']:,} reasoning)"
    return text


class _LiveProgress:
    """``wait``'s display: one redrawn line on a terminal, a line per change in a pipe."""

    def __init__(self, console: _Console) -> None:
        self.console = console
        self.last: Batch | None = None

    def __call__(self, batch: Batch) -> None:
        self.last = batch
        console = self.console
        status = _text(batch.status)
        if not console.tty:
            cells = [_iso(console.clock()), batch.id, status, _progress(batch, "")]
            console.line("\t".join(cells))
            return
        console.redraw(f"{console.paint(status, status.ljust(11))} {self.bar(batch)}")

    def trouble(self, error: APIError, seconds: float) -> None:
        """A poll failed and will be made again: say so, rather than look frozen."""
        if isinstance(error, APIStatusError):
            what = f"the server answered {error.status_code}"
        else:
            what = "timed out" if isinstance(error, APITimeoutError) else "connection lost"
        text = f"{what}, polling again in {_duration(seconds)}"
        if not self.console.tty or self.last is None:
            self.console.note(f"note: {text}")
            return
        status = _text(self.last.status)
        self.console.redraw(f"{self.console.paint(status, status.ljust(11))} ({text})")

    def bar(self, batch: Batch) -> str:
        counts = batch.request_counts
        if not isinstance(counts, BatchRequestCounts) or not counts.total:
            return "validating the input file" if batch.status == "validating" else ""
        completed, failed = counts.completed or 0, counts.failed or 0  # a count may be missing
        done = completed + failed
        filled = 24 * done // counts.total
        text = f"[{'=' * filled}{' ' * (24 - filled)}] {100 * done // counts.total:3d}%  "
        text += f"{completed}/{failed}/{counts.total}"
        if batch.status == "finalizing":
            return text + "  finalizing: writing the output files"
        started = batch.in_progress_at or batch.created_at  # a server may not say when it began
        if batch.status == "in_progress" and done and isinstance(started, (int, float)):
            elapsed = max(self.console.clock() - started, 1.0)
            text += f"  ~{_duration((counts.total - done) * elapsed / done)} left"
        return text


###############################################################################################
# Command line: commands
###############################################################################################


class _Session:
    """What a command works with: the parsed arguments, the console, and a client on demand."""

    def __init__(self, args: Any, console: _Console, client: Client | None) -> None:
        self.args = args
        self.console = console
        self._client = client

    @property
    def client(self) -> Client:
        if self._client is None:
            args = self.args
            common: dict[str, Any] = {
                "organization": getattr(args, "organization", None),
                "project": getattr(args, "project", None),
                "timeout": _given(getattr(args, "timeout", None), DEFAULT_TIMEOUT),
                "max_retries": _given(getattr(args, "max_retries", None), DEFAULT_MAX_RETRIES),
            }
            if self.azure:  # --base-url, if given, is the resource's endpoint
                self._client = AzureOpenAI(
                    api_key=getattr(args, "api_key", None),
                    azure_endpoint=getattr(args, "base_url", None),
                    **common,
                )
            else:
                key, url = getattr(args, "api_key", None), getattr(args, "base_url", None)
                self._client = Client(key, base_url=url, **common)
        return self._client

    @property
    def azure(self) -> bool:
        """Whether the command talks to Azure OpenAI: --azure, or AZURE_OPENAI_ENDPOINT set."""
        if self._client is not None:
            return self._client._provider == "azure"
        return bool(getattr(self.args, "azure", False) or os.environ.get("AZURE_OPENAI_ENDPOINT"))

    @property
    def provider(self) -> str:
        return "azure" if self.azure else "openai"

    def input_file(self, batch: Batch, directory: str) -> str:
        """The batch's requests: --input when given, else its input file, fetched."""
        given: str | None = getattr(self.args, "input", None)
        if given:
            _check_shape(given)  # a CSV given by mistake is named once, not line by line
            return given
        path = os.path.join(directory, "input.jsonl")
        with self.client.files.content(batch.input_file_id) as content:
            content.write_to_file(path)
        return path


def _given(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _cmd_list(session: _Session) -> int:
    """One page of batches; with --all or a filter, pages of 100 until the answer is known."""
    args = session.args
    keep = _batch_filter(args)
    paging = args.all or keep is not None or args.since is not None or (args.limit or 0) > 100
    page = session.client.batches.list(limit=100 if paging else args.limit, after=args.after)
    if not paging:
        return _show_batches(session.console, page.data, args.json)
    limit = args.limit or (None if args.all else 20)
    since = None
    if args.since is not None:
        back, moment = args.since
        since = session.console.clock() - back if moment is None else moment
    return _show_batches(session.console, _filtered(page, keep, since, limit), args.json)


def _batch_filter(args: Any) -> Callable[[Batch], bool] | None:
    """The --status, --endpoint and --metadata filters as one test, or None without any."""
    statuses, endpoint, metadata = set(args.status or ()), args.endpoint, dict(args.metadata or ())
    if not (statuses or endpoint or metadata):
        return None

    def keep(batch: Batch) -> bool:
        if statuses and _text(batch.status) not in statuses:
            return False
        if endpoint and _text(batch.endpoint) != endpoint:
            return False
        # the idempotency key too, as the server stores it: the key's batch can be found by it
        found = {**(batch.metadata or {}), IDEMPOTENCY_METADATA_KEY: batch.idempotency_key}
        return all(found.get(key) == value for key, value in metadata.items())

    return keep


def _filtered(
    batches: Iterable[Batch],
    keep: Callable[[Batch], bool] | None,
    since: float | None,
    limit: int | None,
) -> Iterator[Batch]:
    """Matching batches, newest first, fetching pages only until the answer is known."""
    shown = 0
    for batch in batches:
        if since is not None and isinstance(batch.created_at, int) and batch.created_at < since:
            return  # the list is newest first: everything after is older still
        if keep is None or keep(batch):
            yield batch
            shown += 1
            if limit is not None and shown >= limit:
                return


def _cmd_get(session: _Session) -> int:
    batch = session.client.batches.retrieve(session.args.id)
    return _show_batch(session.console, batch, session.args.json)


def _cmd_cancel(session: _Session) -> int:
    batch = session.client.batches.cancel(session.args.id)
    return _show_batch(session.console, batch, session.args.json)


def _cmd_create(session: _Session) -> int:
    args = session.args
    expires = None
    if args.output_expires_after is not None:
        low, high = _PROVIDERS[session.provider].expires
        if not low <= args.output_expires_after <= high:
            raise _ArgumentError(
                f"--output-expires-after must be from {low:,} to {high:,} seconds on "
                f"{_PROVIDERS[session.provider].name}, not {args.output_expires_after:,}"
            )
        expires = {"anchor": "created_at", "seconds": args.output_expires_after}
    batch = session.client.batches.create(
        input_file_id=args.input_file_id,
        endpoint=args.endpoint,
        completion_window=args.completion_window,
        metadata=_metadata(args),
        output_expires_after=expires,
        idempotency_key=args.idempotency_key,
    )
    return _show_batch(session.console, batch, args.json)


def _metadata(args: Any) -> dict[str, str] | None:
    pairs = getattr(args, "metadata", None)
    return dict(pairs) if pairs else None


def _cmd_upload(session: _Session) -> int:
    file = session.client.files.create(file=session.args.file, purpose=session.args.purpose)
    return _show_file(session.console, file, session.args.json)


def _cmd_files_list(session: _Session) -> int:
    args = session.args
    files = session.client.files.list(purpose=args.purpose, limit=args.limit, order=args.order)
    return _show_files(session.console, files if args.all else files.data, args.json)


def _cmd_files_get(session: _Session) -> int:
    file = session.client.files.retrieve(session.args.id)
    return _show_file(session.console, file, session.args.json)


def _cmd_files_delete(session: _Session) -> int:
    deleted = session.client.files.delete(session.args.id)
    if session.args.json:
        session.console.line(deleted.to_json())
    else:
        session.console.line(f"deleted {deleted.id}" if deleted.deleted else f"kept {deleted.id}")
    return _EXIT_OK if deleted.deleted else _EXIT_ERROR


def _cmd_files_content(session: _Session) -> int:
    args = session.args
    with session.client.files.content(args.id) as content:
        if args.output:
            content.write_to_file(args.output)
            session.console.note(f"wrote {args.output}")
            return _EXIT_OK
        session.console.out.flush()
        stdout = getattr(session.console.out, "buffer", None)
        for chunk in content.iter_bytes():
            if stdout is not None:
                stdout.write(chunk)
            else:
                session.console.out.write(chunk.decode("utf-8", "replace"))
        session.console.out.flush()
    return _EXIT_OK


def _cmd_validate(session: _Session) -> int:
    args = session.args
    prices = _Prices(dict(args.price or ()), given_as="your --price")
    summary = validate_input(
        args.file,
        endpoint=args.endpoint,
        strict=args.strict,
        provider=session.provider,
        prices=prices,
    )
    console = session.console
    _show_warnings(console, summary)
    estimate = summary.estimate
    if estimate is not None and estimate.note and estimate.model:
        console.note(f"note: {estimate.note}: give --price {estimate.model}=IN,OUT[,CACHED]")
    if args.check_models and summary.model:
        found = _check_model(session, summary.model)
        if found:
            summary.warnings.append(found)
    if args.json:
        from dataclasses import asdict

        console.line(json.dumps(asdict(summary), ensure_ascii=False))
    elif console.tty:
        inputs = (
            f", {summary.embedding_inputs:,} embedding inputs" if summary.embedding_inputs else ""
        )
        console.line(
            f"ok  {summary.path}: {_plural(summary.requests, 'request')}, "
            f"{_size(summary.bytes)}, {summary.endpoint}, model {summary.model or '-'}{inputs}"
        )
        if estimate is not None:
            for line in _estimate_lines(estimate):
                console.line(f"    {line}")
    else:  # labelled, as run's events are in a pipe: a script finds a field by its name
        fields: dict[str, object] = {
            "requests": summary.requests,
            "bytes": summary.bytes,
            "endpoint": summary.endpoint,
            "model": summary.model or "",
            "embedding_inputs": summary.embedding_inputs,
        }
        if estimate is not None:  # output at most "" when unbounded; USD "" when unknown
            fields.update(
                input_tokens=estimate.input_tokens,
                output_tokens=_blank_if_none(estimate.output_tokens),
                input_usd="" if estimate.input_cost is None else f"{estimate.input_cost:.6f}",
                output_usd="" if estimate.output_cost is None else f"{estimate.output_cost:.6f}",
                prices=estimate.prices or "",
            )
        cells = ["ok", summary.path, *(f"{name}={value}" for name, value in fields.items())]
        console.line("\t".join(cells))
    return _EXIT_OK


def _check_model(session: _Session, model: str) -> str | None:
    """Warn when the server does not list the model a file names (a typo costs a day);
    return the warning, for --json."""
    if session.azure:
        session.console.note(
            f"note: on Azure OpenAI, {model!r} names a deployment, which the models list does "
            "not show; not checked"
        )
        return None
    try:
        served = [served.id for served in session.client.models.list()]
    except APIError as exc:  # a check that cannot run is a warning, as its findings are
        warning = f"could not list the server's models to check: {exc}"
        session.console.note(f"warning: {warning}")
        return warning
    if model in served:
        return None
    warning = f"model {model!r} is not among the {_plural(len(served), 'model')} the server lists"
    session.console.note(f"warning: {warning}; `openai-batch models` lists them")
    return warning


def _cmd_models(session: _Session) -> int:
    console = session.console
    models = session.client.models.list()
    return _show_rows(
        console,
        models,
        session.args.json,
        lambda m: [m.id, _blank_if_none(m.owned_by), console.when(m.created)],
        (["ID", "OWNED BY", "CREATED"], (0,), None, "no models"),
    )


_BATCH_EVENT_TYPES = ["batch.completed", "batch.failed", "batch.expired", "batch.cancelled"]


def _cmd_webhooks_create(session: _Session) -> int:
    from urllib.parse import urlsplit

    args = session.args
    made = session.client.webhooks.create(
        url=args.url,
        name=args.name or urlsplit(args.url).hostname or args.url,
        event_types=args.event_type or _BATCH_EVENT_TYPES,
    )
    return _show_endpoint(session.console, made, args.json)


def _cmd_webhooks_list(session: _Session) -> int:
    args = session.args
    page = session.client.webhooks.list(limit=args.limit)
    return _show_endpoints(session.console, page if args.all else page.data, args.json)


def _cmd_webhooks_get(session: _Session) -> int:
    endpoint = session.client.webhooks.retrieve(session.args.id)
    return _show_endpoint(session.console, endpoint, session.args.json)


def _cmd_webhooks_delete(session: _Session) -> int:
    deleted = session.client.webhooks.delete(session.args.id)
    if session.args.json:
        session.console.line(deleted.to_json(indent=None))
    else:
        session.console.line(f"deleted {deleted.id}" if deleted.deleted else f"kept {deleted.id}")
    return _EXIT_OK if deleted.deleted else _EXIT_ERROR


def _cmd_webhooks_test(session: _Session) -> int:
    """Send a sample event; exit 1 when the endpoint's server does not answer 2xx."""
    args, console = session.args, session.console
    result = session.client.webhooks.test(args.id, event_type=args.event_type)
    if args.json:
        console.line(result.to_json(indent=None))
    elif console.tty:
        console.line(
            f"sent {result.event_type} to {result.webhook_endpoint_id}: "
            f"the endpoint answered {result.status_code}"
        )
    else:
        cells = [result.webhook_endpoint_id, result.event_type, result.status_code]
        console.line("\t".join(str(cell) for cell in cells))
    ok = isinstance(result.status_code, int) and 200 <= result.status_code < 300
    return _EXIT_OK if ok else _EXIT_ERROR


def _cmd_webhooks_rotate_secret(session: _Session) -> int:
    args = session.args
    rotated = session.client.webhooks.rotate_secret(
        args.id, keep_old_secret_active_for_24_hours=args.keep_old_secret or None
    )
    return _show_endpoint(session.console, rotated, args.json)


def _show_warnings(console: _Console, summary: InputSummary) -> None:
    for warning in summary.warnings:
        console.note(f"warning: {summary.path}: {warning}")


def _cmd_submit(session: _Session) -> int:
    args = session.args
    batch = session.client.submit(
        args.file,
        endpoint=args.endpoint,
        completion_window=args.completion_window,
        metadata=_metadata(args),
        on_upload=lambda file: session.console.note(f"uploaded {args.file} as {file.id}"),
        idempotency_key=args.idempotency_key,
        strict=args.strict,
        on_validated=lambda summary: _show_warnings(session.console, summary),
    )
    if not args.wait:
        return _show_batch(session.console, batch, args.json)
    if not args.json:  # with --json, only the finished batch is printed
        _show_batch(session.console, batch, as_json=False)
    return _watch(session, batch.id)


def _cmd_wait(session: _Session) -> int:
    return _watch(session, session.args.id)


def _watch(session: _Session, batch_id: str) -> int:
    """Wait for a batch, showing its progress; the exit code says how it ended.

    With --json, nothing is shown while waiting and the finished batch is printed as JSON.
    """
    console, args = session.console, session.args
    progress = _LiveProgress(console)
    try:
        batch = session.client.batches.wait(
            batch_id,
            poll_interval=getattr(args, "interval", None),
            timeout=getattr(args, "wait_timeout", None),
            on_update=None if args.json else progress,
            on_error=None if args.json else progress.trouble,
        )
    except WaitTimeoutError as exc:  # one message: the batch goes on, and how to go on with it
        waited = f"{args.wait_timeout:g} s"
        console.note(
            f"error: gave up waiting after {waited}: {_still_running(batch_id, exc.batch)}"
        )
        return _EXIT_TIMEOUT
    except KeyboardInterrupt:
        console.end_live()
        console.note(_still_running(batch_id, progress.last))
        return _EXIT_INTERRUPTED
    except SystemExit:  # SIGTERM or SIGHUP: the batch goes on all the same
        console.end_live()
        console.note(_still_running(batch_id, progress.last))
        raise
    except APIError as exc:
        if progress.last is None:
            raise  # the first poll failed: a wrong id or key, not an outage
        console.note(f"error: polls failed for too long: {exc}")
        console.note(_still_running(batch_id, progress.last))
        return _EXIT_ERROR
    status = _text(batch.status)
    if args.json:
        console.line(batch.to_json())
        return _EXIT_OK if status == "completed" else _EXIT_ERROR
    console.end_live()
    _show_ending(console, batch)
    return _EXIT_OK if status == "completed" else _EXIT_ERROR


def _cmd_run(session: _Session) -> int:
    """A job: every request of INPUT, across as many batches as it takes, into RESULTS."""
    args, console = session.args, session.console
    show = _JobProgress(console, args.json)
    if not args.direct and args.concurrency is not None:
        raise _ArgumentError("--concurrency goes with --direct (a batch job has --max-active)")
    for flag in ("--max-requests-per-minute", "--max-tokens-per-minute"):
        if not args.direct and getattr(args, flag[2:].replace("-", "_")) is not None:
            raise _ArgumentError(f"{flag} goes with --direct (a batch has no such limit)")
    try:
        report = session.client.run(
            args.input,
            args.output,
            batch_size=args.batch_size,
            max_active=args.max_active,
            max_enqueued_tokens=args.max_enqueued_tokens,
            rounds=args.rounds,
            poll_interval=args.interval,
            keep_files=args.keep_files,
            on_event=show,
            cancel=args.cancel,
            direct=args.direct,
            concurrency=_given(args.concurrency, DEFAULT_CONCURRENCY),
            max_requests_per_minute=args.max_requests_per_minute,
            max_tokens_per_minute=args.max_tokens_per_minute,
            prices=_Prices(dict(args.price or ()), given_as="your --price"),
            max_cost=args.max_cost,
            dedupe=args.dedupe,
            cache=args.cache,
        )
    except KeyboardInterrupt:
        console.end_live()
        if args.direct:
            console.note("stopped. Run the same command again to send what has no answer yet.")
            return _EXIT_INTERRUPTED
        console.note(
            "stopped; the job's batches go on running on the server. Run the same command "
            "again to resume it, or add --cancel to cancel them."
        )
        return _EXIT_INTERRUPTED
    except SystemExit:  # SIGTERM or SIGHUP: the batches go on all the same
        console.end_live()
        console.note("stopped; run the same command again to resume the job")
        raise
    except JobStoppedError as exc:
        console.end_live()
        if exc.report is not None and not args.json:  # at the cap: what it has, as at an end
            _show_report(console, exc.report, args.output, args.direct)
        if args.json:  # why, as the last event; the message and hint follow on stderr
            event: dict[str, Any] = {"event": "stopped", "reason": exc.reason}
            event["message"] = str(exc)
            if exc.report is not None:  # stopped at the cost cap: what it wrote, and the cap
                from dataclasses import asdict

                event.update(needed=exc.needed, report=asdict(exc.report))
            console.line(json.dumps(event, ensure_ascii=False))
        raise
    console.end_live()
    if args.json:  # the report, as the last event
        from dataclasses import asdict

        console.line(json.dumps({"event": "report", **asdict(report)}, ensure_ascii=False))
    _show_report(console, report, args.output, args.direct)
    return _EXIT_OK if report.ok else _EXIT_ERROR


def _show_report(console: _Console, report: JobReport, output: str, direct: bool) -> None:
    """What a job did, in a line, and the next step for what did not succeed."""
    why = ", ".join(f"{count:,} {reason}" for reason, count in sorted(report.failures.items()))
    tokens = _tokens(report.usage)
    batches = f"{report.batches:,} {'batch' if report.batches == 1 else 'batches'}"
    console.note(
        f"{output}: {_plural(report.requests, 'request')}, {report.succeeded:,} "
        f"succeeded, {report.failed:,} failed{f' ({why})' if why else ''}; "
        f"{'sent directly' if direct else batches}, "
        f"{_plural(report.rounds, 'round')}{f', {tokens}' if tokens else ''}; "
        f"{_duration(report.seconds)}"
    )
    if report.usage or report.unpriced:
        console.note(_report_cost(report))
    if report.cache_hits or report.deduplicated:
        console.note(_report_unsent(report))
    if report.failed:
        console.note(f"next: openai-batch results {output} --failed shows them and why")
    if report.failures.get("HTTP 404"):
        console.note(_not_found_hint(report.failures["HTTP 404"], output))
    if report.files_left:
        console.note(
            f"{_plural(report.files_left, 'file')} of the job could not be deleted from the "
            "server; run the same command again to finish the clean-up"
        )


def _not_found_hint(count: int, output: str) -> str:
    """The next step for requests answered 404, by what the first one's answer names: a
    model the server does not have, or an address that is not the server's API."""
    first = next((result for result in iter_results(output) if result.status_code == 404), None)
    message = _clip((first.error_message if first else None) or "no message", 80)
    if "model" in message.lower():
        then = "that model is not on this server; `openai-batch models` lists what is"
    else:
        then = "the base URL may not be the server's API; it usually ends in /v1"
    return f"hint: {_plural(count, 'request')} got HTTP 404 ({message}): {then}"


def _report_cost(report: JobReport) -> str:
    """What a job's tokens cost, at whose prices, and what the Batch API saved; with no price
    known, the flag that gives one."""
    if report.cost is None:
        give = f": give --price {report.model}=IN,OUT[,CACHED]" if report.model else ""
        return f"cost: {report.cost_note}{give}"
    spend = {
        "cost": report.cost,
        "prices": report.prices,
        "standard_cost": report.standard_cost,
        "standard_prices": report.standard_prices,
    }
    note = f"; {report.cost_note}" if report.cost_note else ""
    return f"cost: {_spend_words(spend)}{note}"


def _report_unsent(report: JobReport) -> str:
    """The requests a job answered without sending them, and what that saved."""
    if report.saved is None:
        saved = f"{report.cost_note}" if report.cost_note else "no price known"
    else:
        saved = f"saved {_usd(report.saved)} at {report.prices}"
    return (
        f"{_plural(report.cache_hits, 'request')} answered from the cache, "
        f"{_plural(report.deduplicated, 'duplicate')} not sent; {saved}"
    )


def _cmd_cache_stats(session: _Session) -> int:
    """A cache: its answers and their tokens by model, the oldest and newest, the hits of
    the jobs that read it, and what they saved."""
    args, console = session.args, session.console
    prices = _Prices(dict(args.price or ()), given_as="your --price")
    with _open_cache(args.file) as cache:
        stats = cache.stats()
    for model, entry in stats["models"].items():
        spend = _spend(prices, model, entry["saved_usage"])
        entry["saved"], entry["prices"] = spend["cost"], spend["prices"]
    if args.json:
        console.line(json.dumps(stats, ensure_ascii=False))
        return _EXIT_OK
    rows = [
        [
            model,
            f"{entry['entries']:,}",
            _tokens(entry["usage"]) or "-",
            console.when(entry.get("oldest")),
            console.when(entry.get("newest")),
            f"{entry['hits']:,}",
            "-" if entry["saved"] is None else _usd(entry["saved"]),
        ]
        for model, entry in stats["models"].items()
    ]
    if not console.tty:  # numbers: tokens in and out, USD ("" with no price known)
        for model, entry in stats["models"].items():
            usage, saved = entry["usage"], entry["saved"]
            cells = [model, entry["entries"], usage.get("input_tokens", 0)]
            cells += [usage.get("output_tokens", 0), console.when(entry.get("oldest"))]
            cells += [console.when(entry.get("newest")), entry["hits"]]
            cells.append("" if saved is None else f"{saved:.6f}")
            console.line("\t".join(str(cell) for cell in cells))
        return _EXIT_OK
    console.line(f"{stats['path']}: {_plural(stats['entries'], 'answer')}, {_size(stats['bytes'])}")
    if rows:
        header = ["MODEL", "ANSWERS", "TOKENS", "OLDEST", "NEWEST", "HITS", "SAVED"]
        _table(console, header, rows, shrinkable=(0, 2), droppable=(3, 2))
        sources = sorted({entry["prices"] for entry in stats["models"].values() if entry["prices"]})
        if sources:  # whose prices SAVED is at: batch prices, whatever the jobs paid
            console.note(f"saved at {'; '.join(sources)}")
    return _EXIT_OK


def _cmd_cache_prune(session: _Session) -> int:
    """Delete a cache's answers older than some days, of a model, or both."""
    args, console = session.args, session.console
    if args.older_than is None and args.model is None:
        raise _ArgumentError("say what to prune: --older-than DAYS, --model MODEL, or both")
    before = None if args.older_than is None else console.clock() - args.older_than * 86400
    with _open_cache(args.file) as cache:
        removed = cache.prune(before, args.model)
        if args.vacuum:
            cache.vacuum()
        size = cache.size()
    if args.json:
        console.line(json.dumps({"removed": removed, "bytes": size}, ensure_ascii=False))
        return _EXIT_OK
    for model, count in removed.items():
        console.line(f"{model}\t{count}" if not console.tty else f"removed {count:,}  {model}")
    total = sum(removed.values())
    console.note(f"{args.file}: {_plural(total, 'answer')} removed, {_size(size)} now")
    return _EXIT_OK


def _open_cache(path: str) -> _Cache:
    """A cache that is there: stats and prune never make one."""
    if os.path.isdir(path):
        raise OpenAIError(f"{path} is a folder; a cache is a file, named in full")
    if not os.path.isfile(path):
        raise OpenAIError(
            f"there is no cache at {path}; `openai-batch run INPUT -o RESULTS --cache {path}` "
            "makes one"
        )
    return _Cache(path, existing=True)


def _cmd_download(session: _Session) -> int:
    batch = session.client.batches.retrieve(session.args.id)
    paths = session.client.download(batch, session.args.output_dir)
    for path in paths:
        session.console.line(path)
    if not paths:
        session.console.note(f"{batch.id} is {_text(batch.status)} and has no files to download.")
        return _EXIT_OK if batch.is_terminal else _EXIT_ERROR
    return _EXIT_OK


def _cmd_results(session: _Session) -> int:
    import tempfile

    args, console = session.args, session.console
    if os.path.isfile(args.id):  # a results file at hand, such as run's RESULTS
        if _is_requests(args.id):
            raise _RequestsNotResults(args.id)
        results = iter_results(args.id)
        pairs = join_results(args.input, results) if args.input else ((None, r) for r in results)
        if args.failed:
            pairs = (pair for pair in pairs if _failed(pair[1], False))
        if not _show_results(console, pairs, args.json) and args.failed:
            console.note(f"no failed requests: every request in {args.id} succeeded")
        return _EXIT_OK
    batch = session.client.batches.retrieve(args.id)
    if batch.status == "failed" and not (batch.output_file_id or batch.error_file_id):
        _show_ending(console, batch)  # no request ran: the batch's own errors say why
        return _EXIT_ERROR
    running = not batch.is_terminal
    if running and args.partial and not (batch.output_file_id or batch.error_file_id):
        console.note(
            f"no results yet: {batch.id} is still {_text(batch.status)}, and a batch writes "
            "its results when it ends"
        )
        return _EXIT_OK
    tally = _Tally()
    with tempfile.TemporaryDirectory(prefix="openai-batch-") as directory:
        pairs = tally(_joined(session, batch, directory))
        if args.failed:
            pairs = (pair for pair in pairs if _failed(pair[1], running))
        shown = _show_results(console, pairs, args.json, running)
    if args.input and tally.results and not tally.matched:
        console.note(
            f"warning: none of the {_plural(tally.results, 'result')} of {batch.id} matches a "
            f"request in {args.input}; is it the batch's input file?"
        )
    if args.failed and not shown:
        console.note(f"no failed requests: every request of {batch.id} succeeded")
    return _EXIT_OK


class _RequestsNotResults(OpenAIError):
    """A file given to ``results`` that holds requests (an input file), not their results."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} holds requests (its lines have method and url, and no response), not results"
        )
        self.path = path


def _is_requests(path: str) -> bool:
    """Whether a file's first line is a request of an input file, not a result."""
    with open(path, "rb") as handle:
        first = next((line for line in handle if line.strip()), b"")
    try:
        line = json.loads(first)
    except ValueError:
        return False  # what is wrong with it is for the results reader to say
    return isinstance(line, dict) and "method" in line and "url" in line and "response" not in line


def _failed(result: BatchResult | None, running: bool) -> bool:
    """Whether a request failed or did not run; while the batch runs, no result is pending."""
    return not running if result is None else not result.ok


class _Tally:
    """Counts, as pairs go by, the results and those that matched a request."""

    def __init__(self) -> None:
        self.results = self.matched = 0

    def __call__(
        self, pairs: Iterable[tuple[BatchRequest | None, BatchResult | None]]
    ) -> Iterator[tuple[BatchRequest | None, BatchResult | None]]:
        for request, result in pairs:
            self.results += result is not None
            self.matched += result is not None and request is not None
            yield request, result


def _show_results(
    console: _Console,
    pairs: Iterable[tuple[BatchRequest | None, BatchResult | None]],
    as_json: bool,
    running: bool = False,
) -> int:
    """Print joined results as JSON lines, a table or TSV; return how many were shown.

    While the batch still ``running``, a request with no result is pending, not missing.
    """
    shown = 0
    if as_json:
        for request, result in pairs:
            line = result.to_dict() if result else _missing_result(request)
            console.line(json.dumps(line, ensure_ascii=False))
            shown += 1
    elif console.tty:
        rows = [_result_cells(*pair, running) for pair in pairs]
        if rows:
            _table(console, ["CUSTOM_ID", "RESULT", "STATUS", "DETAIL"], rows, shrinkable=(3, 0))
        shown = len(rows)
    else:
        for pair in pairs:
            console.line("\t".join(_result_cells(*pair, running)))
            shown += 1
    return shown


def _missing_result(request: BatchRequest | None) -> dict[str, Any]:
    custom_id = request.custom_id if request else ""
    return {"id": None, "custom_id": custom_id, "response": None, "error": None}


def _joined(
    session: _Session, batch: Batch, directory: str
) -> Iterator[tuple[BatchRequest | None, BatchResult | None]]:
    """Results joined to their requests when the input is at hand, else results alone."""
    results = session.client.results(batch, partial=session.args.partial)
    try:
        requests = session.input_file(batch, directory)
    except APIStatusError as exc:
        session.console.note(
            f"note: the input file is not available ({exc.message}); "
            "requests without a result are not shown."
        )
        return ((None, result) for result in results)
    return join_results(requests, results)


def _cmd_retry(session: _Session) -> int:
    import tempfile

    args = session.args
    batch = session.client.batches.retrieve(args.id)
    if not batch.is_terminal:
        raise OpenAIError(
            f"{batch.id} is still {_text(batch.status)}; its unfinished requests may yet run. "
            "Retry once it has finished, or cancel it first."
        )
    errors = _error_list(batch) if batch.status == "failed" else []
    quota = any(error.code == "token_limit_exceeded" for error in errors)
    if errors and not quota:
        first = _batch_errors(batch)[0]
        session.console.note(
            f"warning: {batch.id} failed before any request ran ({first}); its lines will "
            "fail the same way again unless you fix them first"
        )
    existed = os.path.exists(args.output)
    refused = _Refused()
    with tempfile.TemporaryDirectory(prefix="openai-batch-") as directory:
        requests = session.input_file(batch, directory)
        results = refused(session.client.results(batch))
        count = write_failed_requests(requests, results, args.output, refused=False)
    if refused.count:
        session.console.note(
            f"left out {_plural(refused.count, 'request')} refused with HTTP 400, which would "
            f"fail the same way again; `openai-batch results {batch.id} --failed` shows why"
        )
    if not count:
        gone = f"; removed the old {args.output}" if existed else ""
        what = "every other request" if refused.count else "every request"
        session.console.note(f"nothing to retry: {what} of {batch.id} succeeded{gone}")
        return _EXIT_OK
    session.console.note(f"wrote {_plural(count, 'request')} to {args.output}")
    session.console.note(_retry_next(args.output, bool(errors) and not quota, quota))
    return _EXIT_OK


def _retry_next(output: str, invalid: bool, quota: bool) -> str:
    """What to do with a retry file: fix it first, wait for room first, or submit it."""
    if invalid:
        return f"next: fix its lines, then openai-batch submit {output}"
    if quota:
        return (
            f"next: once running batches finish, openai-batch submit {output} (the lines are "
            "fine; the enqueued-token limit was full)"
        )
    return f"next: openai-batch submit {output}"


class _Refused:
    """Counts, as results go by, those the server refused with HTTP 400."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, results: Iterable[BatchResult]) -> Iterator[BatchResult]:
        for result in results:
            self.count += result.status_code == 400
            yield result


###############################################################################################
# Command line: arguments and main
###############################################################################################


def _key_value(text: str) -> tuple[str, str]:
    import argparse

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _endpoint(text: str) -> str:
    """An endpoint as /v1/..., also when given as chat/completions or /chat/completions."""
    path = text if text.startswith("/v1/") else "/v1/" + text.lstrip("/")
    return path


def _since(text: str) -> tuple[float, float | None]:
    """--since: 90s, 30m, 2h, 3d, 1w back from now; a date (2024-05-01); or a Unix time.

    Returns (seconds back, time): the time is None for a duration, so that "now" can be the
    client's clock, and a time of 0 (1970-01-01) is a time like any other.
    """
    import argparse
    import datetime

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return float(text[:-1]) * units[text[-1]], None
    if text.replace(".", "", 1).isdigit() and float(text) <= _LATEST_DATE:
        return 0.0, float(text)
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected a duration like 2h or 3d, a date like 2024-05-01, or a Unix time; "
            f"got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return 0.0, parsed.timestamp()


def _days(text: str) -> float:
    """``cache prune --older-than``'s DAYS: a finite number, 0 or more."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 100_000):
        raise argparse.ArgumentTypeError(f"expected a number of days, 0 or more: {text!r}")
    return value


def _number(low: float, high: float, whole: bool = False) -> Callable[[str], float]:
    """An argparse type for a finite number from ``low`` to ``high`` (a whole one if asked)."""

    def parse(text: str) -> float:
        import argparse
        import math

        try:
            value = int(text) if whole else float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high) or (not whole and value <= 0):
            kind = "a whole number" if whole else "a number of seconds"
            raise argparse.ArgumentTypeError(
                f"expected {kind} from {low:g} to {high:g}, got {text!r}"
            ) from None
        return value

    return parse


def _setting(name: str) -> Callable[[str], float]:
    """An argparse type for a job setting, with the bounds the library declares for it."""
    low, high, _ = _JOB_SETTINGS[name]
    return _number(low, high, whole=name not in _FRACTIONAL)


_SECONDS = _number(0.1, 86400.0)  # a request: up to a day
_WAIT_SECONDS = _number(0, 31 * 86400.0)  # a wait: longer than any batch's window
_INTERVAL = _number(0.1, 3600.0)  # not a tight loop of polls
_COUNT = _number(1, 1_000_000, whole=True)
_RETRIES = _number(0, 100, whole=True)
_EXPIRY = _number(3600, 2_592_000, whole=True)  # output_expires_after: an hour to 30 days


def _path(text: str) -> str:
    """A path given on the command line, with ``~`` expanded as a shell would (``-o=~/x``)."""
    return os.path.expanduser(text)


_API_KEY_HELP = (
    "API key (prefer the OPENAI_API_KEY variable: a key given here is visible to other users "
    "in the process list and stays in your shell history)"
)


def _price_argument(text: str) -> tuple[str, tuple[float, ...]]:
    """--price MODEL=IN,OUT[,CACHED]: a model's price in USD per million tokens."""
    import argparse

    model, _, figures = text.partition("=")
    values = figures.split(",")
    try:
        numbers = tuple(float(value) for value in values)
    except ValueError:
        numbers = ()
    if not model or not 2 <= len(numbers) <= 3 or not all(0 <= n < math.inf for n in numbers):
        raise argparse.ArgumentTypeError(
            "expected MODEL=IN,OUT[,CACHED] in USD per million tokens (gpt-4o=1.25,5), "
            f"got {text!r}"
        )
    return model, numbers


def _global_options(parser: Any, suppress: bool, request_timeout: bool = True) -> None:
    """Options every command takes, before or after its name.

    After ``wait`` and ``submit``, --timeout is how long to wait for the batch instead.
    """
    import argparse

    default = {"default": argparse.SUPPRESS} if suppress else {}
    group = parser.add_argument_group("connection")
    group.add_argument("--api-key", metavar="KEY", help=_API_KEY_HELP, **default)
    group.add_argument(
        "--base-url", metavar="URL", help="API base URL (OPENAI_BASE_URL)", **default
    )
    group.add_argument(
        "--organization", metavar="ORG", help="organization id (OPENAI_ORG_ID)", **default
    )
    group.add_argument(
        "--project", metavar="PROJECT", help="project id (OPENAI_PROJECT_ID)", **default
    )
    if request_timeout:
        group.add_argument(
            "--timeout", type=_SECONDS, metavar="S", help="seconds per request (600)", **default
        )
    group.add_argument(
        "--max-retries", type=_RETRIES, metavar="N", help="retries per request (2)", **default
    )
    group.add_argument(
        "--azure",
        action="store_true",
        help="talk to Azure OpenAI (so does AZURE_OPENAI_ENDPOINT, when set)",
        **default,
    )


def _parser() -> Any:
    parser_class = _parser_class()
    common = parser_class(add_help=False)
    _global_options(common, suppress=True)
    waiting = parser_class(add_help=False)
    _global_options(waiting, suppress=True, request_timeout=False)
    parser = parser_class(
        prog="openai-batch",
        description="The OpenAI Batch API from the command line. "
        "The key comes from OPENAI_API_KEY.",
        epilog="Output is a table on a terminal, tab-separated in a pipe, JSON with --json. "
        "Exit codes: 0 ok, 1 error or unsuccessful batch, 2 usage, 124 wait timed out, "
        "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _batch_commands(commands, common)
    _file_commands(commands, common)
    _workflow_commands(commands, common, waiting)
    _webhook_commands(commands, common)
    return parser


def _parser_class() -> Any:
    """argparse's parser, with error messages that never repeat a key typed by mistake."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            if message.endswith(("required: COMMAND", "required: VERB")):
                self.print_help(sys.stderr)  # no command given: show them all
                self.exit(_EXIT_USAGE)
            self.print_usage(sys.stderr)
            message = _redact(message, None) + _did_you_mean(self, message)
            self.exit(_EXIT_USAGE, f"{self.prog}: error: {message}\n")

    return Parser


def _did_you_mean(parser: Any, message: str) -> str:
    """For a mistyped command, the closest one (`lst` -> list), as a sentence to append."""
    import argparse
    import difflib
    import re

    typed = re.search(r"invalid choice: '?([^'\s]+)", message)
    for action in parser._actions:
        if typed and isinstance(action, argparse._SubParsersAction):
            close = difflib.get_close_matches(typed.group(1), list(action.choices), n=1)
            if close:
                return f"; did you mean {close[0]!r}?"
    return ""


def _redact(text: str, key: str | None) -> str:
    """``text`` without the key, nor anything that looks like an OpenAI key."""
    import re

    for secret in (key, os.environ.get("OPENAI_API_KEY")):
        if secret:
            text = text.replace(secret, "[redacted]")
    return re.sub(r"\bsk-[A-Za-z0-9_-]{8,}", "sk-[redacted]", text)


def _add(
    commands: Any, common: Any, name: str, run: Callable[[_Session], int], help: str, **extra: Any
) -> Any:
    command = commands.add_parser(name, parents=[common], help=help, description=help, **extra)
    command.set_defaults(run=run)
    return command


def _json_flag(command: Any) -> None:
    command.add_argument("--json", action="store_true", help="print the API's JSON")


def _list_command(commands: Any, common: Any) -> None:
    statuses = [status.value for status in BatchStatus]
    listing = _add(commands, common, "list", _cmd_list, "list batches, newest first")
    listing.add_argument(
        "--limit", type=_COUNT, metavar="N", help="show at most N batches (20; no limit with --all)"
    )
    listing.add_argument("--after", metavar="ID", help="start after this batch id")
    listing.add_argument("--all", action="store_true", help="every batch, fetching pages as needed")
    listing.add_argument(
        "--status",
        action="append",
        choices=statuses,
        metavar="STATUS",
        help="only this status (repeatable): " + ", ".join(statuses),
    )
    listing.add_argument("--endpoint", type=_endpoint, metavar="E", help="only this endpoint")
    listing.add_argument(
        "--metadata",
        action="append",
        type=_key_value,
        metavar="KEY=VALUE",
        help="only batches with this metadata (repeatable)",
    )
    listing.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="only batches created since WHEN (2h, 3d, 2024-05-01)",
    )
    _json_flag(listing)


def _batch_commands(commands: Any, common: Any) -> None:
    _list_command(commands, common)
    for name, run, text, aliases in (
        ("get", _cmd_get, "show a batch", ["retrieve"]),
        ("cancel", _cmd_cancel, "cancel a batch", []),
    ):
        command = _add(commands, common, name, run, text, aliases=aliases)
        command.add_argument("id", metavar="ID", help="batch id")
        _json_flag(command)
    create = _add(commands, common, "create", _cmd_create, "start a batch from an uploaded file")
    create.add_argument(
        "--input-file-id", required=True, metavar="F", help="id of the uploaded input file"
    )
    create.add_argument(
        "--endpoint", required=True, type=_endpoint, metavar="E", help="e.g. /v1/chat/completions"
    )
    _batch_options(create)
    create.add_argument(
        "--output-expires-after",
        type=_EXPIRY,
        metavar="SECONDS",
        help="delete the output files this long after they are made (3600-2592000)",
    )
    _json_flag(create)


def _batch_options(command: Any) -> None:
    command.add_argument(
        "--completion-window", default="24h", metavar="W", help="24h (the only one)"
    )
    command.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="a key of your own: run again with it, the command returns the batch it made "
        "instead of making another",
    )
    command.add_argument(
        "--metadata",
        action="append",
        type=_key_value,
        metavar="KEY=VALUE",
        help="attach metadata (repeatable; at most 16 pairs)",
    )


def _file_commands(commands: Any, common: Any) -> None:
    models = _add(commands, common, "models", _cmd_models, "list the models the server serves")
    _json_flag(models)
    upload = _add(commands, common, "upload", _cmd_upload, "upload a file")
    upload.add_argument("file", type=_path, metavar="FILE")
    upload.add_argument("--purpose", default="batch", help="batch (default) or another purpose")
    _json_flag(upload)
    files = commands.add_parser(
        "files", parents=[common], help="list, show, delete or download files"
    )
    verbs = files.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    listing = _add(verbs, common, "list", _cmd_files_list, "list files, newest first")
    listing.add_argument("--purpose", help="only this purpose (batch, batch_output, ...)")
    listing.add_argument("--limit", type=_COUNT, metavar="N", help="files per page")
    listing.add_argument("--order", choices=["asc", "desc"], help="by creation time (desc)")
    listing.add_argument("--all", action="store_true", help="every page")
    _json_flag(listing)
    for name, run, text in (
        ("get", _cmd_files_get, "show a file"),
        ("delete", _cmd_files_delete, "delete a file"),
    ):
        command = _add(verbs, common, name, run, text)
        command.add_argument("id", metavar="ID", help="file id")
        _json_flag(command)
    content = _add(verbs, common, "content", _cmd_files_content, "print or save a file's content")
    content.add_argument("id", metavar="ID", help="file id")
    content.add_argument(
        "-o", "--output", type=_path, metavar="FILE", help="save to FILE (atomically) instead"
    )


def _verbs(commands: Any, common: Any, name: str, what: str) -> Any:
    """A command of several verbs (``webhooks create``, ``cache stats``): the verbs' parser."""
    command = commands.add_parser(name, parents=[common], help=what)
    verbs = command.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    return verbs


def _webhook_commands(commands: Any, common: Any) -> None:
    verbs = _verbs(commands, common, "webhooks", "make, list, test or delete webhook endpoints")
    create = _add(verbs, common, "create", _cmd_webhooks_create, "make a webhook endpoint")
    create.add_argument("url", metavar="URL", help="the HTTPS URL that receives the events")
    create.add_argument("--name", metavar="N", help="a name for it (the URL's host)")
    create.add_argument(
        "--event-type",
        action="append",
        metavar="T",
        help="an event type to send it (repeatable; the four batch.* ones)",
    )
    _json_flag(create)
    listing = _add(verbs, common, "list", _cmd_webhooks_list, "list webhook endpoints")
    listing.add_argument("--limit", type=_COUNT, metavar="N", help="endpoints per page (20)")
    listing.add_argument("--all", action="store_true", help="every page")
    _json_flag(listing)
    for name, run, text in (
        ("get", _cmd_webhooks_get, "show a webhook endpoint"),
        ("delete", _cmd_webhooks_delete, "delete a webhook endpoint"),
        ("test", _cmd_webhooks_test, "send a webhook endpoint a sample event"),
        ("rotate-secret", _cmd_webhooks_rotate_secret, "give an endpoint a new signing secret"),
    ):
        command = _add(verbs, common, name, run, text)
        command.add_argument("id", metavar="ID", help="webhook endpoint id")
        _json_flag(command)
        if name == "test":
            command.add_argument(
                "--event-type", default="batch.completed", metavar="T", help="(batch.completed)"
            )
        if name == "rotate-secret":
            command.add_argument(
                "--keep-old-secret",
                action="store_true",
                help="keep the old secret valid for 24 hours",
            )


def _workflow_commands(commands: Any, common: Any, waiting: Any) -> None:
    """validate, submit and wait."""
    # validate sends nothing unless --check-models asks; it takes the options all the same,
    # before or after its name, as every command does (and --azure picks Azure's rules)
    validate = _add(commands, common, "validate", _cmd_validate, "check an input file offline")
    validate.add_argument("file", type=_path, metavar="FILE")
    validate.add_argument(
        "--endpoint", type=_endpoint, metavar="E", help="the endpoint every line must use"
    )
    validate.add_argument(
        "--strict", action="store_true", help="treat warnings (uncertain rules) as errors"
    )
    validate.add_argument(
        "--check-models",
        action="store_true",
        help="warn if the server does not list the file's model (needs the key)",
    )
    _price_option(validate, "for the estimate")
    _json_flag(validate)
    submit = _add(commands, waiting, "submit", _cmd_submit, "validate, upload and start a batch")
    submit.add_argument("file", type=_path, metavar="FILE")
    submit.add_argument("--endpoint", type=_endpoint, metavar="E", help="(read from the lines)")
    submit.add_argument(
        "--strict", action="store_true", help="refuse a file with warnings (uncertain rules)"
    )
    _batch_options(submit)
    submit.add_argument("--wait", action="store_true", help="then wait for it to finish")
    _wait_options(submit)
    _json_flag(submit)
    wait = _add(
        commands, waiting, "wait", _cmd_wait, "wait for a batch to finish, showing progress"
    )
    wait.add_argument("id", metavar="ID", help="batch id")
    _wait_options(wait)
    _json_flag(wait)
    _finished_commands(commands, common)
    _run_command(commands, common)
    _cache_commands(commands, common)


def _run_command(commands: Any, common: Any) -> None:
    run = _add(
        commands,
        common,
        "run",
        _cmd_run,
        "run a file of any size across many batches; run it again to resume",
        epilog="The job's record is kept in RESULTS.job/ beside RESULTS: the same command, run "
        "again after any crash, resumes it and never makes a batch twice.",
    )
    run.add_argument("input", type=_path, metavar="INPUT")
    run.add_argument("-o", "--output", required=True, type=_path, metavar="RESULTS")
    run.add_argument(
        "--batch-size",
        type=_setting("batch_size"),
        default=MAX_REQUESTS,
        metavar="N",
        help=f"requests per batch ({MAX_REQUESTS:,})",
    )
    run.add_argument(
        "--max-active",
        type=_setting("max_active"),
        default=DEFAULT_MAX_ACTIVE,
        metavar="N",
        help=f"batches running at once ({DEFAULT_MAX_ACTIVE})",
    )
    run.add_argument(
        "--max-enqueued-tokens",
        type=_setting("max_enqueued_tokens"),
        metavar="T",
        help="prompt tokens in flight at most (estimated as characters / 4)",
    )
    run.add_argument(
        "--rounds",
        type=_setting("rounds"),
        default=DEFAULT_ROUNDS,
        metavar="R",
        help=f"rounds for what failed in a way that may pass ({DEFAULT_ROUNDS})",
    )
    run.add_argument(
        "--interval",
        type=_setting("poll_interval"),
        metavar="S",
        help="first pause between polls (2 s; it grows while no batch ends)",
    )
    run.add_argument("--keep-files", action="store_true", help="keep the job's files on the server")
    run.add_argument(
        "--cancel",
        action="store_true",
        help="cancel the job's running batches and end it with what they did",
    )
    _price_option(run, "for the estimate, the spend and --max-cost")
    run.add_argument(
        "--max-cost",
        type=_setting("max_cost"),
        metavar="USD",
        help="spend at most this on the job, reruns included: work starts only if its worst "
        "case fits; at the cap the job stops, keeping all it has",
    )
    _direct_options(run)
    run.add_argument(
        "--dedupe",
        action="store_true",
        help="send requests with the same endpoint and body once, each custom_id getting the "
        "answer (off by default: sampling above temperature 0 wants distinct answers)",
    )
    run.add_argument(
        "--cache",
        type=_path,
        metavar="FILE",
        help="answer requests from this SQLite file of earlier jobs' answers, unsent, and add "
        "the new ones to it (made if missing; jobs may share it)",
    )
    run.add_argument("--json", action="store_true", help="print each event as a JSON line")


def _cache_commands(commands: Any, common: Any) -> None:
    verbs = _verbs(commands, common, "cache", "show or trim a cache of answers (run --cache FILE)")
    stats = _add(verbs, common, "stats", _cmd_cache_stats, "show what a cache holds and saved")
    stats.add_argument("file", type=_path, metavar="FILE")
    _price_option(stats, "for what the hits saved")
    stats.add_argument("--json", action="store_true", help="print the figures as JSON")
    prune = _add(verbs, common, "prune", _cmd_cache_prune, "delete a cache's older answers")
    prune.add_argument("file", type=_path, metavar="FILE")
    prune.add_argument(
        "--older-than",
        type=_days,
        metavar="DAYS",
        help="answers added more than DAYS ago",
    )
    prune.add_argument("--model", metavar="MODEL", help="answers of this model")
    prune.add_argument(
        "--vacuum", action="store_true", help="give the freed space back to the file system"
    )
    prune.add_argument("--json", action="store_true", help="print what was removed as JSON")


def _price_option(parser: Any, what: str) -> None:
    parser.add_argument(
        "--price",
        action="append",
        type=_price_argument,
        metavar="MODEL=IN,OUT[,CACHED]",
        help=f"a model's batch price in USD per million tokens, {what}",
    )


def _direct_options(run: Any) -> None:
    run.add_argument(
        "--direct",
        action="store_true",
        help="no Batch API: send each request straight to the server, RESULTS as a batch's",
    )
    run.add_argument(
        "--concurrency",
        type=_setting("concurrency"),
        metavar="N",
        help=f"--direct: requests in flight at most ({DEFAULT_CONCURRENCY}; fewer on 429s)",
    )
    run.add_argument(
        "--max-requests-per-minute",
        type=_setting("max_requests_per_minute"),
        metavar="R",
        help="--direct: requests sent per minute at most",
    )
    run.add_argument(
        "--max-tokens-per-minute",
        type=_setting("max_tokens_per_minute"),
        metavar="T",
        help="--direct: tokens per minute at most (prompts estimated as characters / 4)",
    )


def _finished_commands(commands: Any, common: Any) -> None:
    """What to do with a finished batch: download, results and retry."""
    download = _add(
        commands, common, "download", _cmd_download, "save a batch's output and error files"
    )
    download.add_argument("id", metavar="ID", help="batch id")
    download.add_argument(
        "-o", "--output-dir", default=".", type=_path, metavar="DIR", help="directory (.)"
    )
    results = _add(
        commands, common, "results", _cmd_results, "one line per request, in input order"
    )
    results.add_argument("id", metavar="ID", help="batch id, or a results file such as run's")
    results.add_argument(
        "--failed", action="store_true", help="only requests that failed or did not run"
    )
    results.add_argument(
        "--partial", action="store_true", help="what has arrived, while the batch still runs"
    )
    results.add_argument(
        "--input", type=_path, metavar="FILE", help="the input file (default: fetch it)"
    )
    _json_flag(results)
    retry = _add(
        commands, common, "retry", _cmd_retry, "write the requests that failed to a new input file"
    )
    retry.add_argument("id", metavar="ID", help="batch id")
    retry.add_argument(
        "-o", "--output", required=True, type=_path, metavar="FILE", help="the new input file"
    )
    retry.add_argument(
        "--input", type=_path, metavar="FILE", help="the input file (default: fetch it)"
    )


def _wait_options(command: Any) -> None:
    command.add_argument(
        "--interval",
        type=_INTERVAL,
        metavar="S",
        help="seconds between polls (2 s, growing to 60 s)",
    )
    command.add_argument(
        "--deadline",
        dest="wait_timeout",
        type=_WAIT_SECONDS,
        metavar="S",
        help="give up waiting after S seconds (exit 124); the batch goes on",
    )
    command.add_argument(
        "--timeout",
        dest="wait_timeout",
        type=_WAIT_SECONDS,
        metavar="S",
        help="the same as --deadline here, kept for old scripts; before the command, "
        "--timeout is the timeout of each request",
    )


def _report(exc: BaseException, console: _Console, key: str | None, command: str = "") -> int:
    """Print an expected error as one short message with a hint; return its exit code."""
    if isinstance(exc, InputFileError):
        count = sum(max(len(lines), 1) for lines in exc.lines) + exc.more
        console.note(f"error: {exc.path}: {_plural(count, 'problem')}")
        for entry in exc.entries():
            console.note(f"  {entry}")
        if exc.more:
            console.note(f"  ... and {exc.more:,} more")
        return _EXIT_ERROR
    if not isinstance(exc, (OpenAIError, OSError, ValueError)):
        # Not a failure this module expects: name it, since its text alone may say little.
        exc_text = f"{type(exc).__name__}: {exc} (unexpected; please report it)"
        console.note(f"error: {_redact(exc_text, key)}")
        return _EXIT_ERROR
    console.note(f"error: {_redact(_describe(exc), key)}")
    hint = _hint(exc, command)
    if hint:
        console.note(f"hint: {hint}")
    return _EXIT_USAGE if isinstance(exc, _ArgumentError) else _EXIT_ERROR


def _describe(exc: BaseException) -> str:
    """An error as one line for a person: a missing file reads "No such file: x.jsonl"."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        plain = isinstance(exc, FileNotFoundError) and exc.strerror != "No such folder"
        reason = "No such file" if plain else exc.strerror
        return f"{reason}: {exc.filename}"
    return str(exc)


def _hint(exc: BaseException, command: str = "") -> str | None:
    """The next thing to try after an error, fitted to the command that met it."""
    for applies, hint in _HINTS:
        if applies(exc, command):
            return hint if isinstance(hint, str) else hint(exc)
    return None


def _path_of(exc: BaseException) -> str:
    """The path of the URL an API error came from ("" for any other error)."""
    from urllib.parse import urlsplit

    request = exc.request if isinstance(exc, APIError) else None
    return urlsplit(request.url).path if request is not None else ""


def _not_here(exc: BaseException) -> bool:
    """A 404 or 405: the server has nothing at that path, or not for that method."""
    return isinstance(exc, APIStatusError) and exc.status_code in (404, 405)


def _collection(exc: BaseException) -> bool:
    """An error from the Batch API's own lists (/batches, /files), with no id after them."""
    return _path_of(exc).rstrip("/").endswith(("/batches", "/files"))


def _under_endpoint(exc: BaseException) -> bool:
    """Whether the base URL went on past /v1 to an endpoint (.../chat/completions/batches)."""
    path = _path_of(exc)
    return any(f"{endpoint.value[3:]}/" in path for endpoint in BatchEndpoint)


def _batch_of(exc: BaseException) -> str:
    """The batch id in the URL an error came from, or ""."""
    return _path_of(exc).partition("/batches/")[2].split("/", 1)[0]


_TRANSIENT = (APIConnectionError, InternalServerError, RateLimitError)
_STOPPED = {
    "outage": "run the same command again once the server answers",
    "credentials": "check the key (OPENAI_API_KEY), then run the same command again: the "
    "answers so far are kept",
    "address": "check --base-url (for vLLM, llama.cpp and Ollama it ends in /v1) and the key, "
    "then run the same command again",
    "quota": "add credit to the account, then run the same command again",
}
_MODELS = "that model is not on this server; `openai-batch models` lists what is"
_V1 = (
    "the server has no such endpoint here; an OpenAI-compatible server's base URL usually ends "
    "in /v1 (--base-url http://host:8000/v1)"
)

#: What went wrong, in which command -> the next step. The first rule that applies gives the
#: hint: a test of the error and the command's name, and the hint (or what makes it from the
#: error). The library's errors state facts; only these name flags and commands.
_HINTS: list[tuple[Callable[[BaseException, str], bool], str | Callable[[Any], str]]] = [
    (
        lambda e, c: (
            isinstance(e, JobStoppedError) and e.error is not None and _names_model(e.error)
        ),
        _MODELS,
    ),
    (
        lambda e, c: isinstance(e, JobStoppedError) and "but got text/html" in str(e),
        "the server answers with a web page, not its API; an OpenAI-compatible server's base "
        "URL usually ends in /v1 (--base-url http://host:8000/v1)",
    ),
    (
        lambda e, c: isinstance(e, JobStoppedError) and e.reason == "max_cost",
        lambda e: (
            f"to send the rest, run the same command again with --max-cost {e.needed:.2f} (or "
            "what you will spend)"
        ),
    ),
    (lambda e, c: isinstance(e, JobStoppedError), lambda e: _STOPPED[e.reason]),
    (
        lambda e, c: isinstance(e, APIConnectionError) and "not a URL" in str(e),
        "check the base URL (--base-url, or OPENAI_BASE_URL): nothing was sent",
    ),
    (
        lambda e, c: isinstance(e, OpenAIError) and str(e).startswith("another process is running"),
        "let it finish, or stop it (Ctrl-C) and run the same command again",
    ),
    (lambda e, c: isinstance(e, NotFoundError) and _names_model(e), _MODELS),
    (
        lambda e, c: _not_here(e) and _under_endpoint(e),
        "the base URL goes on past /v1 to an endpoint; give it only up to /v1 "
        "(--base-url http://host:8000/v1)",
    ),
    (
        lambda e, c: _not_here(e) and _collection(e) and _path_of(e).startswith("/v1/"),
        "this server has no Batch API; send the file straight to it with `run --direct`",
    ),
    (lambda e, c: _not_here(e) and (_collection(e) or "Invalid URL" in str(e)), _V1),
    (
        lambda e, c: c in ("wait", "submit") and isinstance(e, _TRANSIENT) and bool(_batch_of(e)),
        lambda e: (
            f"{_batch_of(e)} goes on running on the server; wait for it again with "
            f"`openai-batch wait {_batch_of(e)}`"
        ),
    ),
    (
        lambda e, c: c == "run" and isinstance(e, _TRANSIENT),
        "the job is kept beside RESULTS: run the same command again to resume it",
    ),
    (
        lambda e, c: isinstance(e, OutcomeUnknownError) and bool(e.idempotency_key),
        lambda e: f"run the same command again with --idempotency-key {e.idempotency_key}",
    ),
    (
        lambda e, c: isinstance(e, OutcomeUnknownError),
        "`openai-batch list` shows whether the batch was made",
    ),
    (
        lambda e, c: isinstance(e, DuplicateBatchError),
        lambda e: f"cancel the duplicate by hand: openai-batch cancel {e.duplicate_id}",
    ),
    (
        lambda e, c: isinstance(e, BatchNotFinishedError),
        lambda e: (
            f"openai-batch wait {e.batch.id}, then again; or add --partial for what has arrived"
        ),
    ),
    (
        lambda e, c: isinstance(e, AuthenticationError),
        "check the key in OPENAI_API_KEY (and --organization/--project if you use them)",
    ),
    (
        lambda e, c: (
            isinstance(e, NotFoundError)
            and "/files/" in _path_of(e)
            and c in ("results", "download", "retry")
        ),
        "the batch's files have expired or been deleted (they are kept 30 days)",
    ),
    (
        lambda e, c: isinstance(e, NotFoundError) and "/files/" in _path_of(e),
        "check the file id; `openai-batch files list` shows your files",
    ),
    (
        lambda e, c: isinstance(e, NotFoundError) and "/webhook_endpoints/" in _path_of(e),
        "check the id; `openai-batch webhooks list` shows your webhook endpoints",
    ),
    (
        lambda e, c: isinstance(e, NotFoundError) and bool(_batch_of(e)),
        "check the id; `openai-batch list` shows your batches",
    ),
    (
        lambda e, c: isinstance(e, RateLimitError),
        "the API is limiting requests; try again in a while",
    ),
    (
        lambda e, c: (
            c == "cancel" and isinstance(e, APIStatusError) and e.status_code in (400, 409)
        ),
        "the batch has already finished, so there is nothing to cancel (openai-batch get ID)",
    ),
    (
        lambda e, c: isinstance(e, APIConnectionError),
        "check the network, HTTPS_PROXY and --base-url",
    ),
    (
        lambda e, c: c == "run" and isinstance(e, _ArgumentError) and e.setting == "output",
        "give RESULTS another path (-o)",
    ),
    (
        lambda e, c: isinstance(e, _RequestsNotResults),
        "give the batch's id (openai-batch results BATCH_ID --input FILE), or the RESULTS "
        "file that `openai-batch run` wrote",
    ),
    (
        lambda e, c: "OPENAI_API_VERSION" in str(e),
        "export OPENAI_API_VERSION=2024-10-21 (the Azure OpenAI API version to use)",
    ),
    (
        lambda e, c: "AZURE_OPENAI_API_KEY" in str(e),
        "export AZURE_OPENAI_API_KEY=... (or AZURE_OPENAI_AD_TOKEN, or --api-key)",
    ),
    (
        lambda e, c: isinstance(e, OpenAIError) and "OPENAI_API_KEY" in str(e),
        "export OPENAI_API_KEY=sk-... (or see --api-key); a local server that takes no key "
        "needs one set all the same: OPENAI_API_KEY=unused",
    ),
]


def main(argv: list[str] | None = None, *, client: Client | None = None) -> int:
    """Run the command line and return its exit code.

    ``argv`` defaults to ``sys.argv[1:]``; ``client``, when given, is used instead of one built
    from the options (for programs that embed the command line, and for tests).
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else _EXIT_USAGE
    if sys.stdout is None:  # started with stdout closed (`>&-`): nothing could be shown
        if sys.stderr is not None:
            sys.stderr.write("openai-batch: error: standard output is closed; nothing was done\n")
        return _EXIT_ERROR
    clock = client._transport.clock if client is not None else time.time
    console = _Console.detect(clock)
    session = _Session(args, console, client)
    restore = _unwind_on_signals()
    try:
        code: int = args.run(session)
        return code
    except KeyboardInterrupt:
        console.end_live()
        return _EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader stopped (`| head -1`): say nothing, and keep the interpreter's final flush
        # from failing on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _EXIT_BROKEN_PIPE
    except Exception as exc:  # every failure becomes a message, never a traceback
        key = (
            session._client.api_key
            if session._client is not None
            else getattr(args, "api_key", None)
        )
        command = " ".join(filter(None, (args.command, getattr(args, "verb", None))))
        return _report(exc, console, key, command)
    finally:
        restore()


def _unwind_on_signals() -> Callable[[], None]:
    """Make SIGTERM and SIGHUP unwind the command as Ctrl-C does, so that no temporary file
    is left behind (``timeout``, a closed terminal); returns what puts the old handlers back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def unwind(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    names = [name for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    before = {name: signal.signal(getattr(signal, name), unwind) for name in names}

    def restore() -> None:
        for name, handler in before.items():
            signal.signal(getattr(signal, name), handler)

    return restore


if __name__ == "__main__":
    sys.exit(main())
