"""Every knob of a training run in one dataclass that nests the network's ``ModelConfig``.

The architecture is declared once, in ``model.config.ModelConfig``: a run trains ``TrainConfig.model``,
whose vocabulary fields follow the run's tokenizer (``vocab_size``; the special ids are the tokenizer's
too). ``train.py`` exposes every field as a --flag, those of ``ModelConfig`` included, so a field added
to the network can be trained without touching this file.

Records (``train_config`` in a run's state and in every checkpoint it writes) keep one flat JSON
object, one key per flag: the form the shipped checkpoints and their readers already have.
"""
from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any

from model.config import ModelConfig

# ModelConfig fields a run does not choose: the tokenizer gives the vocabulary and the special ids.
FROM_TOKENIZER = ("src_vocab_size", "tgt_vocab_size", "pad_id", "unk_id", "bos_id", "eos_id")


@dataclass
class TrainConfig:
    # data: comma-separated files, each with an optional ":weight" (times an epoch sees it)
    train_path: str = "../shared/data/tatoeba/train.tsv"
    # dev files: the selection metric is the mean BLEU over them, each cut to dev_limit pairs
    dev_path: str = "../shared/data/tatoeba/dev.tsv"
    out_dir: str = "runs/base"
    vocab_size: int = 8000
    max_sentence_tokens: int = 128  # longer pairs are dropped from training
    aug_rate: float = 0.0  # substituted copies per pair with a shared name/city/number (0.5: half get one)
    # from epoch late_aug_epoch on (0 = never), aug_rate becomes late_aug_rate: more copying practice once
    # the model translates; may be set when resuming, as long as that epoch has not begun
    late_aug_epoch: int = 0
    late_aug_rate: float = 0.0
    split_elision: bool = False  # tokenizer: "l'animal" -> "l' animal" before SentencePiece
    byte_fallback: bool = False  # tokenizer: unknown characters become bytes, never <unk>
    # the network (its own defaults); src/tgt_vocab_size are set to vocab_size
    model: ModelConfig = field(default_factory=ModelConfig)
    # optimisation
    max_tokens: int = 4096  # padded tokens per batch (rows x longest side)
    peak_lr: float = 1e-3
    warmup_steps: int = 800
    beta1: float = 0.9
    beta2: float = 0.98
    adam_eps: float = 1e-9
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    seed: int = 1
    # budget and bookkeeping
    time_budget_min: float = 105.0  # wall-clock minutes of training, summed over resumes
    max_steps: int = 0  # 0 = no step limit
    log_every: int = 200
    eval_every_min: float = 15.0
    save_every_min: float = 5.0
    keep_snapshots: int = 4  # weights kept at each evaluation, for averaging
    dev_limit: int = 0  # evaluate on the first N dev pairs (0 = all)
    # hardware
    device: str = "auto"
    bf16: bool = True  # autocast matmuls to bfloat16 (CPU with AVX-512 bf16, or CUDA)
    threads: int = 0  # torch CPU threads, 0 = leave torch's default

    def __post_init__(self) -> None:
        if self.model.src_vocab_size != self.vocab_size or self.model.tgt_vocab_size != self.vocab_size:
            self.model = dataclasses.replace(self.model, src_vocab_size=self.vocab_size, tgt_vocab_size=self.vocab_size)

    def to_dict(self) -> dict[str, Any]:
        """The flat record: every flag's field by name, the network's among them."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        return {**own, **{name: getattr(self.model, name) for name in model_fields()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """From a flat record (``to_dict``, or an older run's, which lacks newer fields: they keep their
        defaults). A key that names no field raises ``ValueError``."""
        unknown = sorted(set(data) - set(flag_fields()))
        if unknown:
            raise ValueError(f"unknown training settings: {unknown}")
        net = {name: value for name, value in data.items() if name in model_fields()}
        return cls(**{n: v for n, v in data.items() if n not in net}, model=ModelConfig(**net))

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with flat fields changed (``d_model=32`` reaches the nested network)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})


@functools.cache
def model_fields() -> tuple[str, ...]:
    """The ``ModelConfig`` fields a run chooses: all but the tokenizer's."""
    return tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name not in FROM_TOKENIZER)


@functools.cache
def flag_fields() -> dict[str, tuple[Any, Any]]:
    """Every flat field's (type, default), in flag order: the run's own, then the network's."""
    own, net = typing.get_type_hints(TrainConfig), typing.get_type_hints(ModelConfig)
    fields = {f.name: (own[f.name], f.default) for f in dataclasses.fields(TrainConfig) if f.name != "model"}
    defaults = ModelConfig()
    return {**fields, **{name: (net[name], getattr(defaults, name)) for name in model_fields()}}


# What a resumed run takes from the command line: its budget and hardware always, its bookkeeping when
# the flag is given (left at its default, the run's own value stays). Everything else is the recipe,
# which stays the run's own (training.loop refuses a recipe flag that differs).
RESUME_FROM_COMMAND_LINE = ("time_budget_min", "max_steps", "device", "threads")
RESUME_BOOKKEEPING = ("log_every", "eval_every_min", "save_every_min", "keep_snapshots")
