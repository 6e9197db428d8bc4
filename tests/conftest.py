"""Shared fixtures: tiny, seeded models and data made here (the tests never read ../shared)."""
from __future__ import annotations

import os
import random
import socket
import sys
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
