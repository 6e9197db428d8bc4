"""Every command-line program answers a bad invocation with one ``error:`` line and exit code 2,
before any work: evaluate.py, train.py, training.export / record / sanity / name_copy, the model card.

The programs run in-process (fast); argparse's own usage errors arrive as ``SystemExit(2)``.
"""
from __future__ import annotations

import pytest

import evaluate
import train
from model import cli
from scripts import model_card
from training import export as training_export
from training import name_copy, record, sanity


def call(capsys, main, args: list[str]) -> tuple[int, list[str], list[str]]:
    """(exit code, stdout lines, stderr lines) of ``main(args)``."""
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def one_error(code: int, err: list[str], *needles: str) -> None:
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    for needle in needles:
        assert needle in err[0], err


@pytest.fixture
def pairs(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("le chat dort.\tthe cat sleeps.\nil fait beau.\tit is nice.\n", encoding="utf-8")
    return path


@pytest.fixture
def no_translation(monkeypatch):
    """Fail the test if a program translates anything: its refusal must come before the work."""
    def refuse(*args, **kwargs):
        raise AssertionError("translated although the invocation was refusable up front")
    monkeypatch.setattr(evaluate, "translate_batch", refuse)


@pytest.mark.parametrize("args, needle", [
    (["--beam", "0"], "beam size"),
    (["--limit", "-1"], "--limit: must be at least 0"),
    (["--length-penalty", "-inf"], "finite"),
    (["--length-penalty", "nan", "--beam", "2"], "finite"),
    (["--batch-size", "0"], "batch size"),
    (["--hyps", "/proc/regard-nowhere"], "--hyps"),
    (["--hyps", "/nonexistent-folder/hyps.txt"], "does not exist"),
    (["--device", "bogus"], "unknown device"),
    (["--bogus-flag"], "unrecognized arguments"),
])
def test_evaluate_refuses_before_translating(capsys, tiny_checkpoint, pairs, no_translation, args, needle):
    code, _, err = call(capsys, evaluate.main, ["--checkpoint", str(tiny_checkpoint), "--data", str(pairs), *args])
    one_error(code, err, needle)


def test_evaluate_hyps_into_a_folder_is_refused(capsys, tiny_checkpoint, pairs, no_translation, tmp_path):
    code, _, err = call(capsys, evaluate.main, ["--checkpoint", str(tiny_checkpoint), "--data", str(pairs),
                                                "--hyps", str(tmp_path)])
    one_error(code, err, "is a folder")


@pytest.mark.parametrize("data, needle", [("/nonexistent.tsv", "no such file"), ("/dev/zero", "not a regular file")])
def test_evaluate_data_must_be_a_readable_file(capsys, tiny_checkpoint, no_translation, data, needle):
    code, _, err = call(capsys, evaluate.main, ["--checkpoint", str(tiny_checkpoint), "--data", data])
    one_error(code, err, needle)


def test_usage_errors_are_one_line(capsys):
    code, _, err = call(capsys, evaluate.main, [])
    one_error(code, err, "--data")


@pytest.mark.parametrize("program", ["evaluate", "record", "sanity", "model_card"])
def test_a_checkpoint_that_is_not_a_file_is_named_as_such(capsys, pairs, program):
    main, args = {"evaluate": (evaluate.main, ["--checkpoint", "/dev/zero", "--data", str(pairs)]),
                  "record": (record.main, ["/dev/zero"]),
                  "sanity": (sanity.main, ["--checkpoint", "/dev/zero"]),
                  "model_card": (model_card.main, ["/dev/zero"])}[program]
    code, _, err = call(capsys, main, args)
    one_error(code, err, "/dev/zero", "not a regular file")


def test_a_missing_checkpoint_is_not_found(capsys):
    code, _, err = call(capsys, record.main, ["/nonexistent/x.safetensors"])
    one_error(code, err, "not found")


def test_train_refuses_a_missing_data_file_and_makes_nothing(capsys, tmp_path):
    out = tmp_path / "run"
    code, _, err = call(capsys, train.main, ["--train-path", "/nonexistent.tsv", "--out-dir", str(out)])
    one_error(code, err, "--train-path /nonexistent.tsv", "no such file")
    assert not out.exists()


def test_train_refuses_a_run_folder_under_a_file(capsys, tmp_path, pairs):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = call(capsys, train.main, ["--train-path", str(pairs), "--dev-path", str(pairs),
                                             "--out-dir", str(blocker / "run")])
    one_error(code, err, "is a file, not a folder")


def test_train_refuses_an_unknown_device(capsys, tmp_path, pairs):
    code, _, err = call(capsys, train.main, ["--train-path", str(pairs), "--dev-path", str(pairs),
                                             "--out-dir", str(tmp_path / "run"), "--device", "bogus"])
    one_error(code, err, "unknown device 'bogus'", "use auto, cpu")


def test_train_refuses_a_bad_weight_and_a_bad_flag(capsys, tmp_path, pairs):
    code, _, err = call(capsys, train.main, ["--train-path", f"{pairs}:-1", "--out-dir", str(tmp_path / "r")])
    one_error(code, err)
    code, _, err = call(capsys, train.main, ["--max-steps", "many"])
    one_error(code, err, "--max-steps")


def test_training_export_refuses_before_averaging(capsys, tmp_path):
    code, _, err = call(capsys, training_export.main, [str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.safetensors")])
    one_error(code, err, "no such run folder")
    code, _, err = call(capsys, training_export.main, [str(tmp_path), "--out", str(tmp_path), "--average-last", "2"])
    one_error(code, err, "is a folder")
    code, _, err = call(capsys, training_export.main, [str(tmp_path), "--out", "x", "--average-last", "0"])
    one_error(code, err, "at least 1")
    code, _, err = call(capsys, training_export.main, [str(tmp_path), "--out", "x", "--average-last", "1",
                                                       "--average-best-of", "2"])
    one_error(code, err, "not both")


def test_name_copy_counts_must_be_positive(capsys):
    code, _, err = call(capsys, name_copy.main, ["--n", "0"])
    one_error(code, err, "--n")


def test_negative_numbers_are_values_not_flags():
    p = cli.Parser()
    p.add_argument("--x", type=float)
    assert p.parse_args(["--x", "-inf"]).x == float("-inf")
    assert p.parse_args(["--x", "-1e-3"]).x == -1e-3
    assert p.parse_args(["--x", "-.5"]).x == -0.5


def test_check_writable_leaves_no_file_and_keeps_an_existing_one(tmp_path):
    new = tmp_path / "new.txt"
    cli.check_writable(new, "--out")
    assert not new.exists()
    old = tmp_path / "old.txt"
    old.write_text("kept")
    cli.check_writable(old, "--out")
    assert old.read_text() == "kept"


def test_model_export_refuses_an_unwritable_folder_before_loading(capsys, monkeypatch, tmp_path):
    from model import export

    def refuse(*args, **kwargs):
        raise AssertionError("loaded a checkpoint although the output folder cannot be written")
    monkeypatch.setattr(export, "load_checkpoint", refuse)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = call(capsys, export.main, ["--to", "hf", str(blocker / "out")])
    one_error(code, err, "is a file, not a folder")
    code, _, err = call(capsys, export.main, ["--to", "ct2", "/proc/regard-nowhere/out"])
    one_error(code, err, "cannot write")


@pytest.mark.parametrize("args, needle", [
    ([], "required"),
    (["--to", "onnx", "d"], "invalid choice"),
    (["--to", "hf", "d", "--quantization", "int8"], "ct2 only"),
])
def test_model_export_usage_errors_are_one_line(capsys, args, needle):
    from model import export

    code, _, err = call(capsys, export.main, args)
    one_error(code, err, needle)
