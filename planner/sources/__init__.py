"""Candidate data sources: validating a new one and pricing one (the session façade that
``annealplan sources`` and the TUI's Sources screen share)."""
