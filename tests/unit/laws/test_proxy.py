"""Continuous proxies: the settings, their errors, and the link from proxy to accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from planner.errors import FitError
from planner.laws.noise import SourcePoints
from planner.laws.proxy import fit_link, parse_proxy, resolve_chance, resolve_proxies

METRICS = ["arc_easy", "hellaswag", "loss_c4_val", "loss_openlm_val", "piqa"]


def test_a_glob_maps_accuracies_to_their_proxy():
    got = resolve_proxies(["*,!piqa=loss_c4_val"], METRICS)
    # the losses are lower-is-better: a proxy stands in for accuracies only
    assert got == {"arc_easy": "loss_c4_val", "hellaswag": "loss_c4_val"}
    first = resolve_proxies(["hella*=loss_openlm_val", "*=loss_c4_val"], METRICS)
    assert first["hellaswag"] == "loss_openlm_val" and first["piqa"] == "loss_c4_val"


def test_the_executors_metrics_pair_by_themselves():
    metrics = ["t/acc", "t/acc_norm", "t/prob_correct_norm", "u/acc", "loss"]
    assert resolve_proxies([], metrics) == {
        "t/acc": "t/prob_correct_norm",
        "t/acc_norm": "t/prob_correct_norm",
    }
    assert resolve_proxies([], metrics, auto=False) == {}


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("arc_easy", "is not ACC_GLOB=PROXY_METRIC"),
        ("=loss_c4_val", "is not ACC_GLOB=PROXY_METRIC"),
        ("arc_easy=loss_c4", "no metric 'loss_c4'; did you mean 'loss_c4_val'"),
        ("arc_esy=loss_c4_val", "no metric 'arc_esy'; did you mean 'arc_easy'"),
        ("piqa=piqa", "circular"),
        ("loss_openlm_val=loss_c4_val", "lower-is-better"),
        ("mmlu*=loss_c4_val", "matches no accuracy"),
    ],
)
def test_a_bad_proxy_setting_is_one_clear_error(spec, needle):
    with pytest.raises(FitError) as e:
        resolve_proxies([spec], METRICS)
    assert needle in str(e.value)


def test_proxies_that_stand_for_each_other_are_circular():
    metrics = ["a_acc", "b_acc"]
    with pytest.raises(FitError) as e:
        resolve_proxies(["a_acc=b_acc", "b_acc=a_acc"], metrics)
    assert "circular" in str(e.value) and "a_acc → b_acc → a_acc" in str(e.value)


def test_chance_levels_by_glob():
    assert resolve_chance(["arc_*=0.25", "*=0.5"], METRICS)["arc_easy"] == 0.25
    assert resolve_chance({"piqa": 0.5}, METRICS) == {"piqa": 0.5}
    for bad, needle in (("arc_*", "GLOB=LEVEL"), ("arc_*=2", "outside"), ("zz=0.1", "no metric")):
        with pytest.raises(FitError, match=needle):
            resolve_chance([bad], METRICS)
    assert parse_proxy("a,b=c").patterns == ("a", "b")


def test_the_link_recovers_a_known_sigmoid():
    """Accuracies drawn around chance + (1 - chance)·σ(a + b·loss) on 2000 items, three
    sources that share the link: the fit recovers (a, b), adds no per-source offset, and
    its bootstrap brackets the truth."""
    rng = np.random.default_rng(0)
    a, b, chance, n = 9.0, -3.0, 0.25, 2000
    proxy, target = {}, {}
    x = 2.0 ** np.arange(6)
    for s, shift in enumerate((0.0, 0.15, -0.1)):
        loss = 3.8 - 0.25 * np.log(x) + shift
        p = chance + (1 - chance) / (1 + np.exp(-(a + b * loss)))
        acc = rng.binomial(n, p) / n
        var = acc * (1 - acc) / n
        proxy[f"s{s}"] = SourcePoints(x, loss, np.full(x.size, np.nan), np.ones(x.size))
        target[f"s{s}"] = SourcePoints(x, acc, var, np.ones(x.size))
    link = fit_link(proxy, target, floor=chance, n_boot=200)
    assert not link.offsets
    assert link.theta[0] == pytest.approx(a, rel=0.15)
    assert link.theta[1] == pytest.approx(b, rel=0.15)
    lo, hi = np.quantile(link.boot[:, 1], [0.02, 0.98])
    assert lo < b < hi


def test_the_link_takes_an_offset_where_a_source_sits_apart():
    """One source's accuracy sits well above the shared link at every loss: held-out
    points show it, and the link gives that source its own offset."""
    rng = np.random.default_rng(1)
    x = 2.0 ** np.arange(6)
    proxy, target = {}, {}
    for s, offset in enumerate((0.0, 0.0, 1.0)):
        loss = 3.8 - 0.25 * np.log(x) + 0.05 * s
        p = 0.25 + 0.75 / (1 + np.exp(-(9.0 + offset - 3.0 * loss)))
        acc = rng.binomial(5000, p) / 5000
        proxy[f"s{s}"] = SourcePoints(x, loss, np.full(x.size, np.nan), np.ones(x.size))
        target[f"s{s}"] = SourcePoints(x, acc, acc * (1 - acc) / 5000, np.ones(x.size))
    link = fit_link(proxy, target, floor=0.25)
    assert link.offsets
    assert link.theta[3] == pytest.approx(1.0, abs=0.3)
