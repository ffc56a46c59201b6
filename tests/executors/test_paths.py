"""Resolving a job's paths on real folders and real symlinks: globs expand as the source
plugins expand them, with a bound on the work, and loops are refused instead of walked."""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

import pytest

from executors.paths import Budget, PathRefused, _expand, check_spec_paths, resolve_under
from executors.protocol import AnnealJobSpec


def _tree(root: Path) -> None:
    """Folders, hidden names, a link to a sibling folder and a link to a file."""
    for rel in (
        "a.jsonl",
        "d1/b.jsonl",
        "d1/sub/c.jsonl",
        "d1/.hidden/h.jsonl",
        "d2/x.txt",
        ".dot/e.jsonl",
        "d2/deep/er/f.jsonl",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("{}\n")
    (root / "d2" / "to_d1").symlink_to(root / "d1")
    (root / "d1" / "link.jsonl").symlink_to(root / "a.jsonl")


@pytest.mark.parametrize(
    "pattern",
    [
        "*.jsonl",
        "**/*.jsonl",
        "**",
        "d*/*.jsonl",
        "d1/**",
        "d2/**/*.jsonl",
        "*/sub/*.jsonl",
        "**/sub",
        ".dot/*",
        "d1/.*/*.jsonl",
        "d?/[bx]*",
        "nothing/**/*.jsonl",
    ],
)
def test_globs_match_what_glob_matches(tmp_path: Path, pattern: str):
    root = tmp_path.resolve()
    _tree(root)
    ours = sorted(_expand(root, root, pattern.split("/"), "f", Budget()))
    theirs = sorted(
        Path(p) for p in glob.glob(glob.escape(str(root)) + "/" + pattern, recursive=True)
    )
    assert ours == theirs


def _loop_root(tmp_path: Path) -> Path:
    root = tmp_path.resolve() / "root"
    (root / "g").mkdir(parents=True)
    (root / "g" / "x.jsonl").write_text("{}\n")
    (root / "g" / "l1").symlink_to(".")
    (root / "g" / "l2").symlink_to(".")
    (root / "selfloop").symlink_to("selfloop")
    (root / "a").mkdir()
    (root / "b").mkdir()
    (root / "a" / "to_b").symlink_to("../b")  # a loop of two links
    (root / "b" / "to_a").symlink_to("../a")
    return root


@pytest.mark.parametrize("pattern", ["g/**/x.jsonl", "**/x.jsonl", "a/**", "**/*/x.jsonl"])
def test_a_glob_through_a_symlink_loop_is_refused_at_once(tmp_path: Path, pattern: str):
    root = _loop_root(tmp_path)
    t0 = time.monotonic()
    with pytest.raises(PathRefused, match="loop") as e:
        resolve_under(root, pattern, field="source.config.paths.0", pattern=True)
    assert e.value.field == "source.config.paths.0"
    assert time.monotonic() - t0 < 5, "the loop was walked"


def test_a_self_loop_is_refused_naming_the_field(tmp_path: Path):
    root = _loop_root(tmp_path)
    for must_exist in (True, False):
        with pytest.raises(PathRefused, match="symlink loop") as e:
            resolve_under(root, "selfloop", field="base_model", must_exist=must_exist)
        assert e.value.field == "base_model"
    with pytest.raises(PathRefused, match="symlink loop"):
        resolve_under(root, "sel*", field="source.config.paths.0", pattern=True)


def test_the_work_of_a_glob_is_bounded(tmp_path: Path):
    root = tmp_path.resolve()
    for i in range(30):
        (root / "many" / f"d{i}").mkdir(parents=True)
        for j in range(10):
            (root / "many" / f"d{i}" / f"{j}.txt").write_text("x")
    # a DAG of links: no loop, but every level doubles the paths ** walks
    chain = root / "chain"
    for level in range(15):
        (chain / str(level)).mkdir(parents=True)
        if level:
            (chain / str(level - 1) / "l").symlink_to(chain / str(level))
            (chain / str(level - 1) / "r").symlink_to(chain / str(level))
    with pytest.raises(PathRefused, match="more than 100 files"):
        resolve_under(root, "many/**/*.txt", field="f", pattern=True, budget=Budget(entries=100))
    assert resolve_under(root, "many/**/*.txt", field="f", pattern=True) == root / "many/**/*.txt"
    with pytest.raises(PathRefused, match="more than 20000"):
        resolve_under(root, "chain/**/*.txt", field="f", pattern=True, budget=Budget(20_000))
    with pytest.raises(PathRefused, match="took more than"):
        resolve_under(root, "many/**", field="f", pattern=True, budget=Budget(seconds=0.0))


def test_a_glob_link_to_a_folder_outside_the_root_is_refused(tmp_path: Path):
    root = tmp_path.resolve() / "root"
    (root / "data").mkdir(parents=True)
    (root / "data" / "a.jsonl").write_text("{}\n")
    outside = tmp_path.resolve() / "outside"
    outside.mkdir()
    (root / "data" / "out").symlink_to(outside)  # nothing there matches, but ** walks it
    with pytest.raises(PathRefused, match="outside"):
        resolve_under(root, "data/**/*.jsonl", field="f", pattern=True)
    assert resolve_under(root, "data/*.jsonl", field="f", pattern=True)


def test_globs_at_the_root_are_checked_by_what_they_match_not_their_prefix(tmp_path: Path):
    root = tmp_path.resolve()
    (root / "d").mkdir()
    (root / "a.jsonl").write_text("{}\n")
    (root / "d" / "a.jsonl").write_text("{}\n")
    state = root / ".annealplan" / "executor"  # the default state folder, inside the root
    (state / "jobs" / "j").mkdir(parents=True)
    (state / "jobs" / "j" / "samples.jsonl").write_text("{}\n")
    for ok in ("*.jsonl", "**/*.jsonl", "d*/a.jsonl"):
        resolve_under(root, ok, field="f", deny=(state,), pattern=True)
    for bad in (".annealplan/**", ".annealplan/*/jobs/*/*.jsonl", ".*/executor", ".annealplan/*"):
        with pytest.raises(PathRefused, match="state folder"):
            resolve_under(root, bad, field="f", deny=(state,), pattern=True)
    with pytest.raises(PathRefused, match="state folder"):
        resolve_under(root, ".annealplan", field="f", deny=(state,), must_exist=False)


def test_models_are_folders_globs_match_something_and_only_sources_take_globs(tmp_path: Path):
    root = tmp_path.resolve()
    (root / "model").mkdir()
    (root / "weights.bin").write_bytes(b"x")
    (root / "data").mkdir()
    (root / "data" / "a.jsonl").write_text("{}\n")

    def spec(**over) -> AnnealJobSpec:
        raw = {
            "job_id": "j",
            "base_model": "model",
            "source": {"kind": "files", "config": {"paths": ["data/*.jsonl"]}, "tokens": 100},
            **over,
        }
        return AnnealJobSpec.model_validate({"replay": None, **raw})

    check_spec_paths(spec(), root)
    cases = {
        "base_model": spec(base_model="weights.bin"),
        "tokenizer": spec(tokenizer="mod*"),
        "source.config.paths.0": spec(
            source={"kind": "files", "config": {"paths": ["data/*.parquet"]}, "tokens": 100}
        ),
    }
    says = {
        "base_model": "is a file",
        "tokenizer": "not a glob",
        "source.config.paths.0": "nothing",
    }
    for field, bad in cases.items():
        with pytest.raises(PathRefused, match=says[field]) as e:
            check_spec_paths(bad, root)
        assert e.value.field == field
    # a literal path in a config need not exist yet (an output folder, a cache)
    check_spec_paths(
        spec(source={"kind": "files", "config": {"paths": ["data/later.jsonl"]}, "tokens": 9}),
        root,
    )
    assert os.path.isdir(root / "model")
