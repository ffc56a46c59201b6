"""``annealplan runs import/export`` and the warnings ``backtest`` shares with them."""

from __future__ import annotations

from click.testing import CliRunner

from planner.cli import cli

# a.1 at compute 2 is written twice, cell for cell; b's two rows at compute 1 are two repeats
# with different values (not copies)
DUPLICATED = """source,compute,metric,value
a,1,loss,3.0
a,2,loss,2.5
a,2,loss,2.5
a,4,loss,2.2
a,8,loss,2.0
b,1,loss,3.1
b,1,loss,3.2
b,2,loss,2.9
b,4,loss,2.7
b,8,loss,2.6
"""


def test_exact_duplicate_rows_are_imported_and_named_on_stderr(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text(DUPLICATED)
    run = CliRunner()
    out = run.invoke(cli, ["--db", str(tmp_path / "s.duckdb"), "runs", "import", str(path)])
    assert out.exit_code == 0, out.output
    assert "10 new runs" in out.stdout  # the copy is a repeat run, as before
    assert "repeat an earlier row cell for cell: line 4 (= line 3);" in out.stderr
    assert "line 8" not in out.stderr  # a repeat with another value is not a copy
    assert "warning" not in out.stdout
    # backtest reads the same file the same way, and says the same
    out = run.invoke(cli, ["backtest", str(path), "--fraction", "0.5", "--json", "--jobs", "1"])
    assert out.exit_code == 0, out.output
    assert "line 4 (= line 3)" in out.stderr and "warning" not in out.stdout
