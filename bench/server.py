"""A local stand-in for the parts of the OpenAI API that bench.py measures.

It serves pre-built batches by cursor page, one file's content from disk and file uploads,
on 127.0.0.1 with HTTP/1.1 keep-alive, and prints its base URL once it is ready::

    python bench/server.py --batches 10000 --content /tmp/output.jsonl --key sk-bench

Everything it answers is computed before the first request, so that the clients, not the
server, are what the benchmark measures. It runs as its own process for the same reason: a
server thread inside the measured interpreter would compete with the client for the GIL.

With ``--store DIR`` it is also a small batch service, for the case of a whole job: uploads
are kept in DIR, a batch made on one runs at once (its create answers "validating", every
read after it "completed"), the list shows the batches made, newest first, before the
catalog's, and an output file's lines are made from the input's as they are sent, one chat
completion per request, in input order. DELETE /v1/files/{id} removes an upload or an output.

POST /v1/chat/completions stands for a model server, for the direct runner's case: it answers
each request with a small chat completion and an x-request-id after ``--latency`` ms (20), as
many at once as there are connections (a thread each), so that only the latency and the
client's own work set the pace.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from io import BufferedIOBase
    from typing import Callable, Iterator

CONTENT_FILE_ID = "file-bench-output"
_CHUNK = 1024 * 1024
_START = 1_750_000_000  # created_at of the newest batch: a fixed clock keeps runs comparable
_BACKLOG = 256  # connections waiting to be accepted (5 by default): 32 clients connect at once


def batch_object(number: int) -> dict[str, object]:
    """Batch number ``number`` (0 is the newest) in the API's shape, finished and with usage."""
    created = _START - 60 * number
    return {
        "id": f"batch_{number:024x}",
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "model": "gpt-4o-mini-2024-07-18",
        "errors": None,
        "input_file_id": f"file-in{number:021x}",
        "completion_window": "24h",
        "status": "completed",
        "output_file_id": f"file-out{number:020x}",
        "error_file_id": None,
        "created_at": created,
        "in_progress_at": created + 5,
        "expires_at": created + 86_400,
        "finalizing_at": created + 600,
        "completed_at": created + 610,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": 1000, "completed": 998, "failed": 2},
        "usage": {
            "input_tokens": 120_000,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 90_000,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 210_000,
        },
        "metadata": {"project": "bench", "run": str(number % 7)},
    }


def file_object(file_id: str, size: int, filename: str, purpose: str) -> dict[str, object]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(time.time()),
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class _Catalog:
    """The server's state, built once: batches as JSON text, the content file's size."""

    def __init__(self, batches: int, content: str, key: str, store: _Store | None) -> None:
        objects = [batch_object(number) for number in range(batches)]
        self.ids = [str(obj["id"]) for obj in objects]
        self.position = {batch_id: index for index, batch_id in enumerate(self.ids)}
        self.batches = [_json(obj) for obj in objects]
        self.content = content
        self.content_size = os.path.getsize(content)
        self.authorization = f"Bearer {key}"
        self.uploads = 0
        self.store = store

    def page(self, after: str | None, limit: int) -> bytes | None:
        """A list answer of up to ``limit`` batches after the cursor; None for an unknown one.

        The batches made on this server come first, newest first, then the catalog's.
        """
        made = self.store.newest_first() if self.store else []
        made_ids = [batch_id for batch_id, _ in made]
        start = 0
        if after in made_ids:
            start = made_ids.index(after) + 1
        elif after in self.position:
            start = len(made) + self.position[after] + 1
        elif after is not None:
            return None
        ids, end = made_ids + self.ids, min(start + limit, len(made) + len(self.ids))
        shown = [text for _, text in made[start:end]]
        shown += self.batches[max(start - len(made), 0) : max(end - len(made), 0)]
        ends = {
            "first_id": ids[start] if start < end else None,
            "last_id": ids[end - 1] if start < end else None,
            "has_more": end < len(ids),
        }
        tail = json.dumps(ends, separators=(",", ":"))[1:].encode()
        return b'{"object":"list","data":[' + b",".join(shown) + b"]," + tail


class _StoredFile:
    """An upload's bytes: ``size`` of them at ``offset`` in ``path`` (the request's body as it
    came, multipart framing and all, so that it is written to disk once, as it arrives). A
    batch's output file is one too: its input's bytes, from which its lines are made."""

    def __init__(self, info: dict[str, object], path: str, offset: int, size: int) -> None:
        self.info, self.path, self.offset, self.size = info, path, offset, size
        self.batch_number: int | None = None  # set on a batch's output: made from this input

    def lines(self) -> Iterator[bytes]:
        """The file's lines that hold something, each with its newline if it had one."""
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            left = self.size
            for line in handle:
                if left <= 0:
                    break
                line, left = line[:left], left - len(line)
                if line.strip():
                    yield line


# One output line per request: a small chat completion, the one-word label the requests ask for.
_OUTPUT_LINE = (
    '{"id":"batch_req_%(batch)08x%(line)016x","custom_id":%(custom_id)s,"response":'
    '{"status_code":200,"request_id":"req_%(batch)08x%(line)024x","body":'
    '{"id":"chatcmpl-%(batch)08x%(line)021x","object":"chat.completion","created":%(created)d,'
    '"model":%(model)s,"choices":[{"index":0,"message":{"role":"assistant","content":"billing",'
    '"refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":'
    '%(tokens)d,"completion_tokens":1,"total_tokens":%(total)d}}},"error":null}\n'
)


# The chat route's answer: the completion a model server sends for the requests' one-word label.
_CHAT_ANSWER = (
    '{"id":"chatcmpl-bench%(number)016x","object":"chat.completion","created":%(created)d,'
    '"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant",'
    '"content":"billing","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":'
    '{"prompt_tokens":%(tokens)d,"completion_tokens":1,"total_tokens":%(total)d},'
    '"system_fingerprint":"fp_bench"}'
)


class _Store:
    """Uploads kept on disk and batches run on them (``--store``): the job case's service."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.files: dict[str, _StoredFile] = {}
        self.batches: dict[str, dict[str, object]] = {}  # in the order they were made
        self.listed: list[tuple[str, bytes]] = []  # newest first, as the list shows them
        self.lock = threading.Lock()  # the server answers each connection on its own thread
        self.made = 0

    def number(self) -> int:
        with self.lock:
            self.made += 1
            return self.made

    def new_path(self) -> str:
        return os.path.join(self.folder, f"upload-{self.number():08d}")

    def add_upload(
        self, path: str, offset: int, size: int, filename: str, purpose: str
    ) -> dict[str, object]:
        info = file_object(f"file-stored{self.number():013d}", size, filename, purpose)
        with self.lock:
            self.files[str(info["id"])] = _StoredFile(info, path, offset, size)
        return info

    def create(self, body: dict[str, object]) -> tuple[dict[str, object] | None, str]:
        """A batch run at once on an uploaded file, or None and why not."""
        upload = self.files.get(str(body.get("input_file_id")))
        if upload is None or upload.batch_number is not None:
            return None, f"No such File object: {body.get('input_file_id')}"
        if body.get("completion_window") != "24h" or not isinstance(body.get("endpoint"), str):
            return None, "completion_window must be '24h' and endpoint a string"
        number = self.number()
        output = _StoredFile(
            file_object(f"file-made{number:015d}", 0, "batch_output.jsonl", "batch_output"),
            os.path.join(self.folder, f"batch-{number:08d}"),
            upload.offset,
            upload.size,
        )
        output.batch_number = number
        os.link(upload.path, output.path)  # the input stays readable once its upload is deleted
        requests = sum(1 for _ in upload.lines())
        batch = _made_batch(number, body, str(output.info["id"]), requests, upload.size)
        with self.lock:
            self.files[str(output.info["id"])] = output
            self.batches[str(batch["id"])] = batch
            self.listed.insert(0, (str(batch["id"]), _json(batch)))
        created = {**batch, "status": "validating", "output_file_id": None}
        created.update(in_progress_at=None, finalizing_at=None, completed_at=None, usage=None)
        created["request_counts"] = {"total": 0, "completed": 0, "failed": 0}
        return created, ""

    def newest_first(self) -> list[tuple[str, bytes]]:
        with self.lock:
            return list(self.listed)

    def delete(self, file_id: str) -> bool:
        with self.lock:
            stored = self.files.pop(file_id, None)
        if stored is not None:
            os.remove(stored.path)
        return stored is not None

    def output_chunks(self, output: _StoredFile) -> Iterator[bytes]:
        """A batch's output file, made as it is sent, about a megabyte at a time."""
        batch, created = output.batch_number or 0, int(time.time())
        pending: list[str] = []
        size = 0
        for number, line in enumerate(output.lines()):
            request = json.loads(line)
            text = _OUTPUT_LINE % {
                "batch": batch,
                "line": number,
                "custom_id": json.dumps(request["custom_id"]),
                "created": created,
                "model": json.dumps(request["body"].get("model", "gpt-4o-mini")),
                "tokens": len(line) // 4,
                "total": len(line) // 4 + 1,
            }
            pending.append(text)
            size += len(text)
            if size >= _CHUNK:
                yield "".join(pending).encode()
                pending, size = [], 0
        if pending:
            yield "".join(pending).encode()


def _made_batch(
    number: int, body: dict[str, object], output_id: str, requests: int, size: int
) -> dict[str, object]:
    """A batch that ran every request of its input the moment it was made, in the API's shape."""
    created = int(time.time())
    return {
        **batch_object(0),
        "id": f"batch_made{number:014x}",
        "endpoint": body["endpoint"],
        "input_file_id": body["input_file_id"],
        "output_file_id": output_id,
        "created_at": created,
        "in_progress_at": created,
        "expires_at": created + 86_400,
        "finalizing_at": created,
        "completed_at": created,
        "request_counts": {"total": requests, "completed": requests, "failed": 0},
        "usage": {
            "input_tokens": size // 4,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": requests,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": size // 4 + requests,
        },
        "metadata": body.get("metadata"),
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer below carries a Content-Length
    server_version = "bench-openai/1"
    catalog: _Catalog  # set on the class by main()
    latency = 0.020  # seconds the chat route takes to answer; set on the class by main()
    answered = itertools.count()  # chat answers so far, for their ids (next() holds the GIL)

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to small answers.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a line per request on stderr would cost more than the answer

    def do_GET(self) -> None:
        if not self._authorized():
            return
        parts = urlsplit(self.path)
        path = parts.path
        if path == "/v1/batches":
            self._list_batches(parse_qs(parts.query))
        elif path.startswith("/v1/batches/") and path[12:] in self.catalog.position:
            self._send_json(200, self.catalog.batches[self.catalog.position[path[12:]]])
        elif path == f"/v1/files/{CONTENT_FILE_ID}":
            size = self.catalog.content_size
            info = file_object(CONTENT_FILE_ID, size, "output.jsonl", "batch_output")
            self._send_json(200, _json(info))
        elif path == f"/v1/files/{CONTENT_FILE_ID}/content":
            self._send_content()
        elif self.catalog.store is not None:
            self._stored_get(self.catalog.store, path)
        else:
            self._error(404, "not_found", f"No such route: GET {path}")

    def do_POST(self) -> None:
        if not self._authorized():
            return
        path = urlsplit(self.path).path
        if path == "/v1/files":
            self._upload()
        elif path == "/v1/chat/completions":
            self._chat()
        elif path == "/v1/batches" and self.catalog.store is not None:
            self._create_batch(self.catalog.store)
        else:
            self._discard_body()
            self._error(404, "not_found", f"No such route: POST {self.path}")

    def do_DELETE(self) -> None:
        if not self._authorized():
            return
        path, store = urlsplit(self.path).path, self.catalog.store
        file_id = path[len("/v1/files/") :]
        if path.startswith("/v1/files/") and store is not None and store.delete(file_id):
            self._send_json(200, _json({"id": file_id, "object": "file", "deleted": True}))
        else:
            self._error(404, "not_found", f"No such File object: {file_id}")

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == self.catalog.authorization:
            return True
        self._discard_body()
        self._error(401, "invalid_api_key", "Incorrect API key provided.")
        return False

    def _list_batches(self, query: dict[str, list[str]]) -> None:
        try:
            limit = int(query.get("limit", ["20"])[0])
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            self._error(400, "invalid_value", "limit must be between 1 and 100", "limit")
            return
        body = self.catalog.page(query.get("after", [None])[0], limit)
        if body is None:
            self._error(400, "invalid_value", "after is not a known batch id", "after")
            return
        self._send_json(200, body)

    def _send_content(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(self.catalog.content_size))
        self.end_headers()
        with open(self.catalog.content, "rb") as source:
            self.connection.sendfile(source)  # the kernel copies: the server stays out of the way

    def _upload(self) -> None:
        """Count a multipart upload's bytes as they pass, holding one chunk at a time; with
        ``--store``, write them to disk as they come."""
        match = re.search(r"boundary=\"?([^\";]+)", self.headers.get("Content-Type", ""))
        if match is None:
            self._discard_body()
            self._error(400, "invalid_request", "expected a multipart/form-data body")
            return
        store = self.catalog.store
        path = store.new_path() if store is not None else None
        if path is None:
            total, head, tail = _count_body(self)
        else:
            with open(path, "wb") as sink:
                total, head, tail = _count_body(self, sink.write)
        fields, file_start = _form_head(head, match.group(1).encode())
        closing = b"\r\n--" + match.group(1).encode() + b"--\r\n"
        if file_start is None or not tail.endswith(closing):
            if path is not None:
                os.remove(path)
            self._error(400, "invalid_request", "the multipart body has no file part at its end")
            return
        size = total - file_start - len(closing)
        filename, purpose = fields.get("filename", "upload"), fields.get("purpose", "")
        if store is None or path is None:
            self.catalog.uploads += 1
            file_id = f"file-upload{self.catalog.uploads:013d}"
            info = file_object(file_id, size, filename, purpose)
        else:
            info = store.add_upload(path, file_start, size, filename, purpose)
        self._send_json(200, _json(info))

    def _chat(self) -> None:
        """A chat completion, after the latency: the body is read whole and must be JSON."""
        body = b"".join(_body_chunks(self))
        time.sleep(self.latency)
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
            self._error(400, "invalid_request", "the body is not a chat completion request")
            return
        number = next(self.answered)
        tokens = len(body) // 4
        values = {"number": number, "created": int(time.time()), "tokens": tokens}
        answer = (_CHAT_ANSWER % {**values, "total": tokens + 1}).encode()
        self._send_json(200, answer, f"req_bench{number:023x}")

    def _create_batch(self, store: _Store) -> None:
        try:
            body = json.loads(b"".join(_body_chunks(self)))
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._error(400, "invalid_json", "the body is not a JSON object")
            return
        batch, problem = store.create(body)
        if batch is None:
            self._error(400, "invalid_request", problem)
        else:
            self._send_json(200, _json(batch))

    def _stored_get(self, store: _Store, path: str) -> None:
        """A batch made here, or a batch's output file, made line by line as it is sent."""
        output = None
        if path.startswith("/v1/files/") and path.endswith("/content"):
            output = store.files.get(path[len("/v1/files/") : -len("/content")])
        if path.startswith("/v1/batches/") and path[12:] in store.batches:
            self._send_json(200, _json(store.batches[path[12:]]))
        elif output is not None and output.batch_number is not None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")  # its size is known at the end
            self.end_headers()
            for chunk in store.output_chunks(output):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._error(404, "not_found", f"No such route: GET {path}")

    def _discard_body(self) -> None:
        if self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding"):
            _count_body(self)

    def _error(self, status: int, code: str, message: str, param: str | None = None) -> None:
        error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
        self._send_json(status, json.dumps({"error": error}).encode())

    def _send_json(self, status: int, body: bytes, request_id: str = "req_bench") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-request-id", request_id)
        self.end_headers()
        self.wfile.write(body)


_HEAD_KEEP = 64 * 1024  # the form fields and the file part's headers come first, and are short


def _count_body(
    handler: BaseHTTPRequestHandler, write: Callable[[bytes], object] | None = None
) -> tuple[int, bytes, bytes]:
    """Read a request body to its end: its length, its first 64 KiB and its last 64 bytes;
    each chunk goes to ``write`` too, if given."""
    head = tail = b""
    total = 0
    for chunk in _body_chunks(handler):
        if write is not None:
            write(chunk)
        if len(head) < _HEAD_KEEP:
            head += chunk[: _HEAD_KEEP - len(head)]
        tail = (tail + chunk)[-64:]
        total += len(chunk)
    return total, head, tail


def _body_chunks(handler: BaseHTTPRequestHandler) -> Iterator[bytes]:
    """The body as chunks of at most 1 MiB, by Content-Length or chunked transfer coding."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        return _chunked(handler.rfile)
    return _sized(handler.rfile, int(handler.headers.get("Content-Length") or 0))


def _sized(stream: BufferedIOBase, left: int) -> Iterator[bytes]:
    while left > 0:
        chunk = stream.read(min(_CHUNK, left))
        if not chunk:
            raise ConnectionError("the client closed the connection before the body ended")
        left -= len(chunk)
        yield chunk


def _chunked(stream: BufferedIOBase) -> Iterator[bytes]:
    while True:
        size = int(stream.readline().split(b";")[0], 16)
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers: nothing here needs them
            return
        yield from _sized(stream, size)
        stream.readline()  # the CRLF after each chunk


def _form_head(head: bytes, boundary: bytes) -> tuple[dict[str, str], int | None]:
    """The text fields before the file part, the file's name, and where the file's bytes start.

    Both clients put the file part last, after the text fields, as browsers do.
    """
    fields: dict[str, str] = {}
    delimiter = b"--" + boundary
    offset = head.find(delimiter)
    while offset != -1:
        headers_end = head.find(b"\r\n\r\n", offset)
        if headers_end == -1:
            break
        headers, value_start = head[offset + len(delimiter) : headers_end], headers_end + 4
        filename = re.search(rb'filename="([^"]*)"', headers)
        if filename is not None:
            fields["filename"] = filename.group(1).decode(errors="replace")
            return fields, value_start
        offset = head.find(b"\r\n" + delimiter, value_start)
        name = re.search(rb'name="([^"]*)"', headers)
        if offset == -1 or name is None:
            break
        fields[name.group(1).decode()] = head[value_start:offset].decode(errors="replace")
        offset += 2
    return fields, None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = _BACKLOG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10_000, help="how many batches to list")
    parser.add_argument("--content", required=True, help=f"the file served as {CONTENT_FILE_ID}")
    parser.add_argument("--key", required=True, help="the API key clients must send")
    parser.add_argument("--store", metavar="DIR", help="keep uploads in DIR and run batches")
    parser.add_argument(
        "--latency", type=float, default=20.0, metavar="MS", help="the chat route's delay (20)"
    )
    args = parser.parse_args(argv)
    store = _Store(args.store) if args.store else None
    _Handler.catalog = _Catalog(args.batches, args.content, args.key, store)
    _Handler.latency = args.latency / 1000
    server = _Server(("127.0.0.1", 0), _Handler)
    print(f"http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
