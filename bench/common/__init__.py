"""What the benches share (a folder, so that ``bench/*.py`` finds only the benches)."""
