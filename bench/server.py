"""A local stand-in for the parts of the OpenAI API that bench.py measures.

It serves pre-built batches by cursor page, one file's content from disk and file uploads,
on 127.0.0.1 with HTTP/1.1 keep-alive, and prints its base URL once it is ready::

    python bench/server.py --batches 10000 --content /tmp/output.jsonl --key sk-bench

Everything it answers is computed before the first request, so that the clients, not the
server, are what the benchmark measures. It runs as its own process for the same reason: a
server thread inside the measured interpreter would compete with the client for the GIL.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from io import BufferedIOBase
    from typing import Iterator

CONTENT_FILE_ID = "file-bench-output"
_CHUNK = 1024 * 1024
_START = 1_750_000_000  # created_at of the newest batch: a fixed clock keeps runs comparable


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


class _Catalog:
    """The server's state, built once: batches as JSON text, the content file's size."""

    def __init__(self, batches: int, content: str, key: str) -> None:
        objects = [batch_object(number) for number in range(batches)]
        self.ids = [str(obj["id"]) for obj in objects]
        self.position = {batch_id: index for index, batch_id in enumerate(self.ids)}
        self.batches = [json.dumps(obj, separators=(",", ":")).encode() for obj in objects]
        self.content = content
        self.content_size = os.path.getsize(content)
        self.authorization = f"Bearer {key}"
        self.uploads = 0

    def page(self, after: str | None, limit: int) -> bytes | None:
        """A list answer of up to ``limit`` batches after the cursor; None for an unknown one."""
        start = 0
        if after is not None:
            if after not in self.position:
                return None
            start = self.position[after] + 1
        end = min(start + limit, len(self.ids))
        ends = {
            "first_id": self.ids[start] if start < end else None,
            "last_id": self.ids[end - 1] if start < end else None,
            "has_more": end < len(self.ids),
        }
        tail = json.dumps(ends, separators=(",", ":"))[1:].encode()
        return b'{"object":"list","data":[' + b",".join(self.batches[start:end]) + b"]," + tail

    def file_object(self, file_id: str, size: int, filename: str, purpose: str) -> bytes:
        info = {
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
        return json.dumps(info).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer below carries a Content-Length
    server_version = "bench-openai/1"
    catalog: _Catalog  # set on the class by main()

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
            body = self.catalog.file_object(CONTENT_FILE_ID, size, "output.jsonl", "batch_output")
            self._send_json(200, body)
        elif path == f"/v1/files/{CONTENT_FILE_ID}/content":
            self._send_content()
        else:
            self._error(404, "not_found", f"No such route: GET {path}")

    def do_POST(self) -> None:
        if not self._authorized():
            return
        if urlsplit(self.path).path != "/v1/files":
            self._discard_body()
            self._error(404, "not_found", f"No such route: POST {self.path}")
            return
        self._upload()

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
        """Count a multipart upload's bytes as they pass, holding one chunk at a time."""
        match = re.search(r"boundary=\"?([^\";]+)", self.headers.get("Content-Type", ""))
        if match is None:
            self._discard_body()
            self._error(400, "invalid_request", "expected a multipart/form-data body")
            return
        total, head, tail = _count_body(self)
        fields, file_start = _form_head(head, match.group(1).encode())
        closing = b"\r\n--" + match.group(1).encode() + b"--\r\n"
        if file_start is None or not tail.endswith(closing):
            self._error(400, "invalid_request", "the multipart body has no file part at its end")
            return
        self.catalog.uploads += 1
        size = total - file_start - len(closing)
        file_id = f"file-upload{self.catalog.uploads:013d}"
        filename, purpose = fields.get("filename", "upload"), fields.get("purpose", "")
        self._send_json(200, self.catalog.file_object(file_id, size, filename, purpose))

    def _discard_body(self) -> None:
        if self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding"):
            _count_body(self)

    def _error(self, status: int, code: str, message: str, param: str | None = None) -> None:
        error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
        self._send_json(status, json.dumps({"error": error}).encode())

    def _send_json(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-request-id", "req_bench")
        self.end_headers()
        self.wfile.write(body)


_HEAD_KEEP = 64 * 1024  # the form fields and the file part's headers come first, and are short


def _count_body(handler: BaseHTTPRequestHandler) -> tuple[int, bytes, bytes]:
    """Read a request body to its end: its length, its first 64 KiB and its last 64 bytes."""
    head = tail = b""
    total = 0
    for chunk in _body_chunks(handler):
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10_000, help="how many batches to list")
    parser.add_argument("--content", required=True, help=f"the file served as {CONTENT_FILE_ID}")
    parser.add_argument("--key", required=True, help="the API key clients must send")
    args = parser.parse_args(argv)
    _Handler.catalog = _Catalog(args.batches, args.content, args.key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
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
