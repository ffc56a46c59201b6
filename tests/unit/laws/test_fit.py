"""Law families and robust fitting: recovery, failures as data, bad input, coverage."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

from planner.errors import FitError
from planner.laws.families import compiled, get_family, law_function
from planner.laws.fit import fit_law, fit_many
from planner.laws.predict import predict, predict_boot, predict_interval

X = np.logspace(18, 21, 8)


def test_power_parameters_recovered_from_noisy_data():
    rng = np.random.default_rng(3)
    y = 2.0 + 5.0 * (X / X.max()) ** -0.3 + rng.normal(0, 0.01, X.size)
    fit = fit_law("power", X, y, lower_is_better=True)
    assert fit.success, fit.message
    assert fit.params["E"] == pytest.approx(2.0, abs=0.1)
    assert fit.params["A"] == pytest.approx(5.0, rel=0.05)
    assert fit.params["alpha"] == pytest.approx(0.3, abs=0.03)
    assert fit.covariance is not None


def test_perplexity_law_recovered_and_positive_only():
    """exp(E + A·x^-α): a perplexity whose loss follows a power law (multiplicative noise)."""
    rng = np.random.default_rng(5)
    loss = 2.0 + 1.5 * (X / X.max()) ** -0.3
    ppl = np.exp(loss + rng.normal(0, 0.005, X.size))
    fit = fit_law("exppower", X, ppl, lower_is_better=True, n_boot=400)
    assert fit.success, fit.message
    assert fit.params["E"] == pytest.approx(2.0, abs=0.1)
    assert fit.params["A"] == pytest.approx(1.5, rel=0.05)
    assert fit.params["alpha"] == pytest.approx(0.3, abs=0.03)
    _, low, high = predict_interval(fit, [X.max() * 10])
    assert low[0] < np.exp(2.0 + 1.5 * 10**-0.3) < high[0]  # a decade beyond the data
    negative = fit_law("exppower", X, np.r_[-1.0, np.ones(X.size - 1)], lower_is_better=True)
    assert not negative.success and "positive" in negative.message


def test_higher_is_better_power_and_loglinear_and_logistic():
    rng = np.random.default_rng(4)
    xs = X / X.max()
    up = 0.8 - 0.3 * xs**-0.25 + rng.normal(0, 0.002, X.size)
    fit = fit_law("power", X, up, lower_is_better=False)
    assert fit.success and fit.params["A"] < 0
    assert fit.params["alpha"] == pytest.approx(0.25, abs=0.03)
    ll = fit_law("loglinear", X, 0.3 + 0.05 * np.log(xs) + rng.normal(0, 0.001, X.size))
    assert ll.params["b"] == pytest.approx(0.05, abs=0.005)
    x_wide = np.logspace(15, 21, 12)
    lx = np.log(x_wide / x_wide.max())
    acc = 0.25 + 0.5 / (1 + np.exp(-1.5 * (lx + 6))) + rng.normal(0, 0.003, lx.size)
    lg = fit_law("logistic", x_wide, acc)
    assert lg.success
    assert lg.params["floor"] == pytest.approx(0.25, abs=0.03)
    assert lg.params["ceil"] == pytest.approx(0.75, abs=0.03)


def test_expr_with_params_gives_original_units():
    """The contract with the allocator: family.expr at x = compute/x_ref gives the metric."""
    rng = np.random.default_rng(5)
    y = 3.0 + 2.0 * (X / X.max()) ** -0.2 + rng.normal(0, 0.01, X.size)
    fit = fit_law("power", X, y, lower_is_better=True)
    expr, xs, params = law_function(get_family("power"))
    subs = {p: fit.params[p.name] for p in params}
    value = float(expr.subs(subs).subs(xs, sympy.Float(X[3] / fit.x_ref)))
    assert value == pytest.approx(float(predict(fit, [X[3]])[0]), rel=1e-9)
    assert value == pytest.approx(y[3], abs=0.05)


def test_two_variable_form():
    rng = np.random.default_rng(6)
    N = np.repeat([1e7, 3e7, 1e8, 3e8], 3)
    D = np.tile([1e9, 4e9, 1.6e10], 4)
    n, d = N / N.max(), D / D.max()
    y = 1.8 + 0.5 / n**0.3 + 0.4 / d**0.25 + rng.normal(0, 0.002, N.size)
    fit = fit_law("chinchilla", np.vstack([N, D]), y, lower_is_better=True)
    assert fit.success, fit.message
    assert fit.params["alpha"] == pytest.approx(0.3, abs=0.05)
    assert fit.params["beta"] == pytest.approx(0.25, abs=0.05)


@pytest.mark.parametrize(
    ("x", "y", "why"),
    [
        (X, np.full(X.size, 0.25), "flat"),
        (X[:2], np.array([3.0, 2.5]), "too few"),
    ],
)
def test_degenerate_fits_are_data(x, y, why):
    fit = fit_law("power", x, y, lower_is_better=True)
    assert not fit.success
    assert why in fit.message


@pytest.mark.parametrize(
    ("family", "x", "y", "match"),
    [
        ("power", X, np.ones(3), "same length"),
        ("power", [], [], "No points"),
        ("power", X, np.r_[np.nan, np.ones(7)], "finite"),
        ("power", -X, np.ones(8), "positive"),
        ("powr", X, np.ones(8), "did you mean 'power'"),
        ("power", ["a"] * 8, np.ones(8), "numbers"),
        ("chinchilla", X, np.ones(8), "input rows"),
    ],
)
def test_bad_input_raises_clear_errors(family, x, y, match):
    with pytest.raises(FitError, match=match):
        fit_law(family, x, y)


def test_failed_fit_cannot_predict_and_no_boot_cannot_sample():
    bad = fit_law("power", X, np.full(X.size, 1.0))
    with pytest.raises(FitError, match="failed"):
        predict(bad, [1e22])
    good = fit_law("loglinear", X, np.log(X))
    with pytest.raises(FitError, match="bootstrap"):
        predict_boot(good, [1e22])
    _, low, high = predict_interval(good, [1e22])
    assert np.isnan(low).all() and np.isnan(high).all()


def test_bootstrap_interval_brackets_prediction():
    rng = np.random.default_rng(7)
    y = 2.0 + 5.0 * (X / X.max()) ** -0.3 + rng.normal(0, 0.02, X.size)
    fit = fit_law("power", X, y, lower_is_better=True, n_boot=300, seed=1)
    assert fit.boot.shape == (300, 3)
    point, low, high = predict_interval(fit, [X.max() * 2, X.max() * 10])
    assert np.all(low < point) and np.all(point < high)
    assert (high - low)[1] > (high - low)[0]  # wider further out
    cases = fit_law("power", X, y, lower_is_better=True, n_boot=100, scheme="cases")
    assert cases.boot.shape == (100, 3)
    with pytest.raises(FitError, match="scheme"):
        fit_law("power", X, y, lower_is_better=True, n_boot=10, scheme="jackknife")


def test_interval_coverage_on_200_synthetic_trials():
    """A nominal 90% prediction interval covers 85–95% of new observations."""
    rng = np.random.default_rng(2024)
    trials, sd = 200, 0.05
    x = np.logspace(0, 3, 8)

    def truth(c):
        return 1.5 + 2.0 * (c / 1e3) ** -0.4

    Y = truth(x) + rng.normal(0, sd, (trials, x.size))
    theta, _, boot, boot_sd = fit_many("power", x, Y, lower_is_better=True, n_boot=400, seed=1)
    assert np.median(theta[:, 2]) == pytest.approx(0.4, abs=0.05)
    fam = compiled(get_family("power"))
    x_new = 2.0  # twice the largest fitted compute, in scaled units
    draws = fam.value([np.array(x_new)], [boot[..., j] for j in range(3)])
    draws = draws + boot_sd * rng.standard_normal(boot_sd.shape)
    low, high = np.quantile(draws, [0.05, 0.95], axis=1)
    new = truth(2e3) + rng.normal(0, sd, trials)
    coverage = float(np.mean((low <= new) & (new <= high)))
    assert 0.85 <= coverage <= 0.95, coverage


def test_fits_hold_blas_to_one_thread_unless_told(monkeypatch):
    """BLAS threads on a fit's small matrices oversubscribe busy cores (bench/blas_threads.py):
    the solver and the bootstrap hold BLAS to ANNEALPLAN_BLAS_THREADS (default 1) while
    they run, and give the library its own count back afterwards."""
    from scipy import optimize
    from threadpoolctl import threadpool_info

    import planner.laws.blas as blas_module
    import planner.laws.lm as lm_module
    from planner.errors import ConfigError

    def blas_threads():
        return {
            i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"
        }

    seen = []
    real = optimize.least_squares

    def watching(*args, **kwargs):  # the solver's polish: what BLAS allows while it runs
        seen.append(blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(lm_module.optimize, "least_squares", watching)
    y = 2.0 + 5.0 * (X / X.max()) ** -0.3
    for env, want in (("1", 1), ("3", 3)):
        monkeypatch.setenv("ANNEALPLAN_BLAS_THREADS", env)
        blas_module.blas_limit.cache_clear()
        before = blas_threads()
        seen.clear()
        assert fit_law("power", X, y, lower_is_better=True, n_boot=20).success
        assert seen and all(set(s.values()) == {want} for s in seen)
        assert blas_threads() == before  # given back
    monkeypatch.setenv("ANNEALPLAN_BLAS_THREADS", "0")  # the library's own count
    blas_module.blas_limit.cache_clear()
    seen.clear()
    fit_law("power", X, y, lower_is_better=True, n_boot=20)
    assert seen == [blas_threads()]
    monkeypatch.setenv("ANNEALPLAN_BLAS_THREADS", "many")
    blas_module.blas_limit.cache_clear()
    with pytest.raises(ConfigError, match="whole number"):
        fit_law("power", X, y, lower_is_better=True)
    from planner.backtest import run_backtest
    from planner.domain import Observation

    blas_module.blas_limit.cache_clear()
    # two computes per source: past the setting, this table has nothing to backtest
    # (FitError), so the ConfigError shows the setting is checked first, before any worker
    table = [Observation("s", "acc", src, float(x), 0.5) for src in "ab" for x in X[:2]]
    with pytest.raises(ConfigError, match="ANNEALPLAN_BLAS_THREADS"):
        run_backtest(table, fraction=0.5, jobs=2)
    monkeypatch.delenv("ANNEALPLAN_BLAS_THREADS")
    blas_module.blas_limit.cache_clear()
    with pytest.raises(FitError, match="Nothing to backtest"):
        run_backtest(table, fraction=0.5, jobs=2)
    blas_module.blas_limit.cache_clear()  # the next test reads the environment afresh
