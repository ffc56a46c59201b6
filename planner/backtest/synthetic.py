"""Synthetic runs tables whose true laws are known, to check a method where truth is known.

Each table has ``groups`` (study, metric) groups of ``sources`` sources measured at
``points`` doublings of compute (1e18 · 2^k), ``seeds`` runs each. With eight doublings,
F = 0.1 keeps four points per source and x_T is 16× beyond them. Kinds:

- ``shared``: a loss on a power law E + A_s·x^-α with the asymptote and exponent shared by
  the sources (rankings never change with compute); normal noise;
- ``crossing``: the same with each source's own exponent (about 15% apart), so curves may
  cross between the fit set and x_T;
- ``two-term``: a misspecified loss, E + A_s·x^-α + B_s·x^-β with two exponents (no
  candidate law has this shape), the sources differing in both terms;
- ``emerging``: a misspecified accuracy: chance + (1 − chance)·σ(k_s·(log x − m_s)), a
  logistic in log-compute that leaves chance inside or beyond the fit set, each source
  with its own midpoint and steepness; measured as a share of ``n_items`` items (binomial
  noise), with the ``n_items`` and ``chance`` columns filled in.
"""

from __future__ import annotations

import math

import numpy as np

from planner.domain import Observation

KINDS = ("shared", "crossing", "two-term", "emerging")
#: the accuracy's evaluation size and chance level in ``emerging`` tables
N_ITEMS = 500
CHANCE = 0.25


def synthetic_table(
    kind: str,
    *,
    groups: int = 60,
    sources: int = 4,
    points: int = 8,
    seeds: int = 1,
    sd: float = 0.02,
    seed: int = 0,
) -> list[Observation]:
    """A synthetic runs table (see the module's docstring for the kinds).

    Args:
        kind: one of :data:`KINDS`.
        groups, sources, points, seeds: its size.
        sd: the noise of a loss (``emerging`` tables are binomial).
        seed: the random draw.

    Raises:
        ValueError: an unknown kind.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind {kind!r}; known: {', '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    x = 1e18 * 2.0 ** np.arange(points)
    s = x / 1e18
    obs = []
    for g in range(groups):
        study = f"g{g}"
        if kind == "emerging":
            metric = "acc"
            k0 = rng.uniform(0.6, 1.4)
            m0 = rng.uniform(math.log(2.0**2), math.log(2.0**6))
            for j in range(sources):
                k = k0 * math.exp(0.2 * rng.standard_normal())
                m = m0 + 0.5 * rng.standard_normal()
                p = CHANCE + (1 - CHANCE) / (1 + np.exp(-k * (np.log(s) - m)))
                for c, pc in zip(x, p, strict=True):
                    for r in range(seeds):
                        value = rng.binomial(N_ITEMS, pc) / N_ITEMS
                        obs.append(
                            Observation(
                                study, metric, f"s{j}", float(c), float(value),
                                seed=r, n_items=N_ITEMS, chance=CHANCE,
                            )
                        )  # fmt: skip
            continue
        E, alpha = rng.uniform(1.5, 3.0), rng.uniform(0.2, 0.5)
        beta = alpha * rng.uniform(1.8, 2.5)
        for j in range(sources):
            A = rng.uniform(0.5, 1.5)
            a_s = alpha * (1 + 0.15 * rng.standard_normal()) if kind == "crossing" else alpha
            mu = E + A * s**-a_s
            if kind == "two-term":
                mu = mu + rng.uniform(0.0, 1.5) * s**-beta
            for c, m in zip(x, mu, strict=True):
                for r in range(seeds):
                    value = float(m + sd * rng.standard_normal())
                    obs.append(Observation(study, "loss", f"s{j}", float(c), value, seed=r))
    return obs
