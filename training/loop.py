"""The training loop: token-bucketed batches, label-smoothed loss, Adam + inverse-sqrt schedule,
bf16 autocast, a wall-clock budget, resumable state, periodic dev BLEU that keeps the best weights."""
from __future__ import annotations

import ctypes
import dataclasses
import json
import math
import os
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from model.checkpoint import save_checkpoint
from model.decoding import translate_batch
from model.loss import linear_cross_entropy
from model.device import pick_device
from model.tokenizer import Tokenizer
from model.transformer import Transformer

from .config import RESUME_BOOKKEEPING, RESUME_FROM_COMMAND_LINE, TrainConfig
from .augment import augment
from .data import (EncodedPairs, collate, encode_kept, encode_pairs, epoch_indices, make_batches, parse_sources,
                   read_pairs, subset)
from .metrics import score
from .schedule import inverse_sqrt_lr


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc only).

    Batches of varying shapes fragment glibc's arenas: on the 2-core dev machine the training
    process grew from 1.4 to 4.4 GB of RSS in 8 minutes although only ~1.4 GB was live, and one
    ``malloc_trim(0)`` brought it back. Without it a 2-hour run risks exhausting memory.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads (CPU)"


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def load_or_train_tokenizer(cfg: TrainConfig, train_pairs: list[tuple[str, str]], out: Path) -> Tokenizer:
    path = out / "spm.model"
    if path.exists():
        return Tokenizer.load(path, split_elision=cfg.split_elision)
    t0 = time.time()
    sentences = [s for pair in train_pairs for s in pair]
    tok = Tokenizer.train(sentences, cfg.vocab_size, split_elision=cfg.split_elision, byte_fallback=cfg.byte_fallback)
    path.write_bytes(tok.model_proto)
    log(f"trained SentencePiece: {tok.vocab_size} pieces on {len(sentences)} sentences in {time.time() - t0:.0f}s")
    return tok


def evaluate_dev(model: Transformer, tok: Tokenizer, dev: dict[str, list[tuple[str, str]]]) -> dict:
    """Greedy BLEU/chrF on each dev set; ``bleu``/``chrf`` are their means, the selection metric."""
    was_training = model.training
    model.eval()
    t0 = time.time()
    per_set = {}
    for name, pairs in dev.items():
        hyps = translate_batch(model, tok, [p[0] for p in pairs], batch_size=100)
        per_set[name] = score(hyps, [p[1] for p in pairs]).as_dict()
    result = {
        "bleu": round(sum(r["bleu"] for r in per_set.values()) / len(per_set), 2),
        "chrf": round(sum(r["chrf"] for r in per_set.values()) / len(per_set), 2),
        **({"sets": {k: {"bleu": v["bleu"], "chrf": v["chrf"]} for k, v in per_set.items()}} if len(per_set) > 1 else {}),
        "seconds": round(time.time() - t0, 1),
    }
    model.train(was_training)
    return result


def same_setting(name: str, a, b) -> bool:
    """Whether two values of a ``TrainConfig`` field ask for the same run: data files are compared as the
    files they name (a run started as ``../shared/data/x.tsv`` may resume as ``/work/shared/data/x.tsv``)."""
    if name in ("train_path", "dev_path"):
        def files(value: str) -> list[tuple[str, float]]:
            return [(os.path.realpath(s.path), s.weight) for s in parse_sources(value)]
        return files(a) == files(b)
    return a == b


def aug_rate_for(cfg: TrainConfig, epoch: int) -> float:
    """The augmentation rate of ``epoch``: ``late_aug_rate`` from ``late_aug_epoch`` on, if set."""
    return cfg.late_aug_rate if 0 < cfg.late_aug_epoch <= epoch else cfg.aug_rate


def epoch_data(cfg: TrainConfig, base: EncodedPairs, sizes: list[int], weights: list[float],
               pairs: list[tuple[str, str]], tok: Tokenizer, eos_id: int, epoch: int) -> EncodedPairs:
    """One epoch's pairs: each source resampled by its weight, plus fresh name/number substitutions.

    Everything is seeded by ``seed + epoch``, so a resumed run rebuilds the epoch it stopped in.
    """
    indices = epoch_indices(sizes, weights, cfg.seed + epoch)
    extra = None
    rate = aug_rate_for(cfg, epoch)
    if rate > 0:
        aug = augment([pairs[i] for i in sorted(set(indices))], rate, cfg.seed + epoch)
        extra = encode_pairs(aug, tok, cfg.max_sentence_tokens, eos_id) if aug else None
    return subset(base, indices, extra)


def train(cfg: TrainConfig, command: str = "") -> Path:
    """Train (or resume) the run in ``cfg.out_dir``; returns the path of the best checkpoint."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    state_path = out / "last.pt"
    state = torch.load(state_path, map_location="cpu", weights_only=False) if state_path.exists() else None
    if state is not None:
        saved = state["train_config"]
        # The late augmentation may be set or changed on resume, but never for an epoch already begun;
        # left at its defaults on the command line, the saved one stays.
        kept = (saved.get("late_aug_epoch", 0), saved.get("late_aug_rate", 0.0))
        late = kept if (cfg.late_aug_epoch, cfg.late_aug_rate) == (0, 0.0) else (cfg.late_aug_epoch, cfg.late_aug_rate)
        if late != kept and any(0 < e <= state["epoch"] for e in (late[0], kept[0])):
            raise ValueError(f"cannot change the late augmentation from {kept} to {late}: the run is in epoch "
                             f"{state['epoch']}, and a resumed run may only change epochs still to come")
        # The recipe stays the run's own; a recipe flag that asks for something else is refused, not ignored.
        default, asked = TrainConfig().to_dict(), cfg.to_dict()
        clashes = [f"--{name.replace('_', '-')} {value} (the run has {saved[name]})"
                   for name, value in asked.items()
                   if name not in RESUME_FROM_COMMAND_LINE + RESUME_BOOKKEEPING + ("late_aug_epoch", "late_aug_rate", "out_dir")
                   and name in saved and value != default[name] and not same_setting(name, value, saved[name])]
        if clashes:
            raise ValueError(f"a resumed run keeps its recipe: {', '.join(clashes)}")
        given = {name: asked[name] for name in RESUME_BOOKKEEPING if asked[name] != default[name]}
        cfg = TrainConfig.from_dict(saved).replace(**{name: asked[name] for name in RESUME_FROM_COMMAND_LINE},
                                                   **given, late_aug_epoch=late[0], late_aug_rate=late[1])
        log(f"resuming {out} at step {state['step']} ({state['elapsed'] / 60:.1f} min done)")
    if min(cfg.aug_rate, cfg.late_aug_rate) < 0:  # refused now, not when the late epoch begins hours later
        raise ValueError(f"augmentation rates must be >= 0, got {cfg.aug_rate} and {cfg.late_aug_rate}")
    (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    torch.manual_seed(cfg.seed)
    sources = parse_sources(cfg.train_path)
    raw = [read_pairs(src.path) for src in sources]
    dev_pairs = {s.name: read_pairs(s.path)[: cfg.dev_limit or None] for s in parse_sources(cfg.dev_path)}
    tok = load_or_train_tokenizer(cfg, [p for pairs in raw for p in pairs], out)
    mcfg = dataclasses.replace(cfg.model, src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size)
    base, train_pairs, sizes = EncodedPairs([], []), [], []
    for pairs in raw:  # long pairs are dropped per source, so ``sizes`` count the pairs kept
        enc, kept = encode_kept(pairs, tok, cfg.max_sentence_tokens, mcfg.eos_id)
        base.src.extend(enc.src)
        base.tgt.extend(enc.tgt)
        train_pairs += kept
        sizes.append(len(kept))
    weights = [s.weight for s in sources]
    log(f"{len(train_pairs)} training pairs kept of {sum(map(len, raw))}: "
        + ", ".join(f"{s.name} {n} x{s.weight}" for s, n in zip(sources, sizes)))
    model = Transformer(mcfg).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=cfg.peak_lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps)
    step, epoch, batch_pos, elapsed, tokens_seen = 0, 0, 0, 0.0, 0
    best = {"bleu": -1.0}
    history: list[dict] = []
    train_history: list[dict] = []  # loss, learning rate and gradient norm every log_every steps
    if state is not None:
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        step, epoch, batch_pos = state["step"], state["epoch"], state["batch_pos"]
        elapsed, tokens_seen, best, history = state["elapsed"], state["tokens_seen"], state["best"], state["history"]
        train_history = state.get("train_history", [])
        torch.set_rng_state(state["rng"])
    log(f"model: {model.num_parameters():,} parameters on {device}; config {mcfg.to_json()}")

    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext()
    # On CPU, the fused flash-attention kernel's backward is slow for many short sequences: measured on
    # the 2-core dev machine, one 3.8k-token step took 1.95 s with it and 1.30 s with the math kernel.
    def attention_kernel():
        return sdpa_kernel(SDPBackend.MATH) if device.type == "cpu" else nullcontext()

    def record(final_eval: dict | None = None) -> dict:
        return {
            "train_config": cfg.to_dict(),
            "command": command,
            "steps": step,
            "epochs": round(epoch + batch_pos / max(len(batches), 1), 2),
            "target_tokens_seen": tokens_seen,
            "wall_time_min": round(elapsed / 60, 1),
            "target_tokens_per_s": round(tokens_seen / max(elapsed, 1e-9)),
            "best_dev": best,
            "dev_history": history,
            "train_history": train_history,
            "hardware": hardware_description(device),
            "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"),
            **({"final_dev": final_eval} if final_eval else {}),
        }

    def save_state() -> None:
        tmp = out / "last.pt.tmp"
        torch.save({
            "train_config": cfg.to_dict(), "model": model.state_dict(), "optim": optim.state_dict(),
            "step": step, "epoch": epoch, "batch_pos": batch_pos, "elapsed": elapsed,
            "tokens_seen": tokens_seen, "best": best, "history": history, "rng": torch.get_rng_state(),
            "train_history": train_history,
        }, tmp)
        tmp.replace(state_path)

    def run_eval() -> None:
        nonlocal best
        result = evaluate_dev(model, tok, dev_pairs)
        result.update(step=step, minutes=round(elapsed / 60, 1))
        history.append(result)
        log(f"dev step {step}: BLEU {result['bleu']:.2f} chrF {result['chrf']:.2f} ({result['seconds']}s)")
        improved = result["bleu"] > best["bleu"]
        if improved:
            best = result  # before the snapshot, so its record names this evaluation as the best so far
        snap_dir = out / "snapshots"
        save_checkpoint(snap_dir / f"step{step:06d}.safetensors", model, tok, record())
        for old in sorted(snap_dir.glob("step*.safetensors"))[: -cfg.keep_snapshots]:
            old.unlink()
        if improved:
            save_checkpoint(out / "best.safetensors", model, tok, record())
            log(f"new best dev BLEU {best['bleu']:.2f} -> {out / 'best.safetensors'}")

    model.train()

    def new_epoch() -> tuple[EncodedPairs, list[list[int]]]:
        data = epoch_data(cfg, base, sizes, weights, train_pairs, tok, mcfg.eos_id, epoch)
        log(f"epoch {epoch}: {len(data.src)} pairs, {sum(map(len, data.tgt))} target tokens")
        return data, make_batches(data, cfg.max_tokens, cfg.seed + epoch)

    data, batches = new_epoch()
    last_save = last_eval = time.time()
    window_t0, window_tokens, window_loss, window_steps, window_grad = time.time(), 0, 0.0, 0, 0.0
    budget = cfg.time_budget_min * 60
    segment_start, elapsed_at_start = time.time(), elapsed

    while elapsed < budget and (cfg.max_steps == 0 or step < cfg.max_steps):
        if batch_pos >= len(batches):
            epoch, batch_pos = epoch + 1, 0
            data, batches = new_epoch()
        src, tgt_in, tgt_out = (t.to(device) for t in collate(data, batches[batch_pos], mcfg.pad_id, mcfg.bos_id))
        batch_pos += 1
        step += 1
        lr = inverse_sqrt_lr(step, cfg.peak_lr, cfg.warmup_steps)
        for group in optim.param_groups:
            group["lr"] = lr
        with autocast, attention_kernel():
            states = model.run_decoder(tgt_in, model.encode(src))[0]  # (B, T, D)
            loss = linear_cross_entropy(states, model.output_weight(), model.output_bias, tgt_out,
                                        ignore_index=mcfg.pad_id, label_smoothing=cfg.label_smoothing)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm))
        window_grad += grad_norm
        optim.step()
        loss_value = loss.item()
        n_tokens = int((tgt_out != mcfg.pad_id).sum())
        tokens_seen += n_tokens
        window_tokens += n_tokens
        window_loss += loss_value
        window_steps += 1
        elapsed = elapsed_at_start + (time.time() - segment_start)
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss became {loss_value} at step {step}; lower --peak-lr or raise --warmup-steps")
        if step % cfg.log_every == 0:
            dt = time.time() - window_t0
            train_history.append({
                "step": step, "minutes": round(elapsed / 60, 2), "loss": round(window_loss / window_steps, 4),
                "lr": lr, "grad_norm": round(window_grad / window_steps, 4), "tokens_per_s": round(window_tokens / dt),
            })
            log(f"step {step} epoch {epoch} loss {window_loss / window_steps:.3f} lr {lr:.2e} "
                f"grad norm {window_grad / window_steps:.2f} {window_tokens / dt:.0f} tgt tok/s, "
                f"{(budget - elapsed) / 60:.1f} min left")
            window_t0, window_tokens, window_loss, window_steps, window_grad = time.time(), 0, 0.0, 0, 0.0
        if step % 50 == 0:
            release_freed_memory()
        if time.time() - last_eval > cfg.eval_every_min * 60:
            run_eval()
            last_eval = time.time()
            # evaluation time is not training time: shift the segment so the budget counts training only
            segment_start += result_seconds(history)
        if time.time() - last_save > cfg.save_every_min * 60:
            save_state()
            last_save = time.time()

    run_eval()
    save_state()
    final = out / "best.safetensors"
    save_checkpoint(final, *_best_weights(final, model), record(best))
    log(f"done: {step} steps, {elapsed / 60:.1f} min, best dev BLEU {best['bleu']:.2f}")
    return final


def result_seconds(history: list[dict]) -> float:
    return float(history[-1]["seconds"]) if history else 0.0


def _best_weights(path: Path, model: Transformer) -> tuple[Transformer, Tokenizer]:
    """Reload the best weights so the final record is written next to them, not the last step's."""
    from model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    return ckpt.model, ckpt.tokenizer
