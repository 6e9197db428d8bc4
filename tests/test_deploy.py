"""Publishing (scripts/deploy_space.py, Dockerfile): the Space's upload list is built and checked offline."""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts import deploy_space
from scripts.deploy_space import DeployError, build_upload_list, check, main, problems

ROOT = Path(__file__).resolve().parent.parent
GRADIO = importlib.metadata.version("gradio")


def front_matter(readme: bytes) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", readme.decode(), re.S)
    assert match, "the Space README must open with YAML front matter"
    return yaml.safe_load(match.group(1))


def by_path(entries) -> dict:
    return {e.path_in_repo: e for e in entries}


def test_upload_list_holds_the_app_and_its_checkpoints_through_lfs_and_nothing_else():
    entries = by_path(build_upload_list(ROOT))
    assert {"app.py", "requirements.txt", "README.md", ".gitattributes", "ui/static/regard.js"} <= set(entries)
    shipped = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "checkpoints").glob("*.safetensors"))
    assert shipped and all(entries[c].lfs and entries[c].binary for c in shipped)
    assert all(entries[c].size > deploy_space.MAX_REGULAR_BYTES for c in shipped)  # why LFS is needed at all
    assert not [p for p in entries if p.split("/")[0] in {"tests", "data", "runs", "benchmarks", "training", ".git",
                                                          ".ci", "scripts", "docs", "shared"}]
    assert not [p for p in entries if "__pycache__" in p or p.endswith((".pyc", ".log", ".tmp"))]
    assert problems(list(entries.values())) == []
    assert all(e.size <= deploy_space.MAX_LFS_BYTES for e in entries.values())


def test_space_readme_front_matter_names_app_py_and_the_installed_gradio():
    entries = by_path(build_upload_list(ROOT))
    meta = front_matter(entries["README.md"].source)
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["sdk_version"] == GRADIO
    assert str(meta["python_version"]) == "{}.{}".format(*sys.version_info[:2])
    assert len(meta["short_description"]) <= 60  # the Hub's limit for that field
    assert "checkpoints/regard-fr-en-preln.md" in entries["README.md"].source.decode()
    rules = entries[".gitattributes"].source.decode().splitlines()
    assert "*.safetensors filter=lfs diff=lfs merge=lfs -text" in rules and any(r.startswith("*.spm ") for r in rules)
    requirements = entries["requirements.txt"].source.decode()
    assert requirements.endswith((ROOT / "requirements.txt").read_text())
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements.splitlines()


def test_without_lfs_rules_the_checkpoints_are_refused():
    # A push of the repository as it was (no .gitattributes): the Hub refuses the 19.6 MB weights.
    entries = build_upload_list(ROOT, attributes="")
    found = problems(entries)
    assert found and all("checkpoints/" in p and "10 MB" in p for p in found)
    with pytest.raises(DeployError, match=r"^checkpoints/regard-fr-en-\w+\.safetensors: .* 10 MB .*\(and 1 more\)$"):
        check(entries)


def small_tree(root: Path) -> Path:
    """A minimal publishable tree: entry point, requirements, one package, one 'checkpoint'."""
    (root / "model").mkdir(parents=True)
    (root / "checkpoints").mkdir()
    (root / "ui" / "static").mkdir(parents=True)
    (root / "app.py").write_text("print('hello')\n")
    (root / "requirements.txt").write_text("torch==2.13.0\n")
    (root / "model" / "__init__.py").write_text("")
    (root / "checkpoints" / "m.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (root / "tests").mkdir()
    (root / "tests" / "test_x.py").write_text("")
    (root / "data").mkdir()
    (root / "data" / "train.tsv").write_text("a\tb\n")
    return root


def test_dry_run_lists_every_file_with_size_and_lfs(tmp_path, capsys):
    root = small_tree(tmp_path / "tree")
    assert main(["--dry-run", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[-1] if "(generated)" not in line else line.split()[-2]: line for line in out.splitlines()}
    assert re.match(r"^\s+16 B\s+LFS\s+checkpoints/m\.safetensors$", lines["checkpoints/m.safetensors"])
    assert re.match(r"^\s+15 B\s+git\s+app\.py$", lines["app.py"])
    assert {"README.md", ".gitattributes", "requirements.txt", "model/__init__.py"} <= set(lines)
    assert "tests/test_x.py" not in out and "data/" not in out
    assert out.strip().endswith("nothing uploaded")


@pytest.mark.parametrize("name, content, reason", [
    ("ui/static/font.ttf", b"\x00\x01\x00\x00 glyphs", "a binary file that no LFS rule in .gitattributes covers"),
    ("ui/static/big.js", b"x" * (10 * 1000 * 1000 + 1), "10,000,001 bytes, over the Hub's 10 MB limit"),
], ids=["binary-outside-lfs", "text-over-10MB"])
def test_dry_run_refuses_a_file_the_hub_would_reject(tmp_path, capsys, name, content, reason):
    root = small_tree(tmp_path / "tree")
    (root / name).write_bytes(content)
    assert main(["--dry-run", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {name}: {reason}") and err.count("\n") == 1


def test_dry_run_refuses_a_tree_without_a_checkpoint_or_an_app(tmp_path, capsys):
    root = small_tree(tmp_path / "tree")
    (root / "checkpoints" / "m.safetensors").unlink()
    assert main(["--dry-run", "--root", str(root)]) == 2
    assert "no *.safetensors checkpoint" in capsys.readouterr().err
    (root / "app.py").unlink()
    assert main(["--dry-run", "--root", str(root)]) == 2
    assert re.match(r"^error: \S+app\.py: not found", capsys.readouterr().err)


def test_a_real_upload_needs_a_space_name(capsys):
    assert main([]) == 2 and main(["no-slash"]) == 2
    assert capsys.readouterr().err.count("error: give the Space as USER/NAME") == 2


class FakeApi:
    """Stands in for ``huggingface_hub.HfApi``: records what would be sent."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))
        return f"https://huggingface.co/spaces/{repo_id}"

    def create_commit(self, repo_id, operations, **kw):
        self.calls.append(("create_commit", repo_id, [op.path_in_repo for op in operations], kw))


def test_upload_creates_a_gradio_space_and_commits_exactly_the_list_lfs_rules_first(tmp_path):
    root = small_tree(tmp_path / "tree")
    entries = build_upload_list(root)
    api = FakeApi()
    url = deploy_space.upload(entries, "someone/regard", api=api)
    assert url == "https://huggingface.co/spaces/someone/regard"
    (_, repo, kw), first, second = api.calls
    assert repo == "someone/regard"
    assert kw["repo_type"] == "space" and kw["space_sdk"] == "gradio" and kw["exist_ok"] is True
    assert first[2] == [".gitattributes", "README.md"] and first[3]["repo_type"] == "space"
    assert sorted(first[2] + second[2]) == sorted(e.path_in_repo for e in entries)
    (root / "ui" / "static" / "font.ttf").write_bytes(b"\x00")
    refused = FakeApi()
    with pytest.raises(DeployError, match="font.ttf"):
        deploy_space.upload(build_upload_list(root), "someone/regard", api=refused)
    assert refused.calls == []  # a refused list never reaches the Hub


def test_app_starts_from_the_uploaded_files_alone(tmp_path):
    """Copy exactly the upload list into an empty folder: the app imports, loads both checkpoints and
    builds its page there (what the Space runs before it listens)."""
    space = tmp_path / "space"
    for e in build_upload_list(ROOT):
        dst = space / e.path_in_repo
        dst.parent.mkdir(parents=True, exist_ok=True)
        if e.generated:
            dst.write_bytes(e.source)
        else:
            shutil.copyfile(e.source, dst)
    code = ("import app, model; from ui.context import load_context; from ui.layout import build_demo; "
            "paths = app.default_checkpoints(); build_demo(load_context(paths, device='cpu')); "
            "print(model.__file__); print(*paths, sep='\\n')")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REGARD_CHECKPOINT")}
    done = subprocess.run([sys.executable, "-c", code], cwd=space, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    package, *paths = done.stdout.split()
    assert Path(package).parent == space / "model"  # imported from the copy, not from this checkout
    assert len(paths) == 2 and all(Path(p).parent == space / "checkpoints" for p in paths)


# --- the Dockerfile, checked statically (no docker engine here) ---------------------------------------
def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    rows = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(r.split(None, 1)[0].upper(), r.split(None, 1)[1]) for r in rows]


def test_dockerfile_runs_the_cpu_app_as_uid_1000_on_port_7860():
    steps = dockerfile()
    kinds = [k for k, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert any(k == "RUN" and re.search(r"useradd .*--uid 1000 user", a) for k, a in steps)
    user_at = kinds.index("USER")
    assert steps[user_at][1] == "user" and "RUN" not in kinds[user_at:]  # nothing runs as root after it
    assert ("EXPOSE", "7860") in steps
    cmd = json.loads(steps[-1][1])
    assert kinds[-1] == "CMD" and cmd == ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
    torch_pin = re.search(r"^torch==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    installs = " ".join(a for k, a in steps if k == "RUN")
    assert f"pip install torch=={torch_pin} --index-url https://download.pytorch.org/whl/cpu" in installs
    assert installs.index("whl/cpu") < installs.index("-r requirements.txt")  # CPU wheel first, then the rest


def test_dockerfile_copies_what_the_space_uploads_and_dockerignore_keeps_the_rest_out():
    copied = [a.split()[-2] for k, a in dockerfile() if k == "COPY"]  # "--chown=user SRC DST"
    assert all((ROOT / src).exists() for src in copied)
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", "tests", "data", "runs", "benchmarks", "**/__pycache__"} <= ignored
    assert not set(copied) & ignored
    uploaded = [e.path_in_repo for e in build_upload_list(ROOT, docker=True) if not e.generated]
    assert "Dockerfile" in uploaded and ".dockerignore" in uploaded
    outside = [p for p in uploaded if p not in ("Dockerfile", ".dockerignore")
               and not any(p == src or p.startswith(src.rstrip("/") + "/") for src in copied)]
    assert outside == []  # every app file the Space receives is copied into the image


def test_docker_space_readme_routes_to_port_7860():
    entries = by_path(build_upload_list(ROOT, docker=True))
    meta = front_matter(entries["README.md"].source)
    assert meta["sdk"] == "docker" and meta["app_port"] == 7860 and "app_file" not in meta
    assert entries["requirements.txt"].source == ROOT / "requirements.txt"  # the image installs the CPU wheel itself
