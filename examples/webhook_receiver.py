"""Receive OpenAI's batch webhooks, and download each completed batch's results.

Run it with the API key and the endpoint's signing secret (the dashboard shows the
``whsec_...`` secret once, when the webhook endpoint is made)::

    export OPENAI_API_KEY=sk-...
    export OPENAI_WEBHOOK_SECRET=whsec_...
    python examples/webhook_receiver.py 8000      # the port: argv, else $PORT, else 8000

Results go to ``results/`` (``$RESULTS_DIR``), as ``<batch id>_output.jsonl`` and
``<batch id>_errors.jsonl``. OpenAI delivers only to HTTPS, so put the receiver behind a TLS
proxy or a tunnel (``ngrok http 8000``), and subscribe the endpoint to the ``batch.*`` events.

Try it locally by signing a request yourself, as OpenAI does::

    import base64, hashlib, hmac, json, os, time, urllib.request

    secret = os.environ["OPENAI_WEBHOOK_SECRET"]
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    now = str(int(time.time()))
    body = json.dumps({"id": "evt_test", "object": "event", "created_at": int(now),
                       "type": "batch.failed", "data": {"id": "batch_test"}})
    digest = hmac.new(key, f"wh_test.{now}.{body}".encode(), hashlib.sha256).digest()
    headers = {"webhook-id": "wh_test", "webhook-timestamp": now,
               "webhook-signature": "v1," + base64.b64encode(digest).decode()}
    request = urllib.request.Request("http://localhost:8000/", body.encode(), headers)
    print(urllib.request.urlopen(request).status)  # 200; change the body after signing: 400

(A ``batch.completed`` event downloads, so give it the id of a batch of yours.)
"""

from __future__ import annotations

import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Run from the repository, openai_batch.py is in the folder above this one.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import openai_batch

#: Events are a few hundred bytes; a bigger body is not one, and is not read.
MAX_BODY = 1 << 20


class WebhookReceiver(BaseHTTPRequestHandler):
    """Answers each event at once; a completed batch is downloaded in a thread of its own."""

    client: openai_batch.Client
    results_dir = "results"

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length", "")
        if not length.isdecimal() or int(length) > MAX_BODY:
            self._answer(413 if length.isdecimal() else 411)
            return
        body = self.rfile.read(int(length))
        try:
            event = self.client.webhooks.unwrap(body, self.headers)
        except ValueError as exc:  # a wrong signature, a stale timestamp, a missing header
            self.log_message("refused: %s", exc)
            self._answer(400)
            return
        # Answer first: OpenAI waits only seconds, and sends again what was not answered 2xx.
        self._answer(200)
        self.log_message("%s %s (event %s)", event.type, _subject(event), event.id)
        if isinstance(event, openai_batch.BatchCompletedWebhookEvent):
            # An expired or cancelled batch keeps what it finished too: add those events here
            # to fetch that as well. A repeated event is harmless: the files are replaced whole.
            args = (self.client, event.data.id, self.results_dir)
            threading.Thread(target=download, args=args, name=event.data.id).start()

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _subject(event: openai_batch.WebhookEvent) -> str:
    """The id of what the event is about: a batch, a response, a fine-tuning job..."""
    data = event.data
    if isinstance(data, openai_batch.BatchWebhookEventData):
        return data.id
    return str(data.get("id")) if isinstance(data, dict) else "?"


def download(client: openai_batch.Client, batch_id: str, directory: str) -> None:
    try:
        paths = client.download(batch_id, directory)
    except openai_batch.OpenAIError as exc:
        print(f"{batch_id}: download failed: {exc}", file=sys.stderr, flush=True)
        return
    print(f"{batch_id}: saved {', '.join(paths) or 'nothing (no files)'}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    port = int(args[0] if args else os.environ.get("PORT", "8000"))
    try:
        client = openai_batch.OpenAI()
    except openai_batch.OpenAIError as exc:
        print(exc, file=sys.stderr)
        return 2
    if client.webhook_secret is None:
        print("Set OPENAI_WEBHOOK_SECRET to the endpoint's signing secret.", file=sys.stderr)
        return 2
    WebhookReceiver.client = client
    WebhookReceiver.results_dir = os.environ.get("RESULTS_DIR", "results")
    server = ThreadingHTTPServer(("", port), WebhookReceiver)
    print(f"Listening on port {port}; Ctrl-C stops.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
