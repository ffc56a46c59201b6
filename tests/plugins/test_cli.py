"""``annealplan sources …`` and ``annealplan plugins`` through the real CLI and store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import cli


@pytest.fixture
def run(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ANNEALPLAN_LOAD_PLUGINS", "")  # built-ins only: no installed extras
    monkeypatch.delenv("ANNEALPLAN_DB", raising=False)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0):
        result = runner.invoke(
            cli, ["--project", str(tmp_path), "--db", str(tmp_path / "p.duckdb"), *args]
        )
        assert result.exit_code == code, (result.output, result.stderr, result.exception)
        return result

    return invoke


def test_add_list_show_cost_remove(run, pool, tiny_tokenizer_path):
    added = run(
        "sources",
        "add",
        "licensed",
        "--name",
        "journals",
        "--set",
        f"paths={pool / 'a.jsonl'}",
        "--set",
        f"paths={pool / 'b.jsonl'}",
        "--set",
        "usd_per_token=2e-6",
        "--set",
        "fixed_fee_usd=$30k",
        "--set",
        "max_tokens=2B",
        "--tokenizer",
        str(tiny_tokenizer_path),
        "--json",
    )
    src = json.loads(added.stdout)
    assert src["cost"] == {
        "model": "linear",
        "params": {"per_token": 2e-6, "fixed": 30000.0, "unit": "usd"},
        "unit": "usd",
    }
    assert src["plugin"] == "plugins.sources.licensed" and src["plugin_version"]
    assert 0 < src["cap_tokens"] < 2e9  # the files hold less than the licence allows
    run(
        "sources",
        "add",
        "files",
        "--name",
        "web",
        "--set",
        f"paths={pool / '*.jsonl'}",
        "--cost-model",
        "linear",
        "--cost",
        "per_token=1",
        "--cost",
        "unit=gpu_hours",
    )
    listed = json.loads(run("sources", "list", "--json").stdout)
    assert [s["name"] for s in listed] == ["journals", "web"]
    shown = json.loads(run("sources", "show", "journals", "--json").stdout)
    assert "per_token·n + fixed" in shown["cost_formula"]
    cost = json.loads(run("sources", "cost", "journals", "--tokens", "2B", "--json").stdout)
    assert cost["cost"] == pytest.approx(30000 + 2e9 * 2e-6) and cost["unit"] == "usd"
    assert cost["marginal_cost_per_token"] == pytest.approx(2e-6) and cost["exceeds_cap"]
    text = run("sources", "cost", "journals", "--tokens", "1M").stdout
    assert "formula: per_token·n + fixed" in text and "$30" in text
    in_usd = json.loads(
        run("sources", "cost", "web", "--tokens", "10", "--unit", "usd", "--json").stdout
    )
    assert in_usd["cost"] == pytest.approx(10 * 2.5)  # 10 GPU-hours at the default $2.50
    run("sources", "remove", "web")
    assert [s["name"] for s in json.loads(run("sources", "list", "--json").stdout)] == ["journals"]


def test_materialize_from_the_store(run, pool, tiny_tokenizer_path, tmp_path):
    run("sources", "add", "files", "--name", "web", "--set", f"paths={pool / '*.jsonl'}")
    out = json.loads(
        run(
            "sources",
            "materialize",
            "web",
            "--tokens",
            "1k",
            "--dest",
            str(tmp_path / "m"),
            "--tokenizer",
            str(tiny_tokenizer_path),
            "--seed",
            "3",
            "--json",
        ).stdout
    )
    assert out["tokens"] == 1000 and (tmp_path / "m" / "manifest.json").exists()


def test_bad_input_is_one_clear_line(run, pool, tmp_path):
    r = run("sources", "add", "filez", "--name", "x", code=2)
    assert "unknown source kind 'filez'; did you mean 'files'" in r.stderr
    r = run("sources", "add", "files", "--name", "x", "--set", "path=a.jsonl", code=2)
    assert (
        "paths: Field required" in r.stderr and "path: Extra inputs are not permitted" in r.stderr
    )
    r = run(
        "sources",
        "add",
        "files",
        "--name",
        "x",
        "--set",
        f"paths={tmp_path / 'none.jsonl'}",
        code=2,
    )
    assert "no file matches" in r.stderr
    r = run("sources", "add", "files", "--name", "x", "--set", "oops", code=2)
    assert "write key=value" in r.stderr
    r = run(
        "sources",
        "add",
        "files",
        "--name",
        "x",
        "--set",
        f"paths={pool / 'a.jsonl'}",
        "--cost-model",
        "liner",
        code=2,
    )
    assert "did you mean 'linear'" in r.stderr
    r = run("sources", "show", "nothing", code=2)
    assert "no source named 'nothing'" in r.stderr
    assert r.stderr.count("\n") == 1


def test_plugins_lists_builtins(run):
    data = json.loads(run("plugins", "--json").stdout)
    names = {p["name"]: p for p in data["plugins"]}
    assert names["plugins.sources.synthetic"]["hooks"] == ["register_source_kinds"]
    assert names["plugins.sources.synthetic"]["provides"] == ["source_kind:synthetic"]
    assert data["problems"] == []
    assert "plugins.costs.linear" in run("plugins").stdout


def test_paths_are_stored_absolute(run, pool, monkeypatch):
    monkeypatch.chdir(pool)
    src = json.loads(
        run("sources", "add", "files", "--name", "rel", "--set", "paths=*.jsonl", "--json").stdout
    )
    assert src["config"]["paths"] == [str(pool / "*.jsonl")]
