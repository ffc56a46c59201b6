"""P(a beats b) from a group's joint bootstrap, with the uncertainty of which law is right."""

from __future__ import annotations

import numpy as np
import pytest

from planner.errors import FitError
from planner.laws.decision import PairBelief, member_draws, pair_beliefs, value_draws
from planner.laws.joint import GroupData, fit_joint

X = 1e18 * 2.0 ** np.arange(6)


def _fits(gap: float, seed: int = 0, n_boot: int = 200):
    rng = np.random.default_rng(seed)
    s = X / X[0]
    data = {
        "web": (X, 2.0 + 1.0 * s**-0.3 + 0.01 * rng.standard_normal(X.size)),
        "books": (X, 2.0 + (1.0 + gap) * s**-0.3 + 0.01 * rng.standard_normal(X.size)),
    }
    return fit_joint(GroupData("s", "loss", True, data), n_boot=n_boot).fits


def test_draws_split_among_the_averaged_laws_by_their_weights():
    fits = _fits(0.3)
    n, members = member_draws(fits)
    assert n == 200
    assert sum(m.rows.size for m in members) == n  # every draw uses exactly one law
    for m in members:
        assert m.rows.size == pytest.approx(m.weight * n, abs=1)
        assert set(m.fits) == {"web", "books"}
    # replicate i of both sources is one joint refit: the draws keep their correlation
    vd = value_draws(fits, [X[-1] * 4])
    corr = np.corrcoef(vd.draws[:, 0, 0], vd.draws[:, 1, 0])[0, 1]
    assert corr > 0.5


def test_a_clear_gap_is_decided_and_a_tie_is_not():
    """Books is 0.3 worse on a loss (lower is better) at every compute: web beats books
    with P near 1; two sources on the same law are undecided."""
    [clear] = pair_beliefs(_fits(0.3), X[-1] * 4)
    assert (clear.a, clear.b) == ("web", "books") or (clear.a, clear.b) == ("books", "web")
    assert clear.leader == "web" and clear.p_leader > 0.95
    assert "web beats books" in clear.describe("4e21")
    [tie] = pair_beliefs(
        _fits(0.0, seed=2), X[-1] * 4, measurement_var={"web": 1e-4, "books": 1e-4}
    )
    assert tie.undecided
    assert tie.describe("4e21").endswith("(undecided: measure more)")


def test_pair_belief_words():
    b = PairBelief("a", "b", 1.0, 0.29, -0.1)
    assert b.leader == "b" and b.p_leader == pytest.approx(0.71)
    assert b.describe("$40k") == "b beats a at $40k with P = 0.71"


def test_fits_of_two_groups_are_refused():
    fits = list(_fits(0.3, n_boot=20))
    other = fit_joint(
        GroupData("t", "loss", True, {"x": (X, 2 + (X / X[0]) ** -0.3), "y": (X, 2.1 + 0 * X)}),
        n_boot=20,
    ).fits
    with pytest.raises(FitError, match="one study and metric"):
        member_draws([fits[0], other[0]])
