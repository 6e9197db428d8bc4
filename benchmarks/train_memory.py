"""Training memory of the shipped checkpoints: the analytic estimate next to what torch holds after one step.

    python benchmarks/train_memory.py          # the measuring batch (the recorded one cut to 1,024 tokens a side)
    python benchmarks/train_memory.py --full   # also the whole recorded batch (128 rows: ~0.7 GB, a few seconds)

For each checkpoint and each loss (the trainer's fused ``model.loss.linear_cross_entropy`` and
``F.cross_entropy`` over the logits, what the app can run), prints C = 6·P·D, the estimate and torch's bytes
of gradients, Adam moments and saved activations, their ratio, and the step's time.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.load import load_model  # noqa: E402
from model.explain.arithmetic import measure_training_step, measured_batch, recorded_batch, training_compute  # noqa: E402
from model.memory import human_bytes  # noqa: E402

KEYS = ("gradients", "adam_exp_avg", "adam_exp_avg_sq", "activations", "total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", help="default: every checkpoints/*.safetensors")
    parser.add_argument("--full", action="store_true", help="also measure the whole recorded batch")
    args = parser.parse_args()
    paths = args.checkpoint or sorted(str(p) for p in (ROOT / "checkpoints").glob("*.safetensors"))
    for path in paths:
        ckpt = load_model(path)
        model, record = ckpt.model, ckpt.training
        run = training_compute(model, record)["training"]
        print(f"\n{Path(path).name}: P = {model.num_parameters():,}")
        if run["recorded"]:
            print(f"  C = {run['formula']} = {run['flops']:.3e} FLOPs ({run['pf_days']:.3e} PF-days), "
                  f"{run['wall_time_min']} min -> {run['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s")
        shapes = [measured_batch(model, record)[0]]
        if args.full:
            b = recorded_batch(model.config, record)
            shapes.append((b["rows"], b["src_len"], b["tgt_len"]))
        for shape in shapes:
            for loss in ("fused", "logits"):
                r = measure_training_step(model, record, shape, loss=loss)
                print(f"  {shape} {loss:6s} step {r['step_ms']:7.0f} ms")
                for key in KEYS:
                    print(f"    {key:16s} estimate {human_bytes(r['estimate'][key]):>10s}  torch "
                          f"{human_bytes(r['measured'][key]):>10s}  ratio {r['ratio'][key]:.6f}")


if __name__ == "__main__":
    main()
