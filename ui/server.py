"""Serving the app to the public: one bounded queue, capped bodies, closed side doors, security headers.

- Model calls run only through Gradio's queue (``MAX_QUEUE`` waiting) and then the gate
  ``ctx.in_flight`` (``ctx.concurrency`` model calls at once, a micro-batch being one call; see
  ``ui.layout`` and ``ui.batcher``); the unqueued REST routes ``/gradio_api/run/…`` and
  ``/gradio_api/call/…`` are closed, so a burst of POSTs cannot run beside the queue. A full queue
  answers ``BUSY``.
- Request bodies over ``MAX_BODY_BYTES`` are refused (413 with text, chunked or not); the upload
  route is closed (the app has no file input); ``/monitoring`` is off. An unknown event or session
  is a 404 with text, not Gradio's bare 500 or broken stream.
- Every response carries ``nosniff``, a frame ban and a CSP that allows only this origin (plus
  the inline script and styles Gradio's own page needs).
- A visitor's Gradio session keeps no copy of the page and none of its outputs (``LeanSessions``):
  memory stays flat however many visitors come and however long their sentences.
"""
from __future__ import annotations

import json
import os
from copy import copy
from typing import Any
from urllib.parse import parse_qs

import gradio as gr
from gradio.state_holder import SessionState, StateHolder
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024  # a 1,000-character sentence and its settings are < 8 KB of JSON
MAX_QUEUE = 64  # waiting model calls; beyond this a visitor is told to try again
SESSIONS = 200  # Gradio's per-session slots: a few KB each with LeanSessions (was ~0.2 MB + every output)
BUSY = "The server is busy translating for other visitors: please try again in a few seconds."
# /call/* is Gradio's REST route for curl: a second way into the model beside the queue, open to any
# origin; the API is the queue (gradio_client, @gradio/client), under the same bound as the page
CLOSED_PREFIXES = ("/gradio_api/run/", "/gradio_api/upload", "/gradio_api/api/", "/monitoring", "/gradio_api/mcp",
                   "/run/", "/upload", "/api/predict", "/gradio_api/call/", "/call/")
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
    """ASGI middleware in front of Gradio: every refusal is a status with text, never a bare 500.

    - closed routes (``CLOSED_PREFIXES``) -> 404;
    - bodies over ``max_body`` -> 413, with or without a Content-Length (a chunked body is read into
      memory up to the cap first, then handed on);
    - ``queue/join`` naming an event the page does not have (``fn_index`` 999, -1) -> 404, where Gradio
      answers 500 with no text; ``queue/data`` for a session that never joined -> 404, where Gradio
      starts a stream and then breaks the connection (two tracebacks in the log);
    - security headers on every answer.
    """

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
        if scope.get("method") == "POST":
            body = await _read_body(receive, self.max_body)
            if body is None:
                await _plain(send, 413, f"Request body too large: the limit is {self.max_body} bytes.")
                return
            if path.endswith("/queue/join") and (problem := _unknown_event(scope, body)):
                await _plain(send, 404, problem)
                return
            receive = _replay(body, receive)
        elif path.endswith("/queue/data") and (problem := _unknown_session(scope)):
            await _plain(send, 404, problem)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *[(k, v) for k, v in HEADERS if k not in names]]}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes ``limit`` bytes (nothing more is read)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the client's later messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


def _blocks(scope: Scope) -> Any:
    app = scope.get("app")
    return app.get_blocks() if app is not None and hasattr(app, "get_blocks") else None


def _unknown_event(scope: Scope, body: bytes) -> str | None:
    """A reason to refuse a queue/join whose ``fn_index`` is an integer the page has no event for."""
    blocks = _blocks(scope)
    try:
        fn_index = json.loads(body).get("fn_index")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None  # Gradio's own validation answers 422 with its reasons
    if blocks is None or not isinstance(fn_index, int) or isinstance(fn_index, bool) or fn_index in blocks.fns:
        return None
    return f"Not found: this app has no event {fn_index} (see /config for its dependencies)."


def _unknown_session(scope: Scope) -> str | None:
    """A reason to refuse a queue/data stream for a session that has nothing queued."""
    blocks = _blocks(scope)
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    session = (query.get("session_hash") or [""])[0]
    if blocks is None or session in blocks._queue.pending_messages_per_session:
        return None
    return "Not found: no request is waiting for this session; join the queue first (gradio_api/queue/join)."


class LeanSessionState(SessionState):
    """A visitor's Gradio session without Gradio's copy of the page config and of every output value.

    Gradio's ``SessionState`` builds, for each new session, the config of every component (~0.3 MB
    for Regard's page: the training records, the positional-encoding plots) and then writes each
    output value into it: the whole trace, up to ~6 MB of JSON for a 1,000-character sentence, for
    ``SESSIONS`` sessions (200 long traces: > 1 GB). That copy serves only ``gr.DeepLinkButton``
    (``/gradio_api/deep_link``), which Regard does not have: its links carry the settings in the page
    address and the page translates again. What the session keeps is what Gradio's event processing
    reads: per-session component updates (``blocks_config``) and ``gr.State`` values (none here).
    ``tests/test_memory.py`` checks that the attributes still match Gradio's ``SessionState``.
    """

    def __init__(self, blocks: gr.Blocks) -> None:  # noqa: D107 - SessionState.__init__ minus config_values
        self.blocks_config = copy(blocks.default_config)  # shallow: shares the components until one is updated
        self.config_values: dict[int, dict] = {}
        self.state_data: dict[int, Any] = {}
        self._state_ttl: dict[int, Any] = {}
        self.is_closed = False
        self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600

    def __setitem__(self, key: int, value: Any) -> None:
        super().__setitem__(key, value)
        self.config_values.pop(key, None)

    def _update_config(self, key: int) -> None:
        pass

    def _update_value_in_config(self, key: int, value: Any) -> None:
        pass  # the output goes to the page; no copy stays here


class LeanStateHolder(StateHolder):
    """Gradio's ``StateHolder`` (LRU of ``SESSIONS`` sessions) whose new sessions are ``LeanSessionState``s."""

    def __getitem__(self, session_id: str) -> SessionState:
        with self.lock:
            if session_id not in self.session_data:
                self.session_data[session_id] = LeanSessionState(self.blocks)
        return super().__getitem__(session_id)


class LeanSessions:
    """Mix into ``gr.Blocks``: the state holder Gradio's server attaches to the Blocks becomes a ``LeanStateHolder``.

    Gradio creates the holder inside ``launch`` and hands it over with ``blocks.state_holder = holder``
    (``StateHolder.set_blocks``) before the server answers anything; turning that very object (the
    server app references it too) into the subclass here works for every launch path (``python app.py``,
    tests, benchmarks) without touching Gradio's private launch arguments.
    """

    @property
    def state_holder(self) -> StateHolder:
        return self.__dict__["_regard_state_holder"]

    @state_holder.setter
    def state_holder(self, holder: StateHolder) -> None:
        if type(holder) is StateHolder:
            holder.__class__ = LeanStateHolder  # same attributes, one method overridden
        self.__dict__["_regard_state_holder"] = holder


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
