"""Bad input to ``python -m model.translate``: one line on stderr and exit 2, or a warning with aligned output.

Most cases call ``main`` in-process (fast); the byte-level ones (argv and stdin that are not UTF-8)
run the real command.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import ROOT
from model import limits
from model.translate import main

SENTENCE = "Le chat dort sur le canapé."


def cli(capsys, monkeypatch, args: list[str], stdin: bytes | None = None) -> tuple[int, list[str], list[str]]:
    """Run the CLI in-process: (exit code, stdout lines, stderr lines)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def edited_checkpoint(src, dst, **config_changes):
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["config"] = json.dumps({**json.loads(meta["config"]), **config_changes})
    save_file(tensors, str(dst), metadata=meta)
    return dst


@pytest.mark.parametrize("args, reason", [
    (["--batch-size", "0", "-"], "batch size must be between 1"),
    (["--device", "bogus", SENTENCE], "unknown device 'bogus'"),
    (["--beam", "1000000", SENTENCE], "beam size must be between 1 and 16, got 1000000"),
    (["--beam", "4", "--length-penalty", "nan", SENTENCE], "length penalty must be a finite number >= 0, got nan"),
    (["--length-penalty", "inf", SENTENCE], "got inf"),
    (["--length-penalty", "-0.5", SENTENCE], "got -0.5"),
    (["--max-len", "64", SENTENCE], "maximum length must be between 1 and 63 tokens"),  # tiny model: 64 positions
    (["--json", "out.json", "-"], "--json records one sentence"),
    (["--beam", "two", SENTENCE], "invalid int value: 'two'"),
    (["--dtype", "float8", SENTENCE], "unknown dtype 'float8'"),
    (["   "], "empty"),
])
def test_bad_settings_are_one_line_and_exit_2(capsys, monkeypatch, tiny_checkpoint, args, reason):
    code, out, err = cli(capsys, monkeypatch, ["--checkpoint", str(tiny_checkpoint), *args], b"")
    assert code == 2 and out == []
    assert len(err) == 1 and err[0].startswith("error: ") and reason in err[0]


def test_json_into_a_missing_folder_is_refused_before_translating(capsys, monkeypatch, tiny_checkpoint, tmp_path):
    target = tmp_path / "no" / "such" / "steps.json"
    code, out, err = cli(capsys, monkeypatch, ["--checkpoint", str(tiny_checkpoint), "--json", str(target), SENTENCE])
    assert (code, out) == (2, []) and len(err) == 1 and "does not exist" in err[0]
    assert not target.parent.exists()


@pytest.mark.parametrize("change, reason", [
    ({"d_ff": -4}, "d_ff must be an integer from 1 to 65536, got -4"),
    ({"max_positions": 1e9}, "max_positions must be an integer from 2 to 8192, got 1000000000.0"),
    ({"d_model": 64, "n_heads": 4}, "weights do not match the config"),
    ({"norm": 1}, "norm must be one of 'post', 'pre', got 1"),
    ({"tie_embeddings": "yes"}, "tie_embeddings must be true or false, got 'yes'"),
])
def test_bad_config_in_the_checkpoint_is_one_line(capsys, monkeypatch, tiny_checkpoint, tmp_path, change, reason):
    bad = edited_checkpoint(tiny_checkpoint, tmp_path / "bad.safetensors", **change)
    code, out, err = cli(capsys, monkeypatch, ["--checkpoint", str(bad), SENTENCE])
    assert (code, out) == (2, []) and len(err) == 1 and reason in err[0]


def test_corrupted_weights_are_one_line(capsys, monkeypatch, tiny_checkpoint, tmp_path):
    data = bytearray(tiny_checkpoint.read_bytes())
    data[-1000] ^= 0x40  # inside the last tensors: the header still parses
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    code, out, err = cli(capsys, monkeypatch, ["--checkpoint", str(bad), SENTENCE])
    assert (code, out) == (2, []) and len(err) == 1 and "flipped.safetensors: weights are corrupted" in err[0]


def test_stdin_with_invalid_utf8_keeps_every_line(capsys, monkeypatch, tiny_checkpoint):
    stdin = b"Le chat dort.\nLe \xff\xfe chat.\n\nIl fait beau.\r\nUn chien"  # no final newline
    code, out, err = cli(capsys, monkeypatch, ["--checkpoint", str(tiny_checkpoint), "--max-len", "5", "-"], stdin)
    assert code == 0 and len(out) == 5 and out[2] == ""
    assert len(err) == 1 and err[0].startswith("warning: line 2: invalid UTF-8")


def test_invalid_utf8_as_bytes_through_the_real_command(tiny_checkpoint):
    base = [sys.executable, "-m", "model.translate", "--checkpoint", str(tiny_checkpoint), "--max-len", "5"]
    arg = subprocess.run([*base, b"Le \xff chat dort."], capture_output=True, cwd=ROOT, timeout=120)
    assert arg.returncode == 0 and len(arg.stdout.splitlines()) == 1
    assert arg.stderr.decode().splitlines() == [
        "warning: the text is not valid UTF-8; 1 undecodable byte sequence(s) replaced by U+FFFD"]
    lines = subprocess.run([*base, "-"], input=b"Le chat.\n\xc3\x28 dort.\nIl fait beau.\n", capture_output=True,
                           cwd=ROOT, timeout=120)
    assert lines.returncode == 0 and len(lines.stdout.decode().split("\n")) == 4  # 3 lines + final newline
    assert lines.stderr.decode().startswith("warning: line 2: invalid UTF-8") and b"Traceback" not in lines.stderr
    # the same bytes give the same translation either way
    assert arg.stdout.decode() == subprocess.run([*base, "-"], input=b"Le \xff chat dort.\n", capture_output=True,
                                                 cwd=ROOT, timeout=120).stdout.decode()


def test_overlong_line_is_translated_in_pieces_and_matches_the_argument(capsys, monkeypatch, tiny_checkpoint):
    long = " ".join(["Le chat dort sur le canapé."] * 12)  # well over the tiny model's 63 tokens
    args = ["--checkpoint", str(tiny_checkpoint), "--max-len", "4"]
    code, out, err = cli(capsys, monkeypatch, [*args, "-"], f"Il fait beau.\n{long}\nUn chien.\n".encode())
    assert code == 0 and len(out) == 3
    assert len(err) == 1 and err[0].startswith("warning: line 2:") and "translated in 12 pieces" in err[0]
    code, single, err = cli(capsys, monkeypatch, [*args, long])
    assert code == 0 and single == [out[1]] and "translated in 12 pieces" in err[0]
    code, _, err = cli(capsys, monkeypatch, [*args, "--json", "-", long])
    assert code == 2 and len(err) == 1 and "--json records one sentence" in err[0]


def test_line_over_the_hard_cap_is_left_empty(capsys, monkeypatch, tiny_checkpoint):
    monkeypatch.setattr(limits, "MAX_LINE_CHARS", 100)
    stdin = b"Le chat.\n" + b"x" * 1000 + b"\nUn chien.\n"
    code, out, err = cli(capsys, monkeypatch, ["--checkpoint", str(tiny_checkpoint), "--max-len", "4", "-"], stdin)
    assert code == 0 and len(out) == 3 and out[1] == "" and out[0] and out[2]
    assert err == ["warning: line 2: 1000 bytes, more than the 100 characters a line may have; "
                   "left untranslated (empty output line)"]


@pytest.mark.parametrize("text", ["😀😀😀", "你好世界", "\u200b\u200b\u200b"])
def test_mostly_unknown_input_is_warned_about(capsys, monkeypatch, tiny_checkpoint, text):
    code, out, err = cli(capsys, monkeypatch, ["--checkpoint", str(tiny_checkpoint), "--max-len", "3", text])
    assert code == 0 and len(out) == 1
    assert len(err) == 1 and "100% of the characters are unknown" in err[0]
    code, out, err = cli(capsys, monkeypatch, ["--checkpoint", str(tiny_checkpoint), "--max-len", "3", "-"],
                         f"Le chat dort.\n{text}\n".encode())
    assert code == 0 and len(out) == 2 and len(err) == 1 and err[0].startswith("warning: line 2: 100%")


def test_known_input_gives_no_warning(capsys, monkeypatch, tiny_checkpoint):
    code, out, err = cli(capsys, monkeypatch, ["--checkpoint", str(tiny_checkpoint), "--max-len", "3", "Le chat 😀 dort."])
    assert (code, err) == (0, []) and len(out) == 1


def test_warnings_from_elsewhere_in_the_process_are_not_relayed(capsys, monkeypatch, tiny_checkpoint):
    """A ResourceWarning raised while loading (an event loop garbage-collected there) is not the
    checkpoint's business; the loader's own UserWarnings still are."""
    import warnings

    import model.load as loader

    real = loader.load_model

    def noisy_load(*args, **kwargs):
        warnings.warn("unclosed event loop", ResourceWarning)
        warnings.warn("weights are not verified", UserWarning)
        return real(*args, **kwargs)

    monkeypatch.setattr(loader, "load_model", noisy_load)
    code, out, err = cli(capsys, monkeypatch, ["--checkpoint", str(tiny_checkpoint), "--max-len", "3", SENTENCE])
    assert code == 0 and len(out) == 1
    assert err == ["warning: weights are not verified"]
