"""Shared fixtures: tiny, seeded models and data made here (the tests never read ../shared)."""
from __future__ import annotations

import json
import os
import random
import socket
import sys
import urllib.request
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model.checkpoint import save_checkpoint  # noqa: E402
from model.config import ModelConfig  # noqa: E402
from model.tokenizer import Tokenizer  # noqa: E402
from model.transformer import Transformer  # noqa: E402

FR_WORDS = "le chat la maison un chien mange une pomme dort sur canapé il fait très beau nous allons à plage demain".split()
EN_WORDS = "the cat house a dog eats an apple sleeps on sofa it is very nice we go to beach tomorrow".split()


def tiny_pairs(n: int = 200, seed: int = 0) -> list[tuple[str, str]]:
    """Made-up parallel sentences: enough text for a small SentencePiece model."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        k = rng.randint(2, 7)
        idx = [rng.randrange(len(FR_WORDS)) for _ in range(k)]
        fr = " ".join(FR_WORDS[i] for i in idx).capitalize() + "."
        en = " ".join(EN_WORDS[i % len(EN_WORDS)] for i in idx).capitalize() + "."
        pairs.append((fr, en))
    return pairs


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Tokenizer:
    pairs = tiny_pairs()
    return Tokenizer.train([s for p in pairs for s in p], vocab_size=96)


def tiny_config(vocab_size: int, **overrides) -> ModelConfig:
    base = dict(src_vocab_size=vocab_size, tgt_vocab_size=vocab_size, d_model=32, n_heads=4,
                n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.1, max_positions=64)
    base.update(overrides)
    return ModelConfig(**base)


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer: Tokenizer) -> Transformer:
    torch.manual_seed(0)
    return Transformer(tiny_config(tiny_tokenizer.vocab_size)).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model: Transformer, tiny_tokenizer: Tokenizer) -> Path:
    """A random-weight checkpoint written by the project's own save code."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, tiny_model, tiny_tokenizer, {"note": "random weights for tests", "steps": 0})
    return path


def simulate_layout_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every ``F.linear`` on column-major weights land one ulp above PyTorch's own result.

    The two weight layouts of ``model/layout.py`` sum each dot product in a different order; on some
    CPUs (an AMD EPYC) that moves the last bit of a logit, on others (the Intel Xeon of CI) it happens
    not to. This makes the difference certain on every CPU, so an assertion that only holds when the two
    layouts agree bit for bit fails everywhere. Within one layout every product is nudged alike, so
    what is exact by construction (same weights, same layout, same kernels) stays exact.
    """
    import torch.nn.functional as F

    from model.layout import is_column_major

    linear = F.linear

    def nudged(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        out = linear(input, weight, bias)
        if weight.dtype == torch.float32 and is_column_major(weight):
            out = torch.nextafter(out, torch.full_like(out, float("inf")))
        return out

    monkeypatch.setattr(F, "linear", nudged)


@pytest.fixture
def layout_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Column-major products one ulp off (``simulate_layout_rounding``) for the test that asks for it."""
    simulate_layout_rounding(monkeypatch)


@pytest.fixture(autouse=True)
def _layout_rounding_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """``REGARD_LAYOUT_ROUNDING=1 python3 -m pytest`` runs the whole suite as if on a CPU whose two
    weight layouts round differently: CI runs it so an assertion that depends on the layout fails on any vendor."""
    if os.environ.get("REGARD_LAYOUT_ROUNDING") == "1":
        simulate_layout_rounding(monkeypatch)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_checkpoint_b(tmp_path_factory, tiny_tokenizer: Tokenizer) -> Path:
    """A second tiny model (pre-LN, other seed): the app's model picker and compare view need two."""
    torch.manual_seed(1)
    model = Transformer(tiny_config(tiny_tokenizer.vocab_size, norm="pre")).eval()
    path = tmp_path_factory.mktemp("ckpt_b") / "tiny-pre.safetensors"
    record = {"steps": 20, "dev_history": [{"step": 10, "minutes": 1.0, "bleu": 1.5, "chrf": 9.0},
                                           {"step": 20, "minutes": 2.0, "bleu": 3.0, "chrf": 12.0}]}
    save_checkpoint(path, model, tiny_tokenizer, record)
    return path


@pytest.fixture(scope="session")
def app_context(tiny_checkpoint, tiny_checkpoint_b):
    """Both tiny models loaded as the app loads them (the first is the default)."""
    from ui.context import load_context

    return load_context([tiny_checkpoint, tiny_checkpoint_b], device="cpu")


@pytest.fixture(scope="session")
def served_app(app_context):
    """The Gradio app on the two tiny checkpoints, served on a free loopback port for the whole session."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from tests
    from ui.handlers import warm_up
    from ui.layout import build_demo

    warm_up(app_context)
    demo = build_demo(app_context)
    demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True)
    try:
        yield demo
    finally:
        demo.close()


def raw_queue_call(base: str, api_name: str, data: list, session: str = "rawclient1") -> dict:
    """One queued call with hand-written JSON, as any client may send it (``json.dumps`` escapes to
    ASCII, so a lone surrogate travels as ``\\ud800``, which gradio_client cannot send); returns the
    ``process_completed`` message's output (``error`` holds a refusal's text)."""
    with urllib.request.urlopen(base + "config", timeout=30) as r:
        config = json.loads(r.read())
    fn_index = next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == api_name)
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None,
                       "trigger_id": None}).encode()
    join = urllib.request.Request(base + "gradio_api/queue/join", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(join, timeout=30) as r:
        assert r.status == 200
    with urllib.request.urlopen(f"{base}gradio_api/queue/data?session_hash={session}", timeout=30) as stream:
        for line in stream:
            if line.startswith(b"data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message["output"]
    raise AssertionError("the stream ended without a result")
