"""``python -m model.translate``: one sentence, standard input line by line, JSON records, clear errors."""
from __future__ import annotations

import json
import subprocess
import sys

from model.trace_json import check_trace_json
from conftest import ROOT


def run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model.translate", *args], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_translates_one_sentence_and_dumps_steps(tiny_checkpoint, tmp_path):
    out = tmp_path / "steps.json"
    res = run(["--checkpoint", str(tiny_checkpoint), "--max-len", "5", "--json", str(out), "Le chat dort."])
    assert res.returncode == 0, res.stderr
    record = json.loads(out.read_text())
    assert res.stdout.strip() == record["translation"]
    assert record["source_pieces"][-1] == "</s>"
    assert 1 <= len(record["steps"]) <= 5
    step = record["steps"][0]
    assert {"piece", "prob", "top_k", "latency_ms", "kv_self_bytes"} <= set(step)
    # the one trace format (model.trace_json), with readable float arrays
    check_trace_json(record)
    n_steps, n_src = len(record["steps"]), len(record["source_pieces"])
    cross = record["attention"]["cross"]
    assert (cross["dtype"], cross["scale"]) == ("float32", 1.0) and isinstance(cross["data"], list)
    assert list(cross["shape"])[2:] == [n_steps, n_src]


def test_stdin_gives_one_line_per_line_in_order(tiny_checkpoint):
    lines = ["Le chat dort.", "", "Un chien mange une pomme.", "Il fait beau."]
    res = run(["--checkpoint", str(tiny_checkpoint), "--max-len", "6", "--beam", "2", "-"], "\n".join(lines) + "\n")
    assert res.returncode == 0, res.stderr
    out = res.stdout.split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines)
    assert out[1] == ""
    single = run(["--checkpoint", str(tiny_checkpoint), "--max-len", "6", "--beam", "2", "Il fait beau."])
    assert out[3] == single.stdout.strip()


def test_errors_are_messages_not_tracebacks(tiny_checkpoint, tmp_path):
    res = run(["--checkpoint", str(tmp_path / "none.safetensors"), "Bonjour."])
    assert res.returncode == 2 and "none.safetensors: checkpoint file not found" in res.stderr
    assert "Traceback" not in res.stderr
    res = run(["--checkpoint", str(tiny_checkpoint), "   "])
    assert res.returncode == 2 and "empty" in res.stderr and "Traceback" not in res.stderr
