"""Continuous proxies: predict an accuracy through a smoother metric that moves with it.

An accuracy at small compute is a step function of the model near chance: it barely moves
and its noise is large. A continuous metric of the same runs — a validation loss, the
correct answer's log-probability, the probability of the gold choice — moves smoothly
with compute. The two-step prediction (``--proxy 'ACC_GLOB=PROXY_METRIC'``):

1. the proxy is extrapolated per source to the target (the averaged joint laws of the
   proxy's own group, with their joint bootstrap);
2. a link maps proxy to accuracy: a sigmoid whose floor is the task's chance level,
   acc = c + (1 − c)·σ(a + b·proxy), fitted on every source's fit points of the group
   (each weighed by its noise). A per-source offset (a_s) is added only where it lowers the
   error of held-out points (each source's largest fit compute, predicted from the rest) by
   more than those points' own noise.

Both steps are bootstrapped (the proxy's joint replicates; the link refitted on data
redrawn from its fitted curve and noise), and each replicate pairs one of each, so the
prediction's spread holds both. The result is one candidate of the table
(:mod:`planner.laws.table`), weighed like the others by the table's nested backtest.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from planner.domain import lower_is_better
from planner.errors import FitError, did_you_mean
from planner.laws.noise import SourcePoints

if TYPE_CHECKING:
    from planner.laws.pairwise import Gaussian
    from planner.laws.table import GroupInput

#: the executor's continuous metric of a task paired with its accuracies automatically:
#: ``task/acc`` and ``task/acc_norm`` with ``task/prob_correct_norm`` (the gold choice's
#: probability, normalised over the choices)
AUTO_PAIRS = (("acc", "prob_correct_norm"), ("acc_norm", "prob_correct_norm"))
#: Gauss–Newton iterations of the link's fits
LINK_ITERATIONS = 60


@dataclass(frozen=True, slots=True)
class ProxySpec:
    """One ``--proxy`` setting: metrics matching ``patterns`` stand in for by ``proxy``.

    Attributes:
        patterns: shell-style globs of the metrics it applies to; ``!glob`` excludes.
        proxy: the proxy metric's name.
        text: the setting as written.
    """

    patterns: tuple[str, ...]
    proxy: str
    text: str

    def matches(self, metric: str) -> bool:
        inc = [p for p in self.patterns if not p.startswith("!")]
        exc = [p[1:] for p in self.patterns if p.startswith("!")]
        return any(fnmatch.fnmatchcase(metric, p) for p in inc) and not any(
            fnmatch.fnmatchcase(metric, p) for p in exc
        )

    @property
    def exact(self) -> str | None:
        """The single metric named, when the spec names one without wildcards."""
        if len(self.patterns) == 1 and not any(c in self.patterns[0] for c in "*?[!"):
            return self.patterns[0]
        return None


def parse_proxy(text: str) -> ProxySpec:
    """``'hellaswag*,!*_zeroshot=loss_c4_val'`` → a :class:`ProxySpec`.

    Raises:
        FitError: not of the form ``ACC_GLOB=PROXY_METRIC``.
    """
    glob, sep, proxy = text.partition("=")
    patterns = tuple(p.strip() for p in glob.split(",") if p.strip())
    proxy = proxy.strip()
    if not sep or not patterns or not proxy or "=" in proxy:
        raise FitError(
            f"--proxy {text!r} is not ACC_GLOB=PROXY_METRIC: name the accuracies (a glob, "
            "e.g. 'arc_*' or '*,!loss_*') and the continuous metric that stands in for them "
            "(e.g. 'arc_*=loss_c4_val')."
        )
    return ProxySpec(patterns, proxy, text)


def resolve_proxies(
    specs: Iterable[str | ProxySpec],
    metrics: Sequence[str],
    *,
    overrides: Mapping[str, bool] | None = None,
    auto: bool = True,
) -> dict[str, str]:
    """Each accuracy's proxy metric, from the settings and the executor's own pairs.

    A spec applies to the higher-is-better metrics its globs match other than its proxy;
    the first spec that matches a metric wins. Without a spec, ``task/acc`` and
    ``task/acc_norm`` get ``task/prob_correct_norm`` when the runs have it (``auto``).

    Args:
        specs: ``--proxy`` settings (text or parsed), in order.
        metrics: the metrics the runs have.
        overrides: metric → lower-is-better, winning over the name rule.
        auto: pair the executor's metrics automatically.

    Returns:
        metric → proxy metric.

    Raises:
        FitError: one clear error for a bad spec: not ACC=PROXY, a proxy the runs do not
            have, a named metric that is lower-is-better or absent, a glob that matches no
            accuracy, or proxies that stand in for each other (circular).
    """
    known = sorted(set(metrics))
    parsed = [s if isinstance(s, ProxySpec) else parse_proxy(s) for s in specs]
    out: dict[str, str] = {}
    for spec in parsed:
        if spec.proxy not in known:
            raise FitError(
                f"--proxy {spec.text!r}: the runs have no metric {spec.proxy!r}"
                f"{did_you_mean(spec.proxy, known)}; name a metric of the runs as the proxy."
            )
        exact = spec.exact
        if exact is not None and exact not in known:
            raise FitError(
                f"--proxy {spec.text!r}: the runs have no metric {exact!r}"
                f"{did_you_mean(exact, known)}."
            )
        if exact is not None and exact == spec.proxy:
            raise FitError(
                f"--proxy {spec.text!r} is circular: a metric cannot stand in for itself."
            )
        if exact is not None and lower_is_better(exact, overrides):
            raise FitError(
                f"--proxy {spec.text!r}: {exact!r} is lower-is-better; a proxy stands in for "
                "an accuracy (a higher-is-better share of items)."
            )
        hits = [
            m
            for m in known
            if spec.matches(m) and m != spec.proxy and not lower_is_better(m, overrides)
        ]
        if not hits:
            raise FitError(
                f"--proxy {spec.text!r} matches no accuracy of the runs (higher-is-better "
                f"metrics other than the proxy); they have: {', '.join(known[:20])}."
            )
        for m in hits:
            out.setdefault(m, spec.proxy)
    for m, p in out.items():
        if p in out:
            chain = [m, p]
            while chain[-1] in out and out[chain[-1]] not in chain:
                chain.append(out[chain[-1]])
            chain.append(out[chain[-1]])
            raise FitError(
                "--proxy settings are circular: "
                + " → ".join(chain)
                + "; a proxy must be a metric that has no proxy itself."
            )
    if auto:
        have = set(known)
        for m in known:
            if m in out or "/" not in m:
                continue
            task, _, name = m.rpartition("/")
            for acc, cont in AUTO_PAIRS:
                if name == acc and f"{task}/{cont}" in have:
                    out[m] = f"{task}/{cont}"
    return out


def resolve_chance(settings: Mapping[str, float] | Iterable[str], metrics: Sequence[str]):
    """Chance levels per metric from ``GLOB=LEVEL`` settings (the first match wins).

    Args:
        settings: ``{"glob": level}`` (the project file) or ``["glob=level", ...]`` (flags).
        metrics: the metrics the runs have.

    Raises:
        FitError: a setting that is not GLOB=LEVEL, a level outside [0, 1], or a glob that
            matches no metric.
    """
    pairs: list[tuple[str, str]] = []
    if isinstance(settings, Mapping):
        pairs = [(str(k), str(v)) for k, v in settings.items()]
    else:
        for text in settings:
            glob, sep, level = text.partition("=")
            if not sep:
                raise FitError(f"--chance {text!r} is not METRIC_GLOB=LEVEL (e.g. 'arc_*=0.25').")
            pairs.append((glob.strip(), level.strip()))
    out: dict[str, float] = {}
    for glob, level in pairs:
        try:
            value = float(level)
        except ValueError:
            raise FitError(f"chance level {level!r} for {glob!r} is not a number.") from None
        if not 0.0 <= value <= 1.0:
            raise FitError(f"chance level {value} for {glob!r} is outside [0, 1].")
        hits = [m for m in metrics if fnmatch.fnmatchcase(m, glob)]
        if not hits:
            raise FitError(
                f"chance level for {glob!r} matches no metric of the runs"
                f"{did_you_mean(glob, metrics)}."
            )
        for m in hits:
            out.setdefault(m, value)
    return out


# ---------------------------------------------------------------------------- the link


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass(frozen=True)
class Link:
    """acc = floor + (1 − floor)·σ(a + offset_s + b·proxy), fitted on a group's points.

    Attributes:
        floor: the chance level (0 when not known).
        theta: the fitted (a, b, offsets of sources 2..S when ``offsets``).
        sources: the sources, in the order offsets refer to.
        offsets: whether each source has its own offset.
        boot: bootstrap replicates of theta, shape (B, P).
    """

    floor: float
    theta: np.ndarray
    sources: tuple[str, ...]
    offsets: bool
    boot: np.ndarray

    def value(self, proxy: np.ndarray, source: int, theta: np.ndarray | None = None):
        """The accuracy at proxy values (broadcast over replicates when theta is (B, P))."""
        th = self.theta if theta is None else theta
        a, b = th[..., 0], th[..., 1]
        if self.offsets and source > 0:
            a = a + th[..., 1 + source]
        return self.floor + (1.0 - self.floor) * _sigmoid(a + b * proxy)


def _design(z: np.ndarray, src: np.ndarray, S: int, offsets: bool) -> np.ndarray:
    cols = [np.ones_like(z), z]
    if offsets:
        for s in range(1, S):
            cols.append((src == s).astype(float))
    return np.stack(cols, axis=-1)


def _gauss_newton(
    z: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    src: np.ndarray,
    S: int,
    floor: float,
    offsets: bool,
    theta0: np.ndarray,
) -> np.ndarray:
    """Weighted least squares of the link, many data replicates at once.

    Args:
        y: (B, n) replicates of the accuracies; theta0: (B, P) starts.
    """
    X = _design(z, src, S, offsets)  # (n, P)
    theta = theta0.copy()
    P = X.shape[1]
    ridge = 1e-8 * np.eye(P)
    for _ in range(LINK_ITERATIONS):
        eta = theta @ X.T  # (B, n)
        s = _sigmoid(eta)
        f = floor + (1.0 - floor) * s
        g = (1.0 - floor) * s * (1.0 - s)  # d f / d eta
        J = g[..., None] * X[None]  # (B, n, P)
        r = y - f
        JtW = J.transpose(0, 2, 1) * w[None, None, :]
        A = JtW @ J + ridge
        step = np.linalg.solve(A, (JtW @ r[..., None]))[..., 0]
        # damped: a sigmoid's tail is flat, and a full step can jump off it
        step = np.clip(step, -2.0, 2.0)
        theta = theta + step
        if np.max(np.abs(step)) < 1e-9:
            break
    return theta


def _start(z: np.ndarray, y: np.ndarray, floor: float, P: int) -> np.ndarray:
    """A start from a line in the logit of the points above the floor."""
    q = np.clip((y - floor) / max(1.0 - floor, 1e-9), 1e-3, 1 - 1e-3)
    logit = np.log(q / (1 - q))
    b, a = np.polyfit(z, logit, 1) if np.ptp(z) > 0 else (0.0, float(np.mean(logit)))
    out = np.zeros(P)
    out[0], out[1] = a, b
    return out


def fit_link(
    proxy: Mapping[str, SourcePoints],
    target: Mapping[str, SourcePoints],
    *,
    floor: float,
    n_boot: int = 0,
    offsets: bool | None = None,
    seed: int = 0,
) -> Link | None:
    """Fit the link on the points where a source has both metrics at one compute.

    Args:
        proxy, target: per source, the proxy's and the accuracy's fit points.
        floor: the chance level.
        n_boot: bootstrap replicates (parametric: data redrawn around the fitted link).
        offsets: force per-source offsets on or off; None chooses by held-out error.
        seed: the bootstrap's seed.

    Returns:
        The link, or None with fewer points than parameters plus one.
    """
    sources = tuple(s for s in target if s in proxy)
    zs, ys, vs, src, last = [], [], [], [], []
    for i, s in enumerate(sources):
        common, ia, ib = np.intersect1d(proxy[s].x, target[s].x, return_indices=True)
        zs.append(proxy[s].y[ia])
        ys.append(target[s].y[ib])
        vs.append(target[s].var[ib])
        src.append(np.full(common.size, i))
        last.append(np.arange(common.size) == common.size - 1)
    if not zs:
        return None
    z, y, v, sidx, held = map(np.concatenate, (zs, ys, vs, src, last))
    S = len(sources)
    if y.size < 3:
        return None
    known = np.isfinite(v) & (v > 0)
    w = np.where(known, 1.0 / np.where(known, v, 1.0), 1.0) if known.all() else np.ones_like(y)
    w = w / w.mean()

    def fit(mask: np.ndarray, with_offsets: bool, Y: np.ndarray | None = None) -> np.ndarray:
        P = 2 + (S - 1 if with_offsets else 0)
        start = _start(z[mask], y[mask], floor, P)
        Yr = y[mask][None] if Y is None else Y[:, mask]
        th0 = np.broadcast_to(start, (Yr.shape[0], P)).copy()
        return _gauss_newton(z[mask], Yr, w[mask], sidx[mask], S, floor, with_offsets, th0)

    def held_error(with_offsets: bool) -> float:
        keep = ~held
        P = 2 + (S - 1 if with_offsets else 0)
        if keep.sum() <= P or held.sum() == 0:
            return math.inf
        th = fit(keep, with_offsets)[0]
        link = Link(floor, th, sources, with_offsets, np.empty((0, P)))
        pred = np.array([link.value(z[i], int(sidx[i])) for i in np.flatnonzero(held)])
        return float(np.sum(w[held] * (pred - y[held]) ** 2))

    use = offsets
    if use is None:
        # the offsets must explain more of the held-out points than their own noise does
        # (with a handful of held-out points, any extra parameter lowers their error by
        # luck about as often as not)
        noise = float(np.sum(w[held] * v[held])) if known.all() else 0.0
        use = S > 1 and held_error(True) + noise < held_error(False)
    P = 2 + (S - 1 if use else 0)
    if y.size <= P:
        return None
    everything = np.ones(y.size, dtype=bool)
    theta = fit(everything, use)[0]
    if not np.all(np.isfinite(theta)):
        return None
    link = Link(floor, theta, sources, use, np.empty((0, P)))
    if not n_boot:
        return link
    fitted = np.array([link.value(z[i], int(sidx[i])) for i in range(y.size)])
    resid = y - fitted
    dof = max(y.size - P, 1)
    sigma2 = float(np.sum(w * resid**2)) / dof  # of a unit-weight point
    if known.all():
        sigma2 = max(sigma2, float(np.mean(v * w)))  # never below the known noise
    rng = np.random.default_rng(seed)
    sd = np.sqrt(sigma2 * dof / rng.chisquare(dof, size=n_boot))
    Y = fitted[None] + sd[:, None] * rng.standard_normal((n_boot, y.size)) / np.sqrt(w)[None]
    th0 = np.broadcast_to(theta, (n_boot, P)).copy()
    boot = _gauss_newton(z, Y, w, sidx, S, floor, use, th0)
    boot = boot[np.all(np.isfinite(boot), axis=1)]
    return Link(floor, theta, sources, use, boot)


@dataclass(frozen=True, slots=True)
class ProxyInput:
    """A continuous proxy of a group's metric: its name, direction and fit points."""

    metric: str
    lower_is_better: bool
    points: Mapping[str, SourcePoints]


def without_largest(proxy: ProxyInput, depth: int = 1) -> ProxyInput:
    """The proxy with each source's ``depth`` largest computes held out (for a nested
    backtest)."""
    from planner.laws.pairwise import hold_out_largest

    rest, _ = hold_out_largest(proxy.points, depth)
    return ProxyInput(proxy.metric, proxy.lower_is_better, rest)


def proxy_prediction(
    group: GroupInput,
    points: Mapping[str, SourcePoints],
    compute: float,
    *,
    n_boot: int = 400,
    seed: int = 0,
) -> Gaussian | None:
    """The two-step prediction of a group's accuracies at ``compute``.

    Returns:
        A normal prediction of every source's accuracy (mean and covariance from the
        paired replicates of both steps), or None when the metric is not a share of items,
        the proxy cannot be fitted or the link has too few points.
    """
    from planner.laws.decision import value_draws
    from planner.laws.joint import GroupData, fit_joint
    from planner.laws.pairwise import Gaussian

    proxy = group.proxy
    if proxy is None or not all(s in proxy.points for s in points):
        return None
    if not all(bool(np.all((p.y >= 0) & (p.y <= 1))) for p in points.values()):
        return None
    floor = group.chance if math.isfinite(group.chance) else 0.0
    data = {s: (proxy.points[s].x, proxy.points[s].y) for s in points}
    res = fit_joint(
        GroupData(group.study, proxy.metric, proxy.lower_is_better, data), n_boot=n_boot
    )
    fits = tuple(res.fits)
    if not fits or not all(f.success and f.boot is not None for f in fits):
        return None
    vd = value_draws(fits, [compute], seed=seed)
    link = fit_link(
        {s: proxy.points[s] for s in points}, points, floor=floor, n_boot=n_boot, seed=seed
    )
    if link is None or link.boot.shape[0] < 10:
        return None
    sources = tuple(points)
    B = min(vd.draws.shape[0], link.boot.shape[0])
    order = {s: link.sources.index(s) for s in sources}
    draws = np.empty((B, len(sources)))
    point = np.empty(len(sources))
    for i, s in enumerate(sources):
        z = vd.draws[:B, i, 0]
        draws[:, i] = link.value(z, order[s], link.boot[:B])
        point[i] = float(link.value(vd.point[i, 0], order[s]))
    ok = np.all(np.isfinite(draws), axis=1)
    if ok.sum() < 10 or not np.all(np.isfinite(point)):
        return None
    cov = np.atleast_2d(np.cov(draws[ok].T))
    return Gaussian(sources, point, cov)
