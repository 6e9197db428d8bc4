"""Every knob of a training run in one dataclass; ``train.py`` exposes each as a --flag."""
from __future__ import annotations

from dataclasses import dataclass


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
    # model (see model.config.ModelConfig)
    d_model: int = 256
    n_heads: int = 8
    n_encoder_layers: int = 4
    n_decoder_layers: int = 4
    d_ff: int = 1024
    dropout: float = 0.1
    norm: str = "post"
    activation: str = "relu"
    tie_embeddings: bool = True
    max_positions: int = 256
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


# What a resumed run takes from the command line: its budget and hardware always, its bookkeeping when
# the flag is given (left at its default, the run's own value stays). Everything else is the recipe,
# which stays the run's own (training.loop refuses a recipe flag that differs).
RESUME_FROM_COMMAND_LINE = ("time_budget_min", "max_steps", "device", "threads")
RESUME_BOOKKEEPING = ("log_every", "eval_every_min", "save_every_min", "keep_snapshots")
