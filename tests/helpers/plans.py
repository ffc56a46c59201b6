"""A plan with every part of its story filled in (both predictions, the KKT certificate,
the confirmation anneal, the trust region), built by hand for the faces' tests."""

from __future__ import annotations

from planner.domain import (
    BestSingle,
    CertificateEntry,
    Combination,
    Confirmation,
    Plan,
    PointEstimate,
    SourceAllocation,
)
from planner.units import Unit


def story_plan(measured_gain: float | None = None, *, trust_multiple: float | None = 10.0) -> Plan:
    """$60 on an accuracy: web interior, synthetic held at its trust limit, textbook left
    at zero; the confirmation anneal measured ``measured_gain`` (None: not run yet)."""
    return Plan(
        budget=60.0,
        unit=Unit.USD,
        metric="demo_domain_mc/acc",
        allocations=(
            SourceAllocation("web", 4.0e6, 20.0, 0.031, 0.02, 0.04, 0.9),
            SourceAllocation("synthetic", 1.2e6, 40.0, 0.052, 0.041, 0.063, 0.95, capped=True),
            SourceAllocation("textbook", 0.0, 0.0, 0.0, 0.0, 0.0, 0.1),
        ),
        gain=0.071,
        gain_low=0.058,
        gain_high=0.083,
        marginal_utility=0.000412,
        certificate=(
            CertificateEntry("web", "interior", 0.000412, 4.0e6),
            CertificateEntry("synthetic", "capped", 0.000733, 1.2e6, "trust"),
            CertificateEntry("textbook", "zero", 0.000151, 0.0),
        ),
        combination=Combination("coverage", 0.38, 0.4, 0.1, 0.9, 2),
        additive_gain=0.083,
        additive_low=0.069,
        additive_high=0.097,
        trust_multiple=trust_multiple,
        trust_limited=("synthetic",) if trust_multiple else (),
        confirmation=Confirmation(
            "web@0.77+synthetic@0.23",
            52_000.0,
            {"web": 40_000.0, "synthetic": 12_000.0},
            0.012,
            predicted_low=0.008,
            predicted_high=0.016,
            additive_gain=0.014,
            additive_low=0.010,
            additive_high=0.018,
            measured_gain=measured_gain,
            run_id=None if measured_gain is None else "mix-1",
        ),
        point_estimate=PointEstimate(3.0, "web", {"web": 0.01}, 0.04, 0.031, True, 0.02, 0.04),
        best_single=BestSingle(
            "synthetic", 1.2e6, 0.052, {"web": 0.04, "synthetic": 0.052, "textbook": 0.03}
        ),
        notes=("confirm the chosen mix with one anneal before spending the budget",),
    )
