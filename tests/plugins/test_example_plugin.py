"""The third-party example (examples/plugin-example): installed, listed and usable."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "plugin-example"
ANNEALPLAN = Path(sys.executable).with_name("annealplan")


def _installed() -> bool:
    try:
        dist = importlib.metadata.distribution("annealplan-wordlist")
    except importlib.metadata.PackageNotFoundError:
        return False
    return any(ep.group == "annealplan" for ep in dist.entry_points)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> None:
    if not _installed():
        # Built from a copy, so the build leaves nothing in the repository's folder.
        source = tmp_path_factory.mktemp("plugin-example") / "src"
        shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
        # A regular install without build isolation: seconds, no network. Not editable: an
        # editable install's import hook is set up only when an interpreter starts, so this
        # test session (which the rest of the suite shares) would see the plugin's entry
        # point but could not import it, and every later CLI call would report a problem.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                str(source),
            ],
            check=True,
            timeout=300,
        )
        importlib.invalidate_caches()


def annealplan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANNEALPLAN_")}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [str(ANNEALPLAN), "--project", str(tmp_path), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


def test_example_plugin_is_listed_and_usable(installed, tmp_path, tiny_tokenizer_path):
    listed = annealplan(tmp_path, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    plugin = next(p for p in data["plugins"] if p["name"] == "wordlist")
    assert plugin["version"] == "0.2.0" and not plugin["builtin"]
    assert plugin["hooks"] == ["register_source_kinds"]
    assert plugin["provides"] == ["source_kind:wordlist"]
    assert data["problems"] == []

    words = EXAMPLE / "words.txt"
    added = annealplan(
        tmp_path,
        "sources",
        "add",
        "wordlist",
        "--name",
        "words",
        "--set",
        f"path={words}",
        "--set",
        "documents=50",
        "--tokenizer",
        str(tiny_tokenizer_path),
        "--json",
    )
    assert added.returncode == 0, added.stderr
    src = json.loads(added.stdout)
    assert src["plugin"] == "wordlist" and src["plugin_version"] == "0.2.0"
    out = annealplan(
        tmp_path,
        "sources",
        "materialize",
        "words",
        "--tokens",
        "700",
        "--dest",
        str(tmp_path / "words"),
        "--tokenizer",
        str(tiny_tokenizer_path),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["tokens"] == 700
    manifest = json.loads((tmp_path / "words" / "manifest.json").read_text())
    assert manifest["kind"] == "wordlist" and manifest["tokens"] == 700

    narrowed = annealplan(tmp_path, "plugins", "--json")
    env_off = {"ANNEALPLAN_LOAD_PLUGINS": ""}
    off = subprocess.run(
        [str(ANNEALPLAN), "--project", str(tmp_path), "plugins", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **env_off},
        timeout=300,
    )
    assert narrowed.returncode == off.returncode == 0
    assert "wordlist" not in {p["name"] for p in json.loads(off.stdout)["plugins"]}
