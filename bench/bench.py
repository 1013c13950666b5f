"""Measure openai_batch against the official ``openai`` package, in one run, on one local server.

    python -m venv /tmp/bench && /tmp/bench/bin/pip install -r bench/requirements.txt
    /tmp/bench/bin/python bench/bench.py            # 200 MiB files, 10,000 batches, 5 repeats
    /tmp/bench/bin/python bench/bench.py --quick    # 10 MiB files, 2,000 batches, 3 repeats
    python bench/bench.py --quick --source /tmp/copy  # openai_batch.py from another folder
    /tmp/bench/bin/python bench/bench.py --only job --repeats 1  # one case, here the job's
    python bench/bench.py --only shards --repeats 1  # openai_batch alone: no official rows

Every measurement is a fresh interpreter, so that imports, caches and memory never carry over
from one case to the next; the server (bench/server.py) is another process, so that it never
competes with a client for the GIL (a second one serves the case of one 40 MiB line).
openai_batch is imported from this repository (or from the folder ``--source`` names, to
measure a copy under change), never from anything installed. Without the ``openai`` package
the official rows are skipped, not failed.

The job case runs a whole job of a million requests (100,000 with --quick): openai_batch's
``Client.run`` against the script people write with the official package. Each run has a
server of its own that keeps the uploads and runs each batch the moment it is made, so that
the rows measure the clients' own work, not a wait for the service.

Two cases measure openai_batch alone, for how its job engine scales. The shards case runs one
job of 50,000 requests cut into 250, 500 and 1,000 batches, and sets each against the one with
half its shards: the requests and the bytes stay the same, so what grows is the client's work
per shard. The job memory case runs jobs of 200,000 and 2,000,000 requests and sets the peak
RSS of the larger against the smaller's.

The direct case sends 2,000 chat requests straight to a server that answers each after 20 ms,
32 at a time: openai_batch's ``Client.run(direct=True)`` against the official
``AsyncOpenAI`` under an ``asyncio.Semaphore``. Its floor is 2,000 × 20 ms ÷ 32 = 1.25 s; a
bare raw-socket client, measured alongside, shows what the server and the machine allow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MIB = 1024 * 1024
API_KEY = "sk-bench-local-0123456789"
CONTENT_FILE_ID = "file-bench-output"  # the one file bench/server.py serves
_TIMEOUT = 900  # seconds for any one child: a hung client fails the run instead of stalling it
# Variables that would send the clients somewhere other than the local server, or change them.
_DROPPED_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID")
_MODULES = {False: "openai_batch", True: "openai"}  # by `official`
_FILES = ("content", "upload", "requests", "outputs", "long", "job", "shards", "direct")
LONG_LINE_BYTES = 40 * MIB  # one embeddings output line: some 2,000 inputs of 1,536 numbers
LONG_LINE_BUDGET = 5.0  # seconds iter_results may take over it from a files.content stream
JOB_BATCH_SIZE = 50_000  # requests a batch of the job case holds
JOB_CATALOG = 20  # batches the job case's server lists besides the ones the job makes
JOB_MAX_ACTIVE = 4  # batches the job case keeps running at once (the library's default)
JOB_POLL = 0.1  # seconds between the job case's polls
SHARDED_REQUESTS = 50_000  # requests of the shards case's job, cut into each count below
SHARD_COUNTS = (250, 500, 1_000)  # each twice the one before
# Every shard of the shards case runs at once and is polled often: the server finishes a batch
# by the first poll after its create, so the client's work, not its sleep, sets the time.
SHARDS_MAX_ACTIVE = 1_000
SHARDS_POLL = 0.05
MEMORY_REQUESTS = (200_000, 2_000_000)  # the job memory case's two jobs, ten times apart
MONEY_REQUESTS = 100_000  # the money case's job, whatever --quick says
MONEY_DUPLICATES = 0.4  # ... of whose requests this share repeat an earlier one's endpoint and body
DIRECT_CONCURRENCY = 32  # requests in flight at once in the direct case, for both clients
DIRECT_LATENCY_MS = 20  # how long the server takes over each chat request in the direct case

# ---------------------------------------------------------------------------------------------
# Test data: batch input lines (chat requests) and output lines (BatchRequestOutput)
# ---------------------------------------------------------------------------------------------

_WORDS = "the batch api runs requests within a day at half the price of the same calls"


def _text(number: int, words: int) -> str:
    vocabulary = _WORDS.split()
    return " ".join(vocabulary[(number * 7 + index) % len(vocabulary)] for index in range(words))


def request_line(number: int) -> str:
    """One chat completion request, as a batch input file holds it."""
    messages = [
        {"role": "system", "content": "You label support tickets with one word."},
        {"role": "user", "content": f"Ticket {number}: {_text(number, 24)}"},
    ]
    body = {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 16}
    line = {"custom_id": f"request-{number}", "method": "POST", "url": "/v1/chat/completions"}
    return json.dumps({**line, "body": body}, separators=(",", ":"))


def duplicated_line(number: int) -> str:
    """A request of the money case: the last 40% repeat, each, the body of one of the first
    60% (spread over them), under a custom_id of their own."""
    unique = round(MONEY_REQUESTS * (1 - MONEY_DUPLICATES))
    if number < unique:
        return request_line(number)
    copied = json.loads(request_line(number * 7919 % unique))
    copied["custom_id"] = f"request-{number}"
    return json.dumps(copied, separators=(",", ":"))


def output_line(number: int) -> str:
    """One line of a batch's output file, in the API's BatchRequestOutput shape."""
    message = {"role": "assistant", "content": _text(number, 120), "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    usage = {"prompt_tokens": 48, "completion_tokens": 150, "total_tokens": 198}
    body = {
        "id": f"chatcmpl-{number:029x}",
        "object": "chat.completion",
        "created": 1_750_000_000 + number,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [choice],
        "usage": usage,
        "system_fingerprint": "fp_0123456789",
    }
    response = {"status_code": 200, "request_id": f"req_{number:032x}", "body": body}
    line = {"id": f"batch_req_{number:024x}", "custom_id": f"request-{number}"}
    return json.dumps({**line, "response": response, "error": None}, separators=(",", ":"))


def embeddings_line(size: int) -> str:
    """One output line of an embeddings request with as many inputs as fit in ``size`` bytes.

    Its numbers look like the API's (-0.033318721, 2.0843751e-05) and come from a formula, so
    that every run reads the same line.
    """
    vectors = []
    for number in range(64):  # distinct vectors, used in turn: parsing costs the same
        steps = [(number * 7919 + index * 104_729) % 20_011 for index in range(1536)]
        values = [(step - 10_005) / (163_840.3 if step % 97 else 480_000_000.7) for step in steps]
        numbers = [float(f"{value:.8g}") for value in values]
        vectors.append(json.dumps(numbers, separators=(",", ":")))
    items: list[str] = []
    used = 400  # room for what surrounds the list
    while True:
        item = (
            f'{{"object":"embedding","index":{len(items)},"embedding":{vectors[len(items) % 64]}}}'
        )
        if used + len(item) + 1 > size:
            break
        items.append(item)
        used += len(item) + 1
    tokens = 8 * len(items)
    body = '{"object":"list","data":[' + ",".join(items) + "]"
    body += f',"model":"text-embedding-3-small","usage":{{"prompt_tokens":{tokens},'
    body += f'"total_tokens":{tokens}}}}}'
    response = f'{{"status_code":200,"request_id":"req_{0:032x}","body":{body}}}'
    return (
        f'{{"id":"batch_req_{0:024x}","custom_id":"request-0","response":{response},"error":null}}'
    )


def write_lines(
    path: str, make: Callable[[int], str], *, lines: int | None = None, size: int | None = None
) -> int:
    """Write ``lines`` lines, or as many as fit in ``size`` bytes; return the bytes written."""
    written = number = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        while lines is None or number < lines:
            text = make(number) + "\n"
            if size is not None and written + len(text) > size:
                break
            out.write(text)
            written += len(text)
            number += 1
    return written


# ---------------------------------------------------------------------------------------------
# What the children run. Each prints one JSON line: its timing, peak RSS, CPU and what it saw.
# ---------------------------------------------------------------------------------------------

# Peak RSS is VmHWM, the high-water mark of this process's own memory. Linux carries ru_maxrss
# over from the parent through fork and exec, so there it would report bench.py's peak, not the
# client's; ru_maxrss (KiB on Linux, bytes on macOS) is the fallback where /proc is missing.
_PRELUDE = """\
import json, os, resource, sys, time
def peak_rss_mib():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)
def report(start, **facts):
    facts["seconds"] = time.perf_counter() - start
    facts["peak_rss_mib"] = peak_rss_mib()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    facts["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(facts))
"""

_OURS = "import openai_batch\nstart = time.perf_counter()\nclient = openai_batch.Client()\n"
_THEIRS = "import openai\nstart = time.perf_counter()\nclient = openai.OpenAI()\n"

SCRIPTS = {
    "list_all": "count = sum(1 for _ in client.batches.list(limit=100))\n"
    "report(start, count=count)",
    "download": "client.files.content(sys.argv[1]).write_to_file(sys.argv[2])\n"
    "report(start, bytes=os.path.getsize(sys.argv[2]))",
    "download_streaming": "with client.files.with_streaming_response.content(sys.argv[1]) as r:\n"
    "    r.stream_to_file(sys.argv[2])\n"
    "report(start, bytes=os.path.getsize(sys.argv[2]))",
    "upload": "uploaded = client.files.create(file=sys.argv[1], purpose='batch')\n"
    "report(start, bytes=uploaded.bytes)",
    # The official package reads a Path whole into memory; an open file it sends in chunks.
    "upload_official": "with open(sys.argv[1], 'rb') as f:\n"
    "    uploaded = client.files.create(file=f, purpose='batch')\n"
    "report(start, bytes=uploaded.bytes)",
    # argv: INPUT, RESULTS, batch size, max_active, poll interval (the official script: the
    # first three).
    # argv: INPUT, RESULTS, dedupe (0 or 1), the cache's path or "-"
    "money": "job = client.run(\n"
    "    sys.argv[1], sys.argv[2], batch_size=50_000, poll_interval=0.1,\n"
    "    dedupe=sys.argv[3] == '1', cache=None if sys.argv[4] == '-' else sys.argv[4],\n"
    ")\n"
    "report(start, count=job.requests, sent=job.requests - job.deduplicated - job.cache_hits)",
    "job": "job = client.run(\n"
    "    sys.argv[1], sys.argv[2], batch_size=int(sys.argv[3]), max_active=int(sys.argv[4]),\n"
    "    poll_interval=float(sys.argv[5]),\n"
    ")\n"
    "report(start, count=job.requests, batches=job.batches)",
    # What people write with the official package: submit every chunk, then wait for each,
    # keep its results by custom_id, and write them in input order.
    "job_official": """\
size = int(sys.argv[3])
with open(sys.argv[1], encoding="utf-8") as f:
    lines = f.readlines()
batches = []
for first in range(0, len(lines), size):
    data = "".join(lines[first : first + size]).encode()
    uploaded = client.files.create(file=(f"part-{len(batches)}.jsonl", data), purpose="batch")
    batches.append(
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    )
results = {}
for batch in batches:
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(0.1)
        batch = client.batches.retrieve(batch.id)
    if batch.status != "completed":
        sys.exit(f"batch {batch.id} {batch.status}")
    for line in client.files.content(batch.output_file_id).text.splitlines():
        result = json.loads(line)
        results[result["custom_id"]] = result
    client.files.delete(batch.input_file_id)
    client.files.delete(batch.output_file_id)
with open(sys.argv[2], "w", encoding="utf-8") as out:
    for line in lines:
        out.write(json.dumps(results[json.loads(line)["custom_id"]]) + "\\n")
report(start, count=len(lines), batches=len(batches))""",
}

# The direct case's children, by module: argv is INPUT, RESULTS, the requests in INPUT and
# the concurrency.
DIRECT_SCRIPTS = {
    "openai_batch": "import openai_batch\nstart = time.perf_counter()\n"
    "job = openai_batch.OpenAI().run(\n"
    "    sys.argv[1], sys.argv[2], direct=True, concurrency=int(sys.argv[4])\n"
    ")\n"
    "report(start, count=job.succeeded)",
    # What people write with the official package: a task per request, a semaphore to bound
    # them, and each answer written as a Batch API output line the moment it is in.
    "openai": """\
import asyncio
import openai
start = time.perf_counter()
async def main():
    limit = asyncio.Semaphore(int(sys.argv[4]))
    with open(sys.argv[1], encoding="utf-8") as f:
        requests = [json.loads(line) for line in f]
    async with openai.AsyncOpenAI() as client:
        with open(sys.argv[2], "w", encoding="utf-8") as out:
            async def one(request):
                async with limit:
                    completion = await client.chat.completions.create(**request["body"])
                response = {
                    "status_code": 200,
                    "request_id": completion._request_id,
                    "body": completion.to_dict(),
                }
                line = {"custom_id": request["custom_id"], "response": response, "error": None}
                out.write(json.dumps(line) + "\\n")
            await asyncio.gather(*(one(request) for request in requests))
    return len(requests)
report(start, count=asyncio.run(main()))""",
    # The floor the server and the machine allow: keep-alive sockets and no client at all, one
    # thread, each connection sending the first line's body again the moment its answer is in.
    "floor": """\
import selectors, socket
from urllib.parse import urlsplit
start = time.perf_counter()
total, concurrency = int(sys.argv[3]), int(sys.argv[4])
with open(sys.argv[1], "rb") as f:
    body = json.dumps(json.loads(f.readline())["body"]).encode()
url, key = urlsplit(os.environ["OPENAI_BASE_URL"]), os.environ["OPENAI_API_KEY"]
head = f"POST {url.path}/chat/completions HTTP/1.1\\r\\nHost: {url.netloc}\\r\\n"
head += f"Authorization: Bearer {key}\\r\\nContent-Type: application/json\\r\\n"
request = f"{head}Content-Length: {len(body)}\\r\\n\\r\\n".encode() + body
selector, pending, sent, answered = selectors.DefaultSelector(), {}, 0, 0
for _ in range(min(concurrency, total)):
    sock = socket.create_connection((url.hostname, url.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    selector.register(sock, selectors.EVENT_READ)
    pending[sock] = b""
    sock.sendall(request)
    sent += 1
while answered < total:
    for key, _ in selector.select():
        sock = key.fileobj
        data = pending[sock] + sock.recv(65536)
        end = data.find(b"\\r\\n\\r\\n")
        head = data[:end].lower()
        size = int(head.split(b"content-length:")[1].split(b"\\r\\n")[0]) if end > 0 else -1
        if end < 0 or len(data) < end + 4 + size:
            pending[sock] = data
            continue
        if not head.startswith(b"http/1.1 200"):
            sys.exit(f"the server answered {head[:40]!r}")
        pending[sock] = data[end + 4 + size :]
        answered += 1
        if sent < total:
            sock.sendall(request)
            sent += 1
report(start, count=answered)""",
}

_JSONL_SCRIPTS = {
    "floor": "start = time.perf_counter()\ncount = 0\nwith open(sys.argv[1], 'rb') as f:\n"
    "    for line in f:\n        json.loads(line)\n        count += 1\n"
    "report(start, count=count)",
    "validate_input": "import openai_batch\nstart = time.perf_counter()\n"
    "count = openai_batch.validate_input(sys.argv[1]).requests\nreport(start, count=count)",
    "iter_results": "import openai_batch\nstart = time.perf_counter()\n"
    "count = sum(1 for _ in openai_batch.iter_results(sys.argv[1]))\nreport(start, count=count)",
    "iter_results_stream": _OURS
    + "results = openai_batch.iter_results(client.files.content(sys.argv[1]))\n"
    "count = sum(1 for _ in results)\nreport(start, count=count)",
}

#: The steps of a run, in order; --only picks one.
STEPS = (
    "import",
    "cold list",
    "list all",
    "download",
    "download, streaming",
    "upload",
    "validate_input",
    "iter_results",
    "one long line",
    "job",
    "shards",
    "job memory",
    "direct",
    "money",
    "estimate",
)

COLD_LIST_OURS = ["-m", "openai_batch", "list", "--limit", "20"]
COLD_LIST_THEIRS = [
    "-c",
    "from openai import OpenAI; print(OpenAI().batches.list(limit=20).data)",
]


def client_script(name: str, official: bool) -> str:
    """The child program for case ``name``, with the one client or the other."""
    own = f"{name}_official"  # where the official package needs a program of its own
    body = SCRIPTS[own if official and own in SCRIPTS else name]
    return _PRELUDE + (_THEIRS if official else _OURS) + body


# ---------------------------------------------------------------------------------------------
# Running children
# ---------------------------------------------------------------------------------------------


class BenchError(Exception):
    """A child failed, or got an answer other than the one the case expects."""


@dataclass
class Runner:
    """Starts fresh interpreters with the environment every case shares."""

    python: str
    env: dict[str, str]
    workdir: str

    def run(self, args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.python, *args],
            env=self.env,
            cwd=self.workdir,
            text=True,
            timeout=_TIMEOUT,
            **kwargs,  # type: ignore[call-overload]
        )
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-5:]
            raise BenchError(f"{shlex.join(args)[:80]} exited {proc.returncode}: {tail}")
        return proc  # type: ignore[no-any-return]

    def wall(self, args: list[str]) -> float:
        """Seconds a whole process takes, its output thrown away."""
        start = time.perf_counter()
        self.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return time.perf_counter() - start

    def facts(self, script: str, *argv: str) -> dict[str, float]:
        """Run a child program and return what it reported."""
        proc = self.run(["-c", script, *argv], capture_output=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def child_env(base_url: str, source: str) -> dict[str, str]:
    """This environment, minus what would change either client or the interpreter.

    PYTHON* variables go: PYTHONDONTWRITEBYTECODE would make every run compile
    openai_batch.py afresh (the official package's bytecode was compiled by pip), and
    PYTHONUNBUFFERED would make the command line's 20 lines 20 writes.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in _DROPPED_ENV and not key.upper().startswith("PYTHON")
    }
    env.update(
        OPENAI_API_KEY=API_KEY,
        OPENAI_BASE_URL=base_url,
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=source,  # this checkout's openai_batch (or --source's), never an installed one
    )
    return env


@contextmanager
def local_server(
    python: str, batches: int, content: str, store: str | None = None, latency_ms: int = 20
) -> Iterator[str]:
    """Start bench/server.py and yield its base URL; stop it afterwards.

    With ``store``, a folder, it keeps uploads there and runs batches on them. Its chat route
    answers after ``latency_ms``.
    """
    command = [python, os.path.join(HERE, "server.py"), "--batches", str(batches)]
    command += ["--content", content, "--key", API_KEY, "--latency", str(latency_ms)]
    command += ["--store", store] if store else []
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip() if server.stdout else ""
        if not url.startswith("http://"):
            raise BenchError(f"the server did not start (it printed {url!r})")
        yield url
    finally:
        server.terminate()
        server.wait(10)


def module_version(runner: Runner, module: str) -> str | None:
    """The version of ``module`` as the children import it, or None when it cannot be."""
    script = f"import {module}; print({module}.__version__)"
    try:
        return runner.run(["-c", script], capture_output=True).stdout.strip()
    except BenchError:
        return None


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: samples of one measure for each client.

    ``theirs`` stays None where the official package has no equivalent; such a row may have a
    ``floor`` instead (a bare json.loads loop, or the same measure of a smaller job), and its
    ratio is then openai_batch ÷ floor, shown with ``floor_name`` after it.
    """

    case: str
    unit: str
    higher_is_better: bool = False
    ours: list[float] = field(default_factory=list)
    theirs: list[float] | None = None
    floor: list[float] | None = None
    floor_name: str = "floor"

    def ratio(self) -> float | None:
        """How many times better openai_batch is (faster, or less memory); >1 favours it."""
        if self.floor and self.ours:
            return statistics.median(self.ours) / statistics.median(self.floor)
        if not self.ours or not self.theirs:
            return None
        ours, theirs = statistics.median(self.ours), statistics.median(self.theirs)
        return ours / theirs if self.higher_is_better else theirs / ours

    def to_dict(self) -> dict[str, object]:
        def median(samples: list[float] | None) -> float | None:
            return statistics.median(samples) if samples else None

        return {
            "case": self.case,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "openai_batch": self.ours,
            "openai": self.theirs,
            "floor": self.floor,
            "floor_name": self.floor_name if self.floor else None,
            "median_openai_batch": median(self.ours),
            "median_openai": median(self.theirs),
            "ratio": self.ratio(),
        }


def record(official: bool, *pairs: tuple[Row, float]) -> None:
    """Add one sample to each row, in the column of the client that made it."""
    for row, value in pairs:
        if not official:
            row.ours.append(value)
        elif row.theirs is None:
            row.theirs = [value]
        else:
            row.theirs.append(value)


@dataclass
class Settings:
    file_bytes: int
    batches: int
    lines: int
    repeats: int
    official: bool  # whether the openai package can be imported
    source: str = REPO  # the folder whose openai_batch.py the children import
    job_requests: int = 1_000_000
    direct_requests: int = 2_000
    only: str | None = None  # the one step to run, if not all


def repeat(settings: Settings, measure: Callable[[bool], None], *rows: Row) -> list[Row]:
    """Call ``measure(official)`` for each repeat, alternating clients so drift hits both."""
    for _ in range(settings.repeats):
        measure(False)
        if settings.official:
            measure(True)
    return list(rows)


def expect(facts: dict[str, float], key: str, wanted: int, what: str) -> dict[str, float]:
    if facts.get(key) != wanted:
        raise BenchError(f"{what}: expected {key}={wanted:,}, the child saw {facts.get(key)}")
    return facts


# ---------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------


def parse_importtime(stderr: str) -> list[tuple[int, int, int, str]]:
    """``-X importtime`` lines as (self µs, cumulative µs, depth, module)."""
    entries = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        own, cumulative, name = line[len("import time:") :].split("|")
        if not own.strip().isdigit():
            continue  # the header line
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        entries.append((int(own), int(cumulative), depth, name.strip()))
    return entries


def import_cumulative(entries: list[tuple[int, int, int, str]], module: str) -> int:
    for _, cumulative, depth, name in entries:
        if depth == 0 and name == module:
            return cumulative
    raise BenchError(f"-X importtime did not report {module} at the top level")


def heaviest_packages(
    entries: list[tuple[int, int, int, str]], module: str, top: int = 8
) -> list[list[object]]:
    """Where the import of ``module`` spends its time: self µs summed by top-level package."""
    totals: dict[str, int] = {}
    subtree: list[tuple[int, int, int, str]] = []
    for entry in entries:
        subtree.append(entry)
        if entry[2] == 0 and entry[3] == module:
            break
        if entry[2] == 0:
            subtree = []  # the interpreter's own start-up, before `import module`
    for own, _, _, name in subtree:
        package = name.split(".")[0]
        totals[package] = totals.get(package, 0) + own
    return [[name, us] for name, us in sorted(totals.items(), key=lambda kv: -kv[1])[:top]]


def case_import(runner: Runner, settings: Settings, extra: dict[str, object]) -> list[Row]:
    cumulative = Row("import: -X importtime, top module cumulative", "µs")
    wall = Row('import: fresh `python -c "import X"`, wall', "ms")
    floor = Row('  the interpreter alone: `python -c "pass"`, wall', "ms")
    for official in (False, True)[: 1 + settings.official]:
        runner.wall(["-c", f"import {_MODULES[official]}"])  # compiles and caches the bytecode

    def measure(official: bool) -> None:
        module = _MODULES[official]
        proc = runner.run(["-X", "importtime", "-c", f"import {module}"], capture_output=True)
        entries = parse_importtime(proc.stderr)
        extra[f"import_breakdown_{module}"] = heaviest_packages(entries, module)
        seconds = runner.wall(["-c", f"import {module}"])
        record(official, (cumulative, import_cumulative(entries, module)), (wall, seconds * 1000))
        if not official:
            record(False, (floor, runner.wall(["-c", "pass"]) * 1000))

    return repeat(settings, measure, cumulative, wall, floor)


def case_cold_list(runner: Runner, settings: Settings) -> list[Row]:
    row = Row("cold `list --limit 20`, whole process, wall", "ms")
    # Once with the output kept, to know both print the page (and to warm the caches).
    shown = runner.run(COLD_LIST_OURS, capture_output=True).stdout.splitlines()
    if len(shown) != 20:
        raise BenchError(f"`openai_batch list --limit 20` printed {len(shown)} lines, not 20")
    if settings.official:
        printed = runner.run(COLD_LIST_THEIRS, capture_output=True).stdout
        if printed.count("Batch(") != 20:
            raise BenchError("the official package's list did not print 20 batches")

    def measure(official: bool) -> None:
        seconds = runner.wall(COLD_LIST_THEIRS if official else COLD_LIST_OURS)
        record(official, (row, seconds * 1000))

    return repeat(settings, measure, row)


def case_list_all(runner: Runner, settings: Settings) -> list[Row]:
    label = f"list {settings.batches:,} batches (pages of 100)"
    wall = Row(f"{label}: wall after import", "s")
    peak = Row(f"{label}: peak RSS", "MiB")

    def measure(official: bool) -> None:
        facts = runner.facts(client_script("list_all", official))
        expect(facts, "count", settings.batches, "listing batches")
        record(official, (wall, facts["seconds"]), (peak, facts["peak_rss_mib"]))

    return repeat(settings, measure, wall, peak)


def case_download(runner: Runner, settings: Settings, size: int, streaming: bool) -> list[Row]:
    """openai_batch's write_to_file against one of the official package's two forms."""
    form = "streaming stream_to_file" if streaming else "write_to_file"
    label = f"download {size / MIB:.0f} MiB [official {form}]"
    speed = Row(f"{label}: throughput", "MiB/s", higher_is_better=True)
    peak = Row(f"{label}: peak RSS", "MiB")
    target = os.path.join(runner.workdir, "downloaded.jsonl")

    def measure(official: bool) -> None:
        name = "download_streaming" if official and streaming else "download"
        facts = runner.facts(client_script(name, official), CONTENT_FILE_ID, target)
        os.remove(target)
        expect(facts, "bytes", size, "the downloaded file's size")
        record(official, (speed, size / MIB / facts["seconds"]), (peak, facts["peak_rss_mib"]))

    return repeat(settings, measure, speed, peak)


def case_upload(runner: Runner, settings: Settings, path: str) -> list[Row]:
    size = os.path.getsize(path)
    label = f"upload {size / MIB:.0f} MiB [official: open(path, 'rb')]"
    speed = Row(f"{label}: throughput", "MiB/s", higher_is_better=True)
    peak = Row(f"{label}: peak RSS", "MiB")

    def measure(official: bool) -> None:
        facts = runner.facts(client_script("upload", official), path)
        expect(facts, "bytes", size, "the size the server received")
        record(official, (speed, size / MIB / facts["seconds"]), (peak, facts["peak_rss_mib"]))

    return repeat(settings, measure, speed, peak)


def case_jsonl(runner: Runner, settings: Settings, name: str, path: str) -> list[Row]:
    """``name`` (validate_input or iter_results) beside a bare json.loads loop on ``path``."""
    size = os.path.getsize(path)
    label = f"{name}, {settings.lines:,} lines ({size / MIB:.0f} MiB)"
    speed = Row(f"{label}: throughput", "MiB/s", higher_is_better=True)
    peak = Row(f"{label}: peak RSS", "MiB")
    floor_speed = Row("  json.loads loop, same file (floor): throughput", "MiB/s", True)
    floor_peak = Row("  json.loads loop, same file (floor): peak RSS", "MiB")
    programs = [
        ((speed, peak), _PRELUDE + _JSONL_SCRIPTS[name]),
        ((floor_speed, floor_peak), _PRELUDE + _JSONL_SCRIPTS["floor"]),
    ]
    for _ in range(settings.repeats):
        for (speed_row, peak_row), program in programs:
            facts = expect(runner.facts(program, path), "count", settings.lines, name)
            record(False, (speed_row, size / MIB / facts["seconds"]))
            record(False, (peak_row, facts["peak_rss_mib"]))
    speed.floor, peak.floor = floor_speed.ours, floor_peak.ours
    return [speed, peak, floor_speed, floor_peak]


def case_long_line(runner: Runner, settings: Settings, path: str) -> list[Row]:
    """iter_results over one huge line, streamed by files.content and from the path.

    The server that serves this line is a second one, started for this case alone.
    """
    size = os.path.getsize(path)
    label = f"iter_results, one {size / MIB:.0f} MiB line"
    stream = Row(f"{label}, files.content stream: throughput", "MiB/s", True)
    wall = Row(f"{label}, files.content stream: wall after import", "s")
    local = Row(f"{label}, from the path: throughput", "MiB/s", True)
    floor = Row("  json.loads of the same line (floor): throughput", "MiB/s", True)
    with local_server(runner.python, 1, path) as url:
        streamer = Runner(runner.python, child_env(url, settings.source), runner.workdir)
        for _ in range(settings.repeats):
            program = _PRELUDE + _JSONL_SCRIPTS["iter_results_stream"]
            facts = expect(streamer.facts(program, CONTENT_FILE_ID), "count", 1, label)
            record(False, (stream, size / MIB / facts["seconds"]), (wall, facts["seconds"]))
            for row, name in ((local, "iter_results"), (floor, "floor")):
                facts = expect(
                    runner.facts(_PRELUDE + _JSONL_SCRIPTS[name], path), "count", 1, name
                )
                record(False, (row, size / MIB / facts["seconds"]))
    stream.floor = local.floor = floor.ours
    return [stream, wall, local, floor]


@dataclass
class Job:
    """A job for a child to run through ``Client.run``: its input, and how it is cut and driven."""

    path: str
    requests: int
    batch_size: int
    max_active: int = JOB_MAX_ACTIVE
    poll_interval: float = JOB_POLL

    @property
    def batches(self) -> int:
        return -(-self.requests // self.batch_size)


def run_job(
    runner: Runner, settings: Settings, content: str, job: Job, official: bool = False
) -> tuple[dict[str, float], float]:
    """Run ``job`` in a child against a server of its own, so that every run starts with the
    same empty account; check what it wrote and that it left no file on the server.

    Returns what the child reported and the whole process's wall seconds.
    """
    output = os.path.join(runner.workdir, "job-results.jsonl")
    store = os.path.join(runner.workdir, "server-files")
    argv = [job.path, output, str(job.batch_size), str(job.max_active), str(job.poll_interval)]
    os.mkdir(store)
    try:
        with local_server(runner.python, JOB_CATALOG, content, store) as url:
            child = Runner(runner.python, child_env(url, settings.source), runner.workdir)
            started = time.perf_counter()
            facts = child.facts(client_script("job", official), *argv)
            seconds = time.perf_counter() - started
        expect(facts, "count", job.requests, "the job's requests")
        expect(facts, "batches", job.batches, "the job's batches")
        expect({"left": len(os.listdir(store))}, "left", 0, "files left on the server")
        written = job_output(output)
    finally:
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(output + ".job", ignore_errors=True)  # openai_batch's job record
        with suppress(FileNotFoundError):
            os.remove(output)
    expect(written, "lines", job.requests, "the job's output")
    expect(written, "in_order", job.requests, "the job's output in input order")
    expect(written, "ok", job.requests, "the job's output, status 200")
    return facts, seconds


def case_job(runner: Runner, settings: Settings, path: str, content: str) -> list[Row]:
    """A whole job: openai_batch's Client.run against the official package's usual script."""
    label = f"job of {settings.job_requests:,} requests (batches of {JOB_BATCH_SIZE:,})"
    peak = Row(f"{label}: client peak RSS", "MiB")
    cpu = Row(f"{label}: client CPU, user+sys", "s")
    wall = Row(f"{label}: wall, whole process", "s")
    job = Job(path, settings.job_requests, JOB_BATCH_SIZE)

    def measure(official: bool) -> None:
        facts, seconds = run_job(runner, settings, content, job, official)
        pairs = (peak, facts["peak_rss_mib"]), (cpu, facts["cpu_seconds"]), (wall, seconds)
        record(official, *pairs)

    return repeat(settings, measure, peak, cpu, wall)


def case_shards(runner: Runner, settings: Settings, path: str, content: str) -> list[Row]:
    """One job of 50,000 requests cut into 250, 500 and 1,000 shards, openai_batch alone.

    The requests, their bytes and the server's work stay the same from one count to the next;
    what doubles is the number of batches the client uploads, makes, polls, reads and deletes,
    and whatever it keeps per shard. Each count's rows are set against the count before.
    """
    jobs = [
        Job(path, SHARDED_REQUESTS, SHARDED_REQUESTS // shards, SHARDS_MAX_ACTIVE, SHARDS_POLL)
        for shards in SHARD_COUNTS
    ]
    rows: list[tuple[Row, Row]] = []
    for job in jobs:
        label = f"job of {job.requests:,} requests in {job.batches:,} shards of {job.batch_size}"
        rows.append(
            (Row(f"{label}: client CPU, user+sys", "s"), Row(f"{label}: wall, whole process", "s"))
        )
    for _ in range(settings.repeats):
        for job, (cpu, wall) in zip(jobs, rows):
            facts, seconds = run_job(runner, settings, content, job)
            record(False, (cpu, facts["cpu_seconds"]), (wall, seconds))
    for before, after, job in zip(rows, rows[1:], jobs):
        for row, previous in zip(after, before):
            row.floor, row.floor_name = previous.ours, f"vs {job.batches:,}"
    return [row for pair in rows for row in pair]


def case_job_memory(runner: Runner, settings: Settings, content: str) -> list[Row]:
    """The client's peak RSS over jobs of 200,000 and 2,000,000 requests, openai_batch alone.

    The inputs are written here, one at a time, and removed after their runs: the larger is
    730 MiB, too much to write on every run of bench.py as make_files does for the others.
    """
    path = os.path.join(runner.workdir, "memory.jsonl")
    jobs = [Job(path, requests, JOB_BATCH_SIZE) for requests in MEMORY_REQUESTS]
    rows: list[tuple[Row, Row, Row]] = []
    for job in jobs:
        label = f"job of {job.requests:,} requests ({job.batches} batches of {job.batch_size:,})"
        peak = Row(f"{label}: client peak RSS", "MiB")
        cpu = Row(f"{label}: client CPU, user+sys", "s")
        rows.append((peak, cpu, Row(f"{label}: wall, whole process", "s")))
    for job, (peak, cpu, wall) in zip(jobs, rows):
        write_lines(path, request_line, lines=job.requests)
        try:
            for _ in range(settings.repeats):
                facts, seconds = run_job(runner, settings, content, job)
                pairs = (peak, facts["peak_rss_mib"]), (cpu, facts["cpu_seconds"]), (wall, seconds)
                record(False, *pairs)
        finally:
            os.remove(path)
    for before, after, job in zip(rows, rows[1:], jobs):
        for row, previous in zip(after, before):
            row.floor, row.floor_name = previous.ours, f"vs {job.requests:,}"
    return [row for triple in rows for row in triple]


def case_direct(runner: Runner, settings: Settings, path: str, content: str) -> list[Row]:
    """Chat requests sent straight to a server: openai_batch's direct runner against the
    official AsyncOpenAI under a semaphore, and a raw-socket client for the floor.

    The server is the step's own, so that no other case's connections share it.
    """
    requests, concurrency = settings.direct_requests, DIRECT_CONCURRENCY
    label = (
        f"direct: {requests:,} chat requests, {concurrency} at once, {DIRECT_LATENCY_MS} ms each"
    )
    speed = Row(f"{label}: throughput", "req/s", higher_is_better=True)
    wall = Row(f"{label}: wall after import", "s")
    cpu = Row(f"{label}: client CPU, user+sys, with imports", "s")
    peak = Row(f"{label}: client peak RSS", "MiB")
    floor = Row(f"  floor: {requests:,} × {DIRECT_LATENCY_MS} ms ÷ {concurrency}", "s")
    sockets = Row(f"  a raw-socket client, {concurrency} keep-alive connections: wall", "s")
    output = os.path.join(runner.workdir, "direct-results.jsonl")

    def measure(official: bool) -> None:
        child = Runner(runner.python, child_env(url, settings.source), runner.workdir)
        script, argv = _PRELUDE + DIRECT_SCRIPTS[_MODULES[official]], [path, output]
        try:
            facts = child.facts(script, *argv, str(requests), str(concurrency))
            written = direct_output(output)
        finally:
            shutil.rmtree(output + ".job", ignore_errors=True)  # openai_batch's job record
            with suppress(FileNotFoundError):
                os.remove(output)
        expect(facts, "count", requests, "the direct run's answers")
        expect(written, "lines", requests, "the direct run's output")
        expect(written, "distinct", requests, "the direct run's custom_ids")
        expect(written, "ok", requests, "the direct run's output, status 200")
        if not official:
            expect(written, "in_order", requests, "the direct run's output in input order")
        seconds = facts["seconds"]
        record(official, (speed, requests / seconds), (wall, seconds))
        record(official, (cpu, facts["cpu_seconds"]), (peak, facts["peak_rss_mib"]))
        if not official:
            script = _PRELUDE + DIRECT_SCRIPTS["floor"]
            raw = child.facts(script, *argv, str(requests), str(concurrency))
            expect(raw, "count", requests, "the raw-socket client's answers")
            record(False, (floor, requests * DIRECT_LATENCY_MS / 1000 / concurrency))
            record(False, (sockets, raw["seconds"]))

    with local_server(runner.python, 1, content, latency_ms=DIRECT_LATENCY_MS) as url:
        return repeat(settings, measure, speed, wall, cpu, peak, floor, sockets)


def run_money(
    runner: Runner, settings: Settings, content: str, path: str, dedupe: bool, cache: str
) -> tuple[dict[str, float], float]:
    """Run the money case's job in a child against a server of its own, and check RESULTS: a
    line per request, in input order, each a success. Returns what the child reported (with
    ``sent``, the requests it sent) and the whole process's wall seconds."""
    output = os.path.join(runner.workdir, "money-results.jsonl")
    store = os.path.join(runner.workdir, "server-files")
    os.mkdir(store)
    try:
        with local_server(runner.python, JOB_CATALOG, content, store) as url:
            child = Runner(runner.python, child_env(url, settings.source), runner.workdir)
            started = time.perf_counter()
            argv = [path, output, "1" if dedupe else "0", cache]
            facts = child.facts(client_script("money", False), *argv)
            seconds = time.perf_counter() - started
        written = job_output(output)
    finally:
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(output + ".job", ignore_errors=True)
        with suppress(FileNotFoundError):
            os.remove(output)
    for key, what in (("lines", "lines"), ("in_order", "in input order"), ("ok", "status 200")):
        expect(written, key, MONEY_REQUESTS, f"the money case's output, {what}")
    return facts, seconds


def case_money(runner: Runner, settings: Settings, content: str) -> list[Row]:
    """Each unique request paid once, openai_batch alone, each against the same job without:
    a job with 40% duplicates, with dedupe; a job's rerun to a new RESULTS with a cache that
    holds every answer; and what keeping a cache costs a job that finds nothing in it."""
    label = f"job of {MONEY_REQUESTS:,} requests, {MONEY_DUPLICATES:.0%} duplicates"
    dedupe_rows = [
        Row(f"{label}, --dedupe: requests sent", "req"),
        Row(f"{label}, --dedupe: wall, whole process", "s"),
        Row(f"{label}, --dedupe: client CPU, user+sys", "s"),
    ]
    fresh = f"job of {MONEY_REQUESTS:,} requests"
    cache_rows = [
        Row(f"{fresh}, --cache that holds them all (rerun): requests sent", "req"),
        Row(f"{fresh}, --cache that holds them all (rerun): wall, whole process", "s"),
        Row(f"{fresh}, --cache that holds none (each answer added): client CPU", "s"),
    ]
    plain = [Row("without", "req"), Row("without", "s"), Row("without", "s")]
    duplicated = os.path.join(runner.workdir, "money-duplicated.jsonl")
    unique = os.path.join(runner.workdir, "money-unique.jsonl")
    write_lines(duplicated, duplicated_line, lines=MONEY_REQUESTS)
    write_lines(unique, request_line, lines=MONEY_REQUESTS)
    cache = os.path.join(runner.workdir, "money-cache.sqlite")
    try:
        for _ in range(settings.repeats):
            for dedupe, rows in ((True, dedupe_rows), (False, plain)):
                facts, seconds = run_money(runner, settings, content, duplicated, dedupe, "-")
                record(False, (rows[0], facts["sent"]), (rows[1], seconds))
                record(False, (rows[2], facts["cpu_seconds"]))
            for name in os.listdir(runner.workdir):  # a cache of its own each time
                if name.startswith("money-cache"):
                    os.remove(os.path.join(runner.workdir, name))
            without, _ = run_money(runner, settings, content, unique, False, "-")
            filled, seconds = run_money(runner, settings, content, unique, False, cache)
            record(False, (cache_rows[2], filled["cpu_seconds"]))
            cache_rows[2].floor = (cache_rows[2].floor or []) + [without["cpu_seconds"]]
            rerun, again = run_money(runner, settings, content, unique, False, cache)
            record(False, (cache_rows[0], rerun["sent"]), (cache_rows[1], again))
            cache_rows[0].floor = (cache_rows[0].floor or []) + [filled["sent"]]
            cache_rows[1].floor = (cache_rows[1].floor or []) + [seconds]
    finally:
        for name in os.listdir(runner.workdir):
            if name.startswith("money-"):
                os.remove(os.path.join(runner.workdir, name))
    for row, base in zip(dedupe_rows, plain):
        row.floor, row.floor_name = base.ours, "vs without"
    for row in cache_rows:
        row.floor_name = "vs without" if row is cache_rows[2] else "vs the first run"
    return dedupe_rows + cache_rows


def case_estimate(runner: Runner) -> list[Row]:
    """The input-token estimate (what ``validate`` and ``--max-cost`` count) against the true
    counts, from bench/token_estimate.py, beside the line's bytes ÷ 4. It needs tiktoken and
    its encodings (TIKTOKEN_CACHE_DIR, or the network); without them it is skipped, saying so.

    The figures do not vary from run to run: one run, whatever --repeats says.
    """
    done = runner.run([os.path.join(HERE, "token_estimate.py"), "--json"], capture_output=True)
    rows: list[Row] = []
    for line in done.stdout.splitlines():
        if not line.startswith("{"):
            print(f"  estimate: {line}", file=sys.stderr)
            continue
        found = json.loads(line)
        label = f"input estimate, {found['kind']} ({found['requests']:,} requests)"
        for what, key in (("mean error per request", "mean"), ("error of the sum", "total")):
            row = Row(f"{label}: {what}", "%")
            row.ours, row.floor = [abs(found[key]) * 100], [abs(found[f"bytes_{key}"]) * 100]
            row.floor_name = "vs bytes ÷ 4"
            rows.append(row)
    return rows


def direct_output(path: str) -> dict[str, float]:
    """What a direct run wrote: its lines, its distinct custom_ids, those in input order, and
    those with a 200 response."""
    written = job_output(path)
    with open(path, "rb") as lines:
        written["distinct"] = len({json.loads(line)["custom_id"] for line in lines})
    return written


def job_output(path: str) -> dict[str, float]:
    """What a job wrote: its lines, those in input order (request-0, request-1, …), and those
    with a 200 response."""
    written: dict[str, float] = {"lines": 0, "in_order": 0, "ok": 0}
    with open(path, "rb") as lines:
        for number, line in enumerate(lines):
            result = json.loads(line)
            written["lines"] += 1
            written["in_order"] += result["custom_id"] == f"request-{number}"
            written["ok"] += (result.get("response") or {}).get("status_code") == 200
    return written


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def number(value: float, unit: str) -> str:
    digits = 0 if unit in ("µs", "MiB/s", "req") or value >= 100 else 1 if value >= 10 else 2
    return f"{value:,.{digits}f} {unit}"


def cells(row: Row) -> list[str]:
    ours = number(statistics.median(row.ours), row.unit)
    theirs = "—" if row.theirs is None else number(statistics.median(row.theirs), row.unit)
    ratio = row.ratio()
    shown = "—" if ratio is None else f"{ratio:.2f}×" + (f" {row.floor_name}" if row.floor else "")
    return [row.case, ours, theirs, shown]


def print_table(rows: list[Row]) -> None:
    header = ["case", "openai_batch", "openai", "ratio"]
    table = [header] + [cells(row) for row in rows]
    widths = [max(len(line[index]) for line in table) for index in range(len(header))]
    for number_, line in enumerate(table):
        left = line[0].ljust(widths[0])
        right = [cell.rjust(width) for cell, width in zip(line[1:], widths[1:])]
        print("  ".join([left, *right]).rstrip())
        if number_ == 0:
            print("  ".join("-" * width for width in widths))


def machine() -> dict[str, object]:
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "executable": sys.executable,
    }


_NOTES = """\
Medians of {repeats} runs, each in a fresh interpreter. ratio: how many times better
openai_batch is (faster, higher throughput or less memory); below 1 the official package
is better. "× floor": openai_batch's value divided by a bare json.loads loop's.
Peak RSS is the child's VmHWM (/proc/self/status), interpreter and imports included.
openai_batch's write_to_file also fsyncs the file before renaming it into place.
The job: a server that runs each batch at once and makes its output as it sends it (its
time is in the wall, not in the client's CPU); CPU is the client's getrusage user+sys;
both outputs are checked line by line (count, input order, status 200).
Shards and job memory: openai_batch alone, on the job's server, output checked the same way;
"vs N": the row's value over the same measure with N shards, or N requests. Shards: max_active
{shards_active:,} and polls every {shards_poll} s, so that no shard waits for another.
Direct: wall and throughput from after the import to the output written; CPU and peak RSS
of the whole process; both outputs checked (a line per request, distinct custom_ids, status
200; openai_batch's in input order, as the official loop's need not be).
Money: openai_batch alone, each row against the same job without the feature ("vs without"),
or against the run that filled the cache ("vs the first run"); RESULTS checked as the job's.
Estimate: the input-token estimate's error, in % of the true count (tiktoken: o200k_base for
chat, cl100k_base for embeddings), on text found on this machine; "vs bytes ÷ 4": over the
error of the line's bytes ÷ 4 (below 1: closer to the truth). Needs tiktoken and its
encodings (TIKTOKEN_CACHE_DIR, or the network); skipped without them."""


def print_targets(rows: list[Row]) -> None:
    """Say whether openai_batch meets the goals the project set for it."""
    by_case = {row.case: row for row in rows}
    import_row = by_case.get("import: -X importtime, top module cumulative")
    imports = import_row.ratio() if import_row else None
    if imports is not None:
        verdict = "met" if imports >= 20 else "MISSED"
        print(f"target: import at least 20× faster (-X importtime): {imports:.1f}×, {verdict}")
    for row in rows:
        if row.case.startswith(("download", "upload")) and row.unit == "MiB":
            peak = statistics.median(row.ours)
            verdict = "met" if peak < 50 else "MISSED"
            print(f"target: under 50 MiB peak RSS, {row.case}: {peak:.1f} MiB, {verdict}")
        if row.case.startswith("direct:") and row.unit in ("req/s", "MiB"):
            print_direct_target(row)
        if row.case.startswith("iter_results, one") and row.unit == "s":
            seconds = statistics.median(row.ours)
            verdict = "ok" if seconds <= LONG_LINE_BUDGET else "MISSED"
            case = row.case.replace(": wall after import", "")
            print(f"target: {case}, budget {LONG_LINE_BUDGET:.0f} s: {seconds:.2f} s, {verdict}")
    print_growth_targets(rows)
    for row in rows:
        if "holds none" in row.case and row.ratio() is not None:
            added = row.ratio() - 1  # type: ignore[operator]
            verdict = "met" if added <= 0.10 else "MISSED"
            said = f"{added:+.0%}, {verdict}"
            print(f"target: a cache that holds nothing adds 10% CPU at most: {said}")


def print_growth_targets(rows: list[Row]) -> None:
    """The job engine's goals: CPU at most doubles when the shards double, and the peak RSS of
    a job ten times larger within 1.25× of the smaller one's."""
    doublings = [  # the CPU rows of the second shard count on, each over the count before
        row.ratio() or 0.0
        for row in rows
        if row.case.startswith(f"job of {SHARDED_REQUESTS:,} requests in ")
        and "CPU" in row.case
        and row.floor
    ]
    if doublings:
        verdict = "met" if all(ratio <= 2 for ratio in doublings) else "MISSED"
        pairs = zip(SHARD_COUNTS, SHARD_COUNTS[1:], doublings)
        steps = ", ".join(f"{before:,}→{after:,} {ratio:.2f}×" for before, after, ratio in pairs)
        print(f"target: each doubling of shards at most doubles the client CPU: {steps}, {verdict}")
    small, large = MEMORY_REQUESTS
    for row in rows:
        if row.case.startswith(f"job of {large:,} requests") and row.unit == "MiB" and row.floor:
            ratio = row.ratio() or 0.0
            verdict = "met" if ratio <= 1.25 else "MISSED"
            print(
                f"target: client peak RSS, a job of {large:,} requests within 1.25× of "
                f"{small:,}'s: {ratio:.2f}×, {verdict}"
            )


def print_direct_target(row: Row) -> None:
    """The direct runner's goals: twice the official client's throughput, half its memory."""
    what = "throughput" if row.unit == "req/s" else "peak RSS"
    ratio = row.ratio()
    if ratio is None:
        print(f"target: direct, {what} 2× the official client's: not measured (no openai)")
        return
    verdict = "met" if ratio >= 2 else "MISSED"
    print(f"target: direct, {what} 2× better than the official client's: {ratio:.2f}×, {verdict}")


def print_import_breakdown(extra: dict[str, object]) -> None:
    if not any(key.startswith("import_breakdown_") for key in extra):
        return  # the import step did not run (--only)
    print("where import time goes (self time of each package's modules, from the last run):")
    for module in _MODULES.values():
        heaviest = extra.get(f"import_breakdown_{module}")
        if isinstance(heaviest, list):
            parts = [f"{name} {us / 1000:.1f} ms" for name, us in heaviest]
            print(f"  import {module}: " + ", ".join(parts))


def print_report(rows: list[Row], settings: Settings, extra: dict[str, object]) -> None:
    print()
    print_table(rows)
    print()
    print(
        _NOTES.format(
            repeats=settings.repeats, shards_active=SHARDS_MAX_ACTIVE, shards_poll=SHARDS_POLL
        )
    )
    if not settings.official:
        print("The openai package is not importable here, so its column is empty. Install it:")
        print("  pip install -r bench/requirements.txt")
    print()
    print_targets(rows)
    print()
    print_import_breakdown(extra)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="10 MiB files, 2,000 batches, 3 repeats"
    )
    parser.add_argument("--file-mib", type=int, help="size of the files moved (200; quick: 10)")
    parser.add_argument("--batches", type=int, help="batches to list (10,000; quick: 2,000)")
    parser.add_argument("--lines", type=int, default=50_000, help="JSONL lines (50,000)")
    parser.add_argument(
        "--job-requests", type=int, help="requests of the job case (1,000,000; quick: 100,000)"
    )
    parser.add_argument(
        "--direct-requests", type=int, default=2_000, help="requests of the direct case (2,000)"
    )
    parser.add_argument("--repeats", type=int, help="runs per measure (5; quick: 3)")
    parser.add_argument("--json", metavar="FILE", help="also write every sample to FILE")
    parser.add_argument("--only", metavar="STEP", choices=STEPS, help="run one step: %(choices)s")
    parser.add_argument(
        "--source",
        metavar="DIR",
        default=REPO,
        help="import openai_batch.py from DIR instead of this checkout",
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace, official: bool) -> Settings:
    def pick(given: int | None, full: int, quick: int) -> int:
        return given if given is not None else quick if args.quick else full

    return Settings(
        file_bytes=pick(args.file_mib, 200, 10) * MIB,
        batches=pick(args.batches, 10_000, 2_000),
        lines=args.lines,
        repeats=pick(args.repeats, 5, 3),
        official=official,
        source=os.path.abspath(args.source),
        job_requests=pick(args.job_requests, 1_000_000, 100_000),
        direct_requests=args.direct_requests,
        only=args.only,
    )


def make_files(workdir: str, settings: Settings) -> dict[str, str]:
    """The data files: the one to download, the one to upload, and the JSONL ones."""
    paths = {name: os.path.join(workdir, f"{name}.jsonl") for name in _FILES}
    write_lines(paths["content"], output_line, size=settings.file_bytes)
    write_lines(paths["upload"], request_line, size=settings.file_bytes)
    write_lines(paths["requests"], request_line, lines=settings.lines)
    write_lines(paths["outputs"], output_line, lines=settings.lines)
    write_lines(paths["long"], lambda _: embeddings_line(LONG_LINE_BYTES), lines=1)
    write_lines(paths["job"], request_line, lines=settings.job_requests)
    write_lines(paths["shards"], request_line, lines=SHARDED_REQUESTS)
    write_lines(paths["direct"], request_line, lines=settings.direct_requests)
    return paths


def run_cases(
    runner: Runner, settings: Settings, paths: dict[str, str]
) -> tuple[list[Row], dict[str, object]]:
    extra: dict[str, object] = {}
    size = os.path.getsize(paths["content"])
    steps: list[tuple[str, Callable[[], list[Row]]]] = [
        ("import", lambda: case_import(runner, settings, extra)),
        ("cold list", lambda: case_cold_list(runner, settings)),
        ("list all", lambda: case_list_all(runner, settings)),
        ("download", lambda: case_download(runner, settings, size, streaming=False)),
        ("download, streaming", lambda: case_download(runner, settings, size, streaming=True)),
        ("upload", lambda: case_upload(runner, settings, paths["upload"])),
        (
            "validate_input",
            lambda: case_jsonl(runner, settings, "validate_input", paths["requests"]),
        ),
        ("iter_results", lambda: case_jsonl(runner, settings, "iter_results", paths["outputs"])),
        ("one long line", lambda: case_long_line(runner, settings, paths["long"])),
        ("job", lambda: case_job(runner, settings, paths["job"], paths["content"])),
        ("shards", lambda: case_shards(runner, settings, paths["shards"], paths["content"])),
        ("job memory", lambda: case_job_memory(runner, settings, paths["content"])),
        ("direct", lambda: case_direct(runner, settings, paths["direct"], paths["content"])),
        ("money", lambda: case_money(runner, settings, paths["content"])),
        ("estimate", lambda: case_estimate(runner)),
    ]
    assert [name for name, _ in steps] == list(STEPS)
    rows: list[Row] = []
    for name, step in steps:
        if settings.only not in (None, name):
            continue
        if name == "download, streaming" and not settings.official:
            continue
        started = time.perf_counter()
        rows += step()
        print(f"  {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return rows, extra


def fingerprint(folder: str) -> str:
    """A short hash of openai_batch.py, to tell whether it changed while the run went on."""
    with open(os.path.join(folder, "openai_batch.py"), "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()[:12]


def print_header(command: str, settings: Settings, versions: dict[str, str | None]) -> None:
    about = machine()
    print(f"command: {command}")
    print(f"machine: {about['python']} on {about['platform']}, {about['cpus']} CPUs")
    official = versions["openai"] or "(not installed)"
    print(
        f"clients: openai_batch {versions['openai_batch']} from {settings.source} "
        f"(sha256 {fingerprint(settings.source)}…), openai {official}"
    )
    print(
        f"sizes: {settings.file_bytes / MIB:.0f} MiB files, {settings.batches:,} batches, "
        f"{settings.lines:,} JSONL lines, a job of {settings.job_requests:,} requests, "
        f"{settings.direct_requests:,} sent directly; shards: {SHARDED_REQUESTS:,} requests in "
        f"{'/'.join(f'{count:,}' for count in SHARD_COUNTS)}; job memory: "
        f"{' and '.join(f'{requests:,}' for requests in MEMORY_REQUESTS)} requests; "
        f"{settings.repeats} repeats" + (f"; only {settings.only}" if settings.only else ""),
        flush=True,  # before the progress lines on stderr
    )


def run(args: argparse.Namespace, command: str, workdir: str) -> int:
    started = time.perf_counter()
    settings = settings_from(args, official=False)
    source = fingerprint(settings.source)
    paths = make_files(workdir, settings)
    with local_server(sys.executable, settings.batches, paths["content"]) as url:
        runner = Runner(sys.executable, child_env(url, settings.source), workdir)
        versions = {name: module_version(runner, name) for name in _MODULES.values()}
        settings.official = versions["openai"] is not None
        print_header(command, settings, versions)
        rows, extra = run_cases(runner, settings, paths)
    print_report(rows, settings, extra)
    if fingerprint(settings.source) != source:
        print("\nWARNING: openai_batch.py changed during the run; its rows mix two versions.")
    elapsed = time.perf_counter() - started
    print(f"\nthe whole run took {elapsed:.0f} s")
    if args.json:
        about = {"command": command, "machine": machine(), "versions": versions}
        extra.update(settings=vars(settings), seconds=elapsed)
        write_json(args.json, {**about, **extra, "rows": [row.to_dict() for row in rows]})
    return 0


def write_json(path: str, data: dict[str, object]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2, ensure_ascii=False)
        out.write("\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([sys.executable, sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    workdir = tempfile.mkdtemp(prefix="openai-batch-bench-")
    try:
        return run(args, command, workdir)
    except (BenchError, subprocess.TimeoutExpired) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
