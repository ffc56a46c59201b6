"""Pure parts of the executor: path allow-listing, spec validation, the journal's fencing
and idempotency, and the continuous metrics computed from lm-eval's logged samples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from executors.evaluate import continuous_metrics, flatten_results
from executors.journal import Journal, QueueFull, SpecConflict
from executors.paths import PathRefused, check_spec_paths, resolve_under
from executors.protocol import AnnealJobSpec, JobState, Progress, check_relative_path


def _spec(job_id: str = "j-1", **over) -> AnnealJobSpec:
    raw = {
        "job_id": job_id,
        "base_model": "model",
        "source": {"kind": "files", "config": {"paths": ["data/a.jsonl"]}, "tokens": 1000},
        "replay": {"source": {"kind": "files", "config": {"paths": ["data/b.jsonl"]}}},
        **over,
    }
    return AnnealJobSpec.model_validate(raw)


@pytest.mark.parametrize(
    "bad",
    ["/etc/passwd", "../x", "a/../../x", "a\x00b", "~/x", "-rf", "a\\b", "%2e%2e/x", "", "./"],
)
def test_relative_paths_refuse_escapes(bad: str):
    with pytest.raises(ValueError):
        check_relative_path(bad)


def test_symlink_out_of_the_root_and_the_state_folder_are_refused(tmp_path: Path):
    root = tmp_path / "root"
    (root / "model").mkdir(parents=True)
    (root / "data").mkdir()
    outside = tmp_path / "secret"
    outside.mkdir()
    os.symlink(outside, root / "escape")
    assert resolve_under(root, "model", field="base_model") == root / "model"
    with pytest.raises(PathRefused, match="outside"):
        resolve_under(root, "escape", field="base_model")
    with pytest.raises(PathRefused, match="state"):
        check_spec_paths(_spec(base_model="model"), root, deny=(root / "data",))
    with pytest.raises(PathRefused) as e:
        check_spec_paths(
            _spec(source={"kind": "files", "config": {"paths": ["escape/x"]}, "tokens": 1}), root
        )
    assert e.value.field == "source.config.paths.0"


def test_spec_validation_mixture_and_owned_ds_keys():
    spec = _spec()
    assert spec.replay_tokens() == round(1000 * 0.7 / 0.3)
    with pytest.raises(ValidationError, match="control"):
        _spec(source=None)
    with pytest.raises(ValidationError, match="ds_config_extra"):
        _spec(training={"ds_config_extra": {"optimizer": {}}})
    with pytest.raises(ValidationError):
        _spec(job_id="bad id; rm -rf /")
    with pytest.raises(ValidationError):
        _spec(surprise=1)  # unknown fields are errors


def test_journal_is_idempotent_fenced_and_bounded(tmp_path: Path):
    journal = Journal(tmp_path / "j.sqlite3")
    rec, created = journal.submit(_spec(), max_queue=2)
    assert created and rec.state is JobState.QUEUED
    assert journal.submit(_spec(), max_queue=2)[1] is False
    with pytest.raises(SpecConflict):
        journal.submit(_spec(base_model="other"), max_queue=2)
    journal.submit(_spec("j-2"), max_queue=2)
    with pytest.raises(QueueFull):
        journal.submit(_spec("j-3"), max_queue=2)
    old = journal.claim("j-1")
    assert old and journal.heartbeat("j-1", old, Progress(step=3, total_steps=10))
    # A restart requeues the job; the old attempt's writes now change nothing.
    assert journal.requeue("j-1", cause="daemon restarted", crashed=False)
    new = journal.claim("j-1")
    assert not journal.heartbeat("j-1", old, Progress(step=1))
    assert not journal.finish("j-1", JobState.SUCCEEDED, token=old)
    assert journal.record("j-1").progress.step == 3
    assert journal.finish("j-1", JobState.FAILED, token=new)
    assert not journal.finish("j-1", JobState.SUCCEEDED, token=new)  # final once
    assert journal.record("j-1").attempts == 2
    # Reopened (a restart): the journal kept everything.
    journal.close()
    again = Journal(tmp_path / "j.sqlite3")
    assert again.record("j-1").state is JobState.FAILED
    assert again.request_cancel("j-2").state is JobState.CANCELLED


def test_continuous_metrics_from_logged_samples():
    doc = {
        "target": 1,
        "arguments": [["q", " ab"], ["q", " cdef"]],
        "filtered_resps": [[-4.0, False], [-2.0, True]],
    }
    out = continuous_metrics({"t": [doc, {**doc, "target": 0}]})
    assert out["t/logprob_correct"] == pytest.approx(-3.0)
    per_byte = ((-2.0 / 5) + (-4.0 / 3)) / 2
    assert out["t/logprob_correct_per_byte"] == pytest.approx(per_byte)
    assert 0 < out["t/prob_correct_norm"] < 1
    flat = flatten_results({"t": {"alias": "t", "acc,none": 0.5, "acc_stderr,none": "N/A"}})
    assert flat == {"t/acc": 0.5}


def _part(name: str, tokens: int = 100) -> dict:
    return {"name": name, "kind": "files", "config": {"paths": [f"data/{name}"]}, "tokens": tokens}


def test_a_mixture_replaces_the_source_and_says_what_to_send():
    spec = _spec(source=None, mixture=[_part("a", 300), _part("b", 100)])
    assert (spec.source_tokens(), spec.replay_tokens()) == (400, round(400 * 0.7 / 0.3))
    with pytest.raises(ValidationError, match="give the domain data once"):
        _spec(mixture=[_part("a"), _part("b")])
    with pytest.raises(ValidationError, match="send a single source as `source`"):
        _spec(source=None, mixture=[_part("a")])
    with pytest.raises(ValidationError, match="twice"):
        _spec(source=None, mixture=[_part("a"), _part("a")])
    with pytest.raises(ValidationError, match="at most 64"):
        _spec(source=None, mixture=[_part(f"s{i}") for i in range(65)])
    with pytest.raises(ValidationError):
        _spec(source=None, mixture=[_part("a", 0), _part("b")])  # tokens > 0


def test_a_spec_without_a_mixture_is_sent_and_hashed_as_before():
    spec = _spec()
    assert "mixture" not in spec.model_dump(mode="json")
    assert "mixture" not in spec.model_dump_json()
    # the hash this job had before mixtures existed: a journaled job is no conflict
    assert spec.spec_hash() == "f81e77a60c6d903ae3a5dad16f3aca4b5be88d6a3a70401035886b6d2de5dc08"
    assert AnnealJobSpec.model_validate_json(spec.model_dump_json()) == spec
    mixed = _spec(source=None, mixture=[_part("a"), _part("b")])
    assert mixed.model_dump(mode="json")["mixture"][1]["name"] == "b"
    assert AnnealJobSpec.model_validate_json(mixed.model_dump_json()) == mixed
    assert mixed.spec_hash() != _spec(source=None, mixture=[_part("a"), _part("c")]).spec_hash()
