"""The executor and job verbs against a real daemon on loopback (no job runs to the end)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from click.testing import CliRunner

from planner.cli import cli
from plugins.backends.local.launcher import LocalExecutor


def _spec(job_id: str) -> dict:
    return {
        "job_id": job_id,
        "base_model": "model",
        # A model folder without a tokenizer: the job fails fast in its worker, cleanly.
        "source": {"kind": "files", "config": {"paths": ["data/a.jsonl"]}, "tokens": 64},
    }


def _cli(project: Path, *args: str):
    result = CliRunner().invoke(cli, ["--project", str(project), *args], catch_exceptions=False)
    return result


def test_executor_and_job_verbs(tmp_path: Path):
    project = tmp_path / "project"
    (project / "model").mkdir(parents=True)
    (project / "data").mkdir()
    (project / "data" / "a.jsonl").write_text('{"text": "a"}\n')
    with LocalExecutor(project) as ex:
        r = _cli(project, "executors", "add", "box", "--url", ex.url, "--token-file",
                 str(ex.token_file), "--json")  # fmt: skip
        assert r.exit_code == 0, r.output
        listed = json.loads(_cli(project, "executors", "list", "--json").output)
        assert [e["name"] for e in listed] == ["box"]
        health = json.loads(_cli(project, "executors", "health", "--json").output)
        assert health == [{"name": "box", "ok": True, "protocol": "1", "error": None}]

        with httpx.Client(
            base_url=ex.url, headers={"Authorization": f"Bearer {ex.token}"}, timeout=30
        ) as http:
            assert http.post("/v1/jobs", json=_spec("cli-job")).status_code == 201
        jobs = json.loads(_cli(project, "jobs", "list", "--json").output)
        assert [j["job_id"] for j in jobs] == ["cli-job"]
        shown = json.loads(_cli(project, "jobs", "show", "cli-job", "--json").output)
        assert shown["job_id"] == "cli-job"
        cancelled = json.loads(_cli(project, "jobs", "cancel", "cli-job", "--json").output)
        assert cancelled["job_id"] == "cli-job"
        assert _cli(project, "jobs", "logs", "cli-job").exit_code == 0

        bad = CliRunner().invoke(cli, ["--project", str(project), "jobs", "show", "nope"])
        assert bad.exit_code == 2 and "nope" in bad.output
