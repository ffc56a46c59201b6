"""Documents for the demo's lm-eval tasks, generated from the seeded knowledge base.

lm-eval calls these through ``custom_dataset: !function utils.<name>`` with the task's
``metadata`` as keyword arguments, so no data file (and no path relative to the working
directory) is involved: the documents are rebuilt from the seed in milliseconds. Pass
``metadata={"seed": N}`` to the TaskManager to evaluate another knowledge base.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# lm-eval imports this file by path, outside any package: make the repository importable.
_REPO = Path(__file__).resolve().parents[3]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from examples.domain import kb  # noqa: E402


def _dataset(docs: list[dict]):
    from datasets import Dataset, DatasetDict

    return DatasetDict({"test": Dataset.from_list(docs)})


def _seed(kwargs: dict[str, Any]) -> int:
    return int(kwargs.get("seed", kb.DEFAULT_SEED))


def load_domain_mc(**kwargs: Any):
    """Which condition each drug treats (4 choices)."""
    seed = _seed(kwargs)
    return _dataset(kb.domain_mc_docs(kb.make_kb(seed), seed))


def load_domain_gen(**kwargs: Any):
    """The standard dose of each drug, generated and matched exactly."""
    return _dataset(kb.domain_gen_docs(kb.make_kb(_seed(kwargs))))


def load_domain_dose(**kwargs: Any):
    """The standard dose of each drug, among every dose (8 choices)."""
    return _dataset(kb.domain_dose_docs(kb.make_kb(_seed(kwargs))))


def load_general_mc(**kwargs: Any):
    """Everyday facts the base model learned in pretraining (4 choices)."""
    return _dataset(kb.general_mc_docs(_seed(kwargs)))
