"""Serving the app to the public: one bounded queue, capped bodies, closed side doors, security headers.

- Model calls run only through Gradio's queue (``MAX_QUEUE`` waiting) and then the gate
  ``ctx.in_flight`` (``ctx.concurrency`` model calls at once, a micro-batch being one call; see
  ``ui.layout`` and ``ui.batcher``); the unqueued REST route ``/gradio_api/run/…`` is closed, so a
  burst of POSTs cannot run beside the queue. A full queue answers ``BUSY``.
- Request bodies over ``MAX_BODY_BYTES`` are refused before they are read; the upload route is
  closed (the app has no file input); ``/monitoring`` is off.
- Every response carries ``nosniff``, a frame ban and a CSP that allows only this origin (plus
  the inline script and styles Gradio's own page needs).
"""
from __future__ import annotations

from typing import Any

import gradio as gr
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024  # a 1,000-character sentence and its settings are < 8 KB of JSON
MAX_QUEUE = 64  # waiting model calls; beyond this a visitor is told to try again
SESSIONS = 200  # Gradio's per-session state slots (the app keeps no state of its own)
BUSY = "The server is busy translating for other visitors: please try again in a few seconds."
CLOSED_PREFIXES = ("/gradio_api/run/", "/gradio_api/upload", "/gradio_api/api/", "/monitoring", "/gradio_api/mcp",
                   "/run/", "/upload", "/api/predict")
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
       "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'")
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"same-origin"), (b"content-security-policy", CSP.encode())]


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *HEADERS]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: closed routes -> 404, oversize bodies -> 413, security headers on every answer."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path.startswith(CLOSED_PREFIXES):
            await _plain(send, 404, "Not found: this route is closed on Regard's server.")
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _plain(send, 413, f"Request body too large: the limit is {self.max_body} bytes.")
            return
        seen = 0

        async def capped_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:  # chunked bodies carry no length: count as they arrive
                    raise ValueError("request body too large")
            return message

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *[(k, v) for k, v in HEADERS if k not in names]]}
            await send(message)

        await self.app(scope, capped_receive, with_headers)


def polite_queue(demo: gr.Blocks) -> None:
    """Make a full queue say ``BUSY`` instead of Gradio's "Queue is full. Max size is …"."""
    queue = demo._queue
    push = queue.push

    async def push_or_busy(*args: Any, **kwargs: Any):
        ok, message, status = await push(*args, **kwargs)
        return (ok, BUSY, status) if status == "queue_full" else (ok, message, status)

    queue.push = push_or_busy


def launch_options(max_body: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch`` that every serving path (app, tests, benchmarks) uses."""
    return dict(
        app_kwargs={"middleware": [Middleware(Guard, max_body=max_body)], "docs_url": None, "redoc_url": None,
                    "openapi_url": None},
        enable_monitoring=False,
        max_file_size="1kb",
        state_session_capacity=SESSIONS,
        show_error=False,
        footer_links=["api"],
        mcp_server=False,
        ssr_mode=False,
        pwa=False,
        run_history=False,
    )
