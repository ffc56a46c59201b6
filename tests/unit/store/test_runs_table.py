from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.domain import stable_id
from planner.errors import ImportDataError
from planner.store import read_runs_table
from planner.store.runs_table import quoted_in_csv, unquoted

GOOD = """source,compute,metric,value,study,seed
a,1e18,loss,3.2,s1,0
a,2e18,loss,3.0,s1,0
a,2e18,acc,0.4,s1,0
b,1e18,loss,3.3,s1,0
"""


def write(tmp_path, text, name="runs.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_reads_runs_and_metrics(tmp_path):
    t = read_runs_table(write(tmp_path, GOOD))
    assert len(t.runs) == 3  # (a,1e18), (a,2e18) with two metrics, (b,1e18)
    assert len(t.metrics) == 4
    obs = t.observations()
    assert {(o.source, o.metric) for o in obs} == {("a", "loss"), ("a", "acc"), ("b", "loss")}


def test_same_file_gives_same_ids(tmp_path):
    a = read_runs_table(write(tmp_path, GOOD))
    b = read_runs_table(write(tmp_path, GOOD, "copy.csv"))
    assert [r.run_id for r in a.runs] == [r.run_id for r in b.runs]


def test_run_ids_are_the_hash_of_the_run_cells(tmp_path):
    # the ids stores already hold: changing how they are made would re-import every run
    t = read_runs_table(write(tmp_path, GOOD))
    assert t.runs[0].run_id == stable_id("run", "s1", "a", 1e18, None, None, 0, None, 0)
    assert [m.run_id for m in t.metrics][1:3] == [t.runs[1].run_id] * 2


def test_repeated_rows_are_distinct_repeats(tmp_path):
    t = read_runs_table(write(tmp_path, "source,compute,metric,value\na,1,loss,2\na,1,loss,2.1\n"))
    assert len(t.runs) == 2


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("source,compute,metric\na,1,loss\n", "missing required column(s) value"),
        ("source,compute,metric,value,seed,seed\na,1,loss,2,1,1\n", "column(s) seed appear twice"),
        (
            "source,compute,metric,value\na,abc,loss,2\n",
            "line 2, column compute: 'abc' is not a number",
        ),
        ("source,compute,metric,value\na,1,loss,2\na,-1,loss,2\n", "line 3, column compute"),
        ("source,compute,metric,value\n,1,loss,2\n", "line 2, column source: empty"),
        ("source,compute,metric,value\na,1,loss,nan\n", "column value"),
        ("source,compute,metric,value,seed\na,1,loss,2,1.5\n", "column seed"),
        ("source,compute,metric,value\na,1,loss\n", "line 2: 3 cells for 4 columns"),
        ("source,compute,metric,value\n", "no rows"),
        # the later rows of a run already seen are still checked, and named by their line
        ("source,compute,metric,value\na,1,loss,2\na,1,acc,\n", "line 3, column value: empty"),
        ("source,compute,metric,value\na,1,loss,2\na,1,,0.5\n", "line 3, column metric: empty"),
        (
            "source,compute,metric,value,cost_curation\na,1,loss,2,5\na,1,acc,0.5,6\n",
            "line 3: run",
        ),
        (
            "source,compute,metric,value,compute_unit\na,1,loss,2,flops\na,1,acc,0.5,usd\n",
            "line 3, column compute_unit: differs",
        ),
        (
            "source,compute,metric,value,run_id\na,1,loss,2,r1\nb,1,acc,0.5,r1\n",
            "line 3, column run_id: run 'r1' is given another source",
        ),
        (
            "source,compute,metric,value,run_id\na,1,loss,2,r1\na,1,loss,2.5,r1\n",
            "line 3, column metric: run 'r1' already has a value for 'loss'",
        ),
        ("", "empty"),
        ("source,compute,metric,value,n_items\na,1,acc,0.5,0.5\n", "line 2, column n_items"),
        ("source,compute,metric,value,n_items\na,1,acc,0.5,many\n", "column n_items"),
        ("source,compute,metric,value,chance\na,1,acc,0.5,x\n", "line 2, column chance"),
    ],
)
def test_bad_files_name_row_and_column(tmp_path, text, needle):
    with pytest.raises(ImportDataError) as e:
        read_runs_table(write(tmp_path, text))
    assert needle in str(e.value)


def test_columns_outside_the_format_are_left_unread_and_named(tmp_path):
    t = read_runs_table(
        write(tmp_path, "source,compute,colour,metric,value,notes\na,1,red,loss,2,x\n")
    )
    assert t.ignored_columns == ("colour", "notes")
    assert [(m.name, m.value) for m in t.metrics] == [("loss", 2.0)]
    assert "ignoring column(s) colour, notes" in t.ignored_note()
    assert (
        read_runs_table(write(tmp_path, "source,compute,metric,value\na,1,l,2\n")).ignored_note()
        == ""
    )


def test_blank_lines_keep_line_numbers(tmp_path):
    with pytest.raises(ImportDataError, match="line 4"):
        read_runs_table(write(tmp_path, "source,compute,metric,value\na,1,l,2\n\na,x,l,2\n"))


def test_missing_and_unknown_format(tmp_path):
    with pytest.raises(ImportDataError, match="does not exist"):
        read_runs_table(tmp_path / "nope.csv")
    with pytest.raises(ImportDataError, match="unknown format"):
        read_runs_table(write(tmp_path, GOOD, "runs.xlsx"))
    with pytest.raises(ImportDataError, match="Parquet"):
        read_runs_table(write(tmp_path, "not parquet", "runs.parquet"))


def test_evaluation_size_and_chance_belong_to_the_metric_row(tmp_path):
    """n_items and chance describe a metric's evaluation, not its run: one run may have an
    accuracy on 100 items and a loss with neither, and both rows stay one run."""
    text = "source,compute,metric,value,n_items,chance\na,1,acc,0.5,100,0.25\na,1,loss,3.0,,\n"
    t = read_runs_table(write(tmp_path, text))
    assert len(t.runs) == 1
    by_metric = {o.metric: o for o in t.observations()}
    assert (by_metric["acc"].n_items, by_metric["acc"].chance) == (100.0, 0.25)
    assert (by_metric["loss"].n_items, by_metric["loss"].chance) == (None, None)


def test_rows_repeating_an_earlier_row_exactly_are_named(tmp_path):
    text = (
        "source,compute,metric,value,notes\n"
        "a,1,loss,2,x\n"
        "a,1,loss,2,x\n"  # a copy of line 2
        "a,1,loss,2,other\n"  # differs in a column left unread: not a copy
        "\n"
        "a,1,loss,2,x\n"  # line 6: a copy of line 2 again
        "a,1,acc,0.5,x\n"
    )
    t = read_runs_table(write(tmp_path, text))
    assert len(t.runs) == 4  # still read as repeats, as before
    assert t.duplicate_rows == (("line 3", "line 2"), ("line 6", "line 2"))
    note = t.duplicates_note()
    assert "2 row(s) repeat an earlier row cell for cell: line 3 (= line 2), line 6" in note
    assert "line 3 (= line 2) and 1 more;" in t.duplicates_note(most=1)
    assert read_runs_table(write(tmp_path, GOOD)).duplicates_note() == ""


def test_a_semicolon_separated_file_is_named_as_such(tmp_path):
    text = "source;compute;metric;value\na;1e18;loss;3,2\n"
    with pytest.raises(ImportDataError) as e:
        read_runs_table(write(tmp_path, text))
    assert "missing required column(s) source, compute, metric, value" in str(e.value)
    assert "the file looks separated by semicolons" in str(e.value)
    # a missing column in a comma-separated file gets no such hint
    with pytest.raises(ImportDataError) as e:
        read_runs_table(write(tmp_path, "source,compute,metric\na,1,loss\n"))
    assert "separated by semicolons" not in str(e.value)


@given(st.text())
def test_a_csv_export_quote_is_taken_off_exactly(cell):
    """Any text written as a CSV export writes it reads back the same, and what is written
    starts like a formula only when it is a plain number."""
    written = "'" + cell if quoted_in_csv(cell) else cell
    assert unquoted(written) == cell
    assert written[:1] not in ("=", "+", "-", "@", "\t", "\r") or _is_number(written)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return s.strip() == s and "_" not in s and s.lower().lstrip("+-")[:1] in "0123456789."
