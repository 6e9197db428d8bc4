"""The real entry point, ``python app.py``, as a person or a Space starts it (not the tests' own launch).

Gradio's ``launch`` blocks the main thread; whatever Regard installs around it must be in place under
``python app.py`` too: here a full queue must answer with Regard's busy text, not Gradio's
"Queue is full. Max size is …". The server runs the tiny test model with a queue of one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT, free_port
from ui.server import BUSY

LONG = " ".join(["Le chat mange une pomme sur le canapé."] * 60)  # ~2,300 characters: many pieces to decode


@pytest.fixture(scope="module")
def real_app(tiny_checkpoint):
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "app.py", "--checkpoint", str(tiny_checkpoint), "--port", str(port),
                             "--concurrency", "1", "--max-queue", "1"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "config", timeout=5) as r:
                    config = json.loads(r.read())
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"python app.py did not start: {proc.stdout.read() if proc.stdout else ''}")
                time.sleep(0.5)
        yield base, config
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def join(base: str, fn_index: int, session: str) -> tuple[int, str]:
    body = json.dumps({"data": [LONG, "Greedy", 4, 1.0, 0, True, "tiny", "fp32"], "fn_index": fn_index,
                       "session_hash": session, "event_data": None, "trigger_id": None}).encode()
    request = urllib.request.Request(base + "gradio_api/queue/join", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_full_queue_says_busy_under_python_app_py(real_app):
    base, config = real_app
    fn_index = next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "translate")
    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda n: join(base, fn_index, f"busy{n}"), range(40)))
    refused = [text for status, text in answers if status != 200]
    assert refused, "40 long requests at once against a queue of one: some must be refused"
    assert all(BUSY in text for text in refused), refused[:3]
    assert not any("Queue is full" in text for text in refused)
