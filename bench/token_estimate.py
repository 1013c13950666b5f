"""How far the input-token estimate of validate_input is from real token counts.

A one-off measurement, not a test: it needs tiktoken and its encodings (o200k_base for the
chat models, cl100k_base for the embedding models), and skips cleanly without them. The
requests are real text found on this machine, of five kinds: short chat questions (the first
lines of the standard library's docstrings), long documents (whole docstrings and licence
texts, to summarize), code (standard-library source), non-English text (the translations in
/usr/share/locale), and embeddings (lists of docstring lines). The true count of a chat request
is the one OpenAI's cookbook gives (3 tokens a message, 1 for its role, 3 for the reply), which
is what `usage.prompt_tokens` reports for text.

    python bench/token_estimate.py [--kind KIND] [--limit N] [--json]

bench/bench.py runs it (with --json: a line of figures for each kind) for the table's rows.
"""

from __future__ import annotations

import argparse
import ast
import glob
import json
import os
import statistics
import sys
from typing import Any, Callable, Dict, Iterator, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import openai_batch

Request = Tuple[str, Dict[str, Any]]  # (url, body)
CHAT = "/v1/chat/completions"
SYSTEM = "You are a helpful assistant. Answer briefly and precisely."


def docstrings(limit: int) -> Iterator[str]:
    """Docstrings of the standard library's modules, functions and classes."""
    folder = os.path.dirname(os.__file__)
    for path in sorted(glob.glob(os.path.join(folder, "*.py")))[:limit]:
        try:
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read())
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)):
                text = ast.get_docstring(node)
                if text:
                    yield text


def chat(*messages: str) -> Request:
    roles = ["system", "user"] if len(messages) == 2 else ["user"]
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": r, "content": m} for r, m in zip(roles, messages)],
        "max_tokens": 200,
    }
    return CHAT, body


def short_chat(limit: int) -> list[Request]:
    lines = [text.splitlines()[0] for text in docstrings(200) if len(text.splitlines()[0]) > 20]
    return [chat(SYSTEM, f"Explain in one sentence: {line}") for line in lines[:limit]]


def long_documents(limit: int) -> list[Request]:
    texts = [text for text in docstrings(400) if len(text) > 2000]
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as handle:
                texts.append(handle.read())
    return [chat(SYSTEM, "Summarize this document:\n\n" + text) for text in texts[:limit]]


def code(limit: int) -> list[Request]:
    folder = os.path.dirname(os.__file__)
    requests = []
    for path in sorted(glob.glob(os.path.join(folder, "*.py")))[:limit]:
        with open(path, encoding="utf-8", errors="replace") as handle:
            source = handle.read()[:6000]
        requests.append(chat(SYSTEM, "Review this code for bugs:\n\n```python\n" + source + "```"))
    return requests


def translations(language: str) -> list[str]:
    import gettext

    texts = []
    for path in sorted(glob.glob(f"/usr/share/locale/{language}/LC_MESSAGES/*.mo")):
        try:
            with open(path, "rb") as handle:
                catalog = gettext.GNUTranslations(handle)
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        texts.extend(v for v in catalog._catalog.values() if isinstance(v, str) and v.strip())
    return texts


def non_english(limit: int) -> list[Request]:
    requests = []
    for language in ("zh_CN", "ja", "ko", "ru", "de", "fr", "es", "ar", "hi", "el", "uk"):
        texts = translations(language)
        for start in range(0, min(len(texts), 40 * limit), 40):
            chunk = "\n".join(texts[start : start + 40])
            requests.append(chat(chunk))
    return requests


def embeddings(limit: int) -> list[Request]:
    lines = [line.strip() for text in docstrings(300) for line in text.splitlines()]
    lines = [line for line in lines if len(line) > 10]
    return [
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": lines[i : i + 16]})
        for i in range(0, min(len(lines), 16 * limit), 16)
    ]


def true_count(encodings: dict[str, Any], url: str, body: dict[str, Any]) -> int:
    if url == "/v1/embeddings":
        return sum(len(encodings["cl100k_base"].encode(text)) for text in body["input"])
    encode = encodings["o200k_base"].encode
    total = 3  # the reply's start
    for message in body["messages"]:
        total += 3 + len(encode(message["role"])) + len(encode(message["content"]))
    return total


KINDS: dict[str, Callable[[int], list[Request]]] = {
    "short chat": short_chat,
    "long documents": long_documents,
    "code": code,
    "non-English": non_english,
    "embeddings": embeddings,
}


def measure(encodings: dict[str, Any], requests: list[Request]) -> dict[str, float]:
    ours, naive = [], []
    true_total = ours_total = naive_total = 0
    for url, body in requests:
        truth = true_count(encodings, url, body)
        estimate = openai_batch._input_tokens(url, body)
        line = {"custom_id": "x", "method": "POST", "url": url, "body": body}
        size = len(json.dumps(line, ensure_ascii=False).encode()) / 4
        ours.append(abs(estimate - truth) / truth)
        naive.append(abs(size - truth) / truth)
        true_total, ours_total, naive_total = (
            true_total + truth,
            ours_total + estimate,
            naive_total + size,
        )
    return {
        "requests": len(requests),
        "tokens": true_total,
        "mean": statistics.mean(ours),
        "worst": max(ours),
        "total": ours_total / true_total - 1,
        "bytes_mean": statistics.mean(naive),
        "bytes_worst": max(naive),
        "bytes_total": naive_total / true_total - 1,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=list(KINDS), action="append")
    parser.add_argument("--limit", type=int, default=200, help="requests of each kind, about")
    parser.add_argument("--json", action="store_true", help="a JSON line of figures per kind")
    args = parser.parse_args()
    try:
        import tiktoken

        encodings = {name: tiktoken.get_encoding(name) for name in ("o200k_base", "cl100k_base")}
    except Exception as exc:  # no tiktoken, or no encodings and no network to fetch them
        print(f"skipped: tiktoken and its encodings are needed ({type(exc).__name__}: {exc})")
        return 0
    if not args.json:
        print(
            f"{'kind':<16}{'requests':>9}{'tokens':>10}  estimate: mean  worst  total"
            "   bytes/4: mean  worst  total"
        )
    for kind in args.kind or list(KINDS):
        requests = KINDS[kind](args.limit)
        if not requests:
            if not args.json:
                print(f"{kind:<16}  no text of this kind found on this machine")
            continue
        r = measure(encodings, requests)
        if args.json:
            print(json.dumps({"kind": kind, **r}))
            continue
        print(
            f"{kind:<16}{r['requests']:>9,}{r['tokens']:>10,}"
            f"  {r['mean']:>14.1%} {r['worst']:>6.0%} {r['total']:>+6.1%}"
            f"  {r['bytes_mean']:>14.1%} {r['bytes_worst']:>6.0%} {r['bytes_total']:>+6.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
