"""What a link or a request can smuggle in: nothing. Messages that repeat user input show it as text,
nothing but text is taken as text, telemetry is off, and nothing served names a path of the machine.

The app is served for real (``served_app``) and driven through ``gradio_client`` and raw HTTP, as an
outside client would; every refusal is asserted by its text, and the server must keep answering.
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from conftest import raw_queue_call
from model.record import public_record, public_text
from ui import inputs

EXAMPLE = "Je mange une pomme."
GREEDY = dict(decoding=inputs.GREEDY, beam_size=4, length_penalty=1.0, max_len=0, use_cache=True, model="tiny")
LINK = '<a href="https://evil.example/login">Session expired, sign in again</a>'
IMAGE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def client(served_app) -> Client:
    return Client(served_app.local_url, verbose=False)


def still_serving(client: Client) -> None:
    english, trace = client.predict(text=EXAMPLE, **GREEDY, api_name="/translate")
    assert english == trace["translation"] and trace["steps"]


def error_of(call) -> str:
    with pytest.raises(AppError) as info:
        call()
    message = str(info.value)
    assert "Traceback" not in message
    return message


@pytest.mark.parametrize("name", [LINK, IMAGE])
def test_a_model_name_with_html_comes_back_escaped(client, name):
    from ui import handlers

    message = str(handlers.refuse(f"there is no model {name!r}").message)
    assert "<a " not in message and "<img" not in message and "&lt;" in message
    # the same through the page's own start-up, which reads the model from the address
    text = error_of(lambda: client.predict(text=EXAMPLE, **{**GREEDY, "model": name}, api_name="/translate"))
    assert "<a " not in text and "<img" not in text
    still_serving(client)


def test_heads_typed_with_html_come_back_escaped(client):
    text = error_of(lambda: client.predict(EXAMPLE, IMAGE, "tiny", api_name="/whatif_ablate"))
    assert "is not a head" in text and "<img" not in text and "&lt;img" in text
    still_serving(client)


@pytest.mark.parametrize("value", [["Je", "mange"], {"text": "Je mange"}, 42, True])
def test_non_strings_are_not_text(client, value):
    text = error_of(lambda: client.predict(text=value, **GREEDY, api_name="/translate"))
    assert "must be text" in text and type(value).__name__ in text
    text = error_of(lambda: client.predict(EXAMPLE, value, "tiny", api_name="/whatif_force"))
    assert "must be text" in text
    text = error_of(lambda: client.predict(EXAMPLE, value, "tiny", api_name="/whatif_branch"))
    assert "must be text" in text
    text = error_of(lambda: client.predict(EXAMPLE, value, "tiny", api_name="/whatif_compare"))
    assert "must be text" in text
    still_serving(client)


@pytest.mark.parametrize("ids", ["²", "① 2", "1 ³", "٣"])
def test_prefix_ids_that_are_not_ascii_digits_are_refused_with_text(client, ids):
    text = error_of(lambda: client.predict(EXAMPLE, ids, "tiny", api_name="/whatif_branch"))
    assert "whole numbers" in text
    still_serving(client)


def test_a_lone_surrogate_in_the_prefix_is_refused_with_text(served_app, client):
    output = raw_queue_call(served_app.local_url, "whatif_force", [EXAMPLE, "The \ud800 cat", "tiny"], "hostile1")
    assert "lone UTF-16 surrogate" in output["error"] and "prefix" in output["error"]
    still_serving(client)


def test_aligning_an_empty_translation_says_so(app_context, monkeypatch):
    from ui import whatif

    eos = app_context.default.ckpt.config.eos_id
    class Ended:  # a finished generation whose model ended at once
        def sentence(self):
            return None, [eos]

    monkeypatch.setattr(whatif, "_greedy", lambda lm, src, mask=None: Ended())
    with pytest.raises(gr.Error) as info:
        whatif.alignment(app_context, EXAMPLE, "tiny")
    assert "translation is empty" in info.value.message


def fetch_config(base: str) -> dict:
    with urllib.request.urlopen(base + "config", timeout=30) as r:
        return json.loads(r.read())


def test_config_has_no_telemetry_and_no_absolute_path(served_app):
    config = fetch_config(served_app.local_url)
    assert config["analytics_enabled"] is False
    text = json.dumps(config, ensure_ascii=False)
    # any absolute path of this machine (the repository, the temporary checkpoints, a home folder)
    leaks = [m for m in re.findall(r'(?<![\w.~:/\-])/(?:[\w.@+\-]+/)+[\w.@+\-]+', text)
             if not m.startswith(("/gradio_api", "/static", "/file", "/assets", "/theme", "/config"))]
    assert leaks == []


def test_a_record_is_served_without_the_training_machines_paths():
    record = {"train_config": {"out_dir": "/home/ana/regard-runs/preln",
                               "train_path": "/work/shared/data/tatoeba/train.tsv:1,../shared/data/x.tsv:2"},
              "command": "python train.py --out-dir /home/ana/regard-runs/preln",
              "scores": [{"data": "/work/shared/data/ood/newstest2013.tsv", "bleu": 16.75}]}
    public = public_record(record)
    assert public["train_config"] == {"out_dir": "…/regard-runs/preln",
                                      "train_path": "../shared/data/tatoeba/train.tsv:1,../shared/data/x.tsv:2"}
    assert public["command"] == "python train.py --out-dir …/regard-runs/preln"
    assert public["scores"][0] == {"data": "../shared/data/ood/newstest2013.tsv", "bleu": 16.75}
    assert public_text("see https://example.org/a/b, 3 km/h, cross:4:1") == "see https://example.org/a/b, 3 km/h, cross:4:1"


def test_the_app_serves_no_telemetry_and_no_training_paths_by_default(tmp_path, monkeypatch, tiny_model,
                                                                       tiny_tokenizer):
    """The real defaults: no GRADIO_ANALYTICS_ENABLED in the environment, a record and a card written on a
    training machine (absolute run and data paths) -> the page's config names none of them."""
    from model.checkpoint import save_checkpoint
    from ui.context import load_context
    from ui.layout import build_demo

    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)
    record = {"command": "python train.py --out-dir /home/ana/regard-runs/preln",
              "train_config": {"out_dir": "/home/ana/regard-runs/preln", "dev_path": "/srv/shared/data/dev.tsv"}}
    path = save_checkpoint(tmp_path / "tiny.safetensors", tiny_model, tiny_tokenizer, record)
    path.with_suffix(".md").write_text("trained with `--out-dir /home/ana/regard-runs/preln`\n", encoding="utf-8")
    demo = build_demo(load_context([path], device="cpu"))
    assert demo.analytics_enabled is False
    config = json.dumps(demo.get_config_file(), ensure_ascii=False)
    assert "/home/ana" not in config and "/srv/" not in config and str(tmp_path) not in config
    assert "…/regard-runs/preln" in config and "../shared/data/dev.tsv" in config  # still says which run


def test_an_empty_model_name_means_the_default(client):
    english, trace = client.predict(text=EXAMPLE, **{**GREEDY, "model": ""}, api_name="/translate")
    assert trace["model"] == "tiny" and english == trace["translation"]
    _, forced = client.predict(EXAMPLE, "", "", api_name="/whatif_force")
    assert forced["model"] == "tiny"


def request_text(url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 10) -> tuple[int, str]:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize("fn_index", [999, -1, 10**9])
def test_an_unknown_event_is_a_404_with_text(served_app, client, fn_index):
    body = json.dumps({"data": [EXAMPLE], "fn_index": fn_index, "session_hash": "unknown-fn"}).encode()
    status, text = request_text(served_app.local_url + "gradio_api/queue/join", body)
    assert (status, "has no event" in text) == (404, True), (status, text)
    still_serving(client)


def test_a_stream_for_a_session_that_never_joined_is_a_404_with_text(served_app, client):
    status, text = request_text(served_app.local_url + "gradio_api/queue/data?session_hash=never-joined")
    assert status == 404 and "join the queue first" in text
    still_serving(client)


@pytest.mark.parametrize("route", ["gradio_api/call/translate", "gradio_api/call/v2/translate", "call/translate"])
def test_the_rest_call_routes_are_closed(served_app, client, route):
    body = json.dumps({"data": [EXAMPLE, "Greedy", 4, 1.0, 0, True, "tiny", "fp32"]}).encode()
    status, text = request_text(served_app.local_url + route, body, {"Origin": "https://evil.example"})
    assert status == 404 and "closed" in text
    still_serving(client)


def test_a_chunked_body_over_the_cap_is_a_413_with_text(served_app, client):
    """No Content-Length: the body arrives in chunks and is counted as it comes."""
    import http.client
    from urllib.parse import urlsplit

    from ui.server import MAX_BODY_BYTES

    where = urlsplit(served_app.local_url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    chunks = (b"x" * 8192 for _ in range(MAX_BODY_BYTES // 8192 + 2))
    conn.request("POST", "/gradio_api/queue/join", body=chunks, headers={"Content-Type": "application/json"},
                 encode_chunked=True)
    answer = conn.getresponse()
    assert answer.status == 413 and "too large" in answer.read().decode()
    conn.close()
    still_serving(client)
