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


VERSION = "0.3.0"


def _installed() -> bool:
    try:
        dist = importlib.metadata.distribution("annealplan-wordlist")
    except importlib.metadata.PackageNotFoundError:
        return False
    return dist.version == VERSION and any(ep.group == "annealplan" for ep in dist.entry_points)


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
    assert plugin["version"] == VERSION and not plugin["builtin"]
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
    assert src["plugin"] == "wordlist" and src["plugin_version"] == VERSION
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


def test_example_backend_runs_jobs_through_the_contract(installed, tmp_path, tiny_tokenizer_path):
    """The example's ``background`` backend: listed, added with its own settings, and a
    job through it (one that fails in its first stage, fast) reads as on any executor."""
    listed = json.loads(annealplan(tmp_path, "plugins", "--json").stdout)
    plugin = next(p for p in listed["plugins"] if p["name"] == "background")
    assert plugin["hooks"] == ["register_executor_backends"]
    assert plugin["provides"] == ["executor_backend:background"]
    missing = annealplan(
        tmp_path, "executors", "add", "bg", "--backend", "background", "--root", "nowhere"
    )
    assert missing.returncode == 2 and "root nowhere is not a folder" in missing.stderr
    root = tmp_path / "root"
    shutil.copytree(tiny_tokenizer_path, root / "model")
    added = annealplan(
        tmp_path, "executors", "add", "bg", "--backend", "background", "--root", str(root)
    )
    assert added.returncode == 0, added.stderr

    import asyncio

    from executors.protocol import AnnealJobSpec, JobState
    from planner.dispatch.registry import open_clients
    from plugins.manager import load_registry

    spec = AnnealJobSpec.model_validate(
        {
            "job_id": "bg-job",
            "base_model": "model",
            # a kind no plugin provides: the job fails in its first stage, cleanly
            "source": {"kind": "nonexistent", "config": {}, "tokens": 64},
        }
    )

    async def run():
        async with open_clients(tmp_path, load_registry()) as clients:
            [client] = clients
            assert client.backend == "background"
            first = await client.submit(spec)
            assert (await client.submit(spec)).job_id == first.job_id  # idempotent
            for _ in range(600):
                record = await client.job(spec.job_id)
                if record.state.final:
                    return record
                await asyncio.sleep(0.2)
            raise AssertionError(f"the job did not end: {record}")

    record = asyncio.run(run())
    assert record.state is JobState.FAILED and record.error.code == "unknown_source_kind"
    jobs = json.loads(annealplan(tmp_path, "jobs", "list", "--json").stdout)
    assert [(j["job_id"], j["backend"], j["state"]) for j in jobs] == [
        ("bg-job", "background", "failed")
    ]
    log = annealplan(tmp_path, "jobs", "logs", "bg-job")
    assert "job failed: unknown_source_kind" in log.stdout
