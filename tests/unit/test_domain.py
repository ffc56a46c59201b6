from __future__ import annotations

import dataclasses

import pytest

from planner.domain import AnnealSpec, Run, lower_is_better, stable_id


@pytest.mark.parametrize(
    ("metric", "lower"),
    [
        ("loss_c4_val", True),
        ("val_ppl", True),
        ("Perplexity", True),
        ("bpb", True),
        ("error_rate", True),
        ("acc", False),
        ("hellaswag_zeroshot", False),
    ],
)
def test_direction_from_name(metric, lower):
    assert lower_is_better(metric) is lower


def test_direction_override_wins():
    assert lower_is_better("acc", {"acc": True}) is True
    assert lower_is_better("loss", {"loss": False}) is False


def test_stable_id_is_deterministic_and_distinct():
    assert stable_id("job", "a", 1) == stable_id("job", "a", 1)
    assert stable_id("job", "a", 1) != stable_id("job", "a", 2)


def test_domain_types_are_frozen():
    r = Run(run_id="r", source="s", compute=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.compute = 2.0  # type: ignore[misc]
    assert AnnealSpec("j", "e", None, 1e6).is_control
