"""Fixtures for the cluster backends: one real cluster per test module (a one-node Slurm,
a local Ray head), and an executor root with a tiny model, data and an lm-eval task."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dispatch.conftest import make_root
from tests.helpers.clusters import RayHead, SlurmCluster, ray_head, slurm_cluster


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    """A one-node Slurm cluster for the module; ``SLURM_CONF`` names it meanwhile."""
    with slurm_cluster() as cluster:
        patch = pytest.MonkeyPatch()
        patch.setenv("SLURM_CONF", str(cluster.conf))
        try:
            yield cluster
        finally:
            patch.undo()


@pytest.fixture(scope="module")
def ray() -> Iterator[RayHead]:
    """A local Ray head for the module, with two CPUs."""
    with ray_head(num_cpus=2) as head:
        yield head


@pytest.fixture(scope="module")
def cluster_root(tmp_path_factory: pytest.TempPathFactory, tiny_causal_lm: Path) -> Path:
    """A project folder that is also the executors' root: ``model/``, ``data/``,
    ``tasks/``."""
    return make_root(tmp_path_factory.mktemp("cluster") / "project", tiny_causal_lm)
