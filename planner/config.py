"""Settings: defaults, then ``annealplan.toml`` in the project folder, then ``ANNEALPLAN_*``
environment variables, then command-line flags. Validated with pydantic at this edge; the
core receives plain values.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner.errors import ConfigError
from planner.units import Rates

CONFIG_FILE = "annealplan.toml"
DEFAULT_DB = "annealplan.duckdb"


class RatesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flops_per_gpu_hour: float = Field(default=989e12 * 0.40 * 3600.0, gt=0)
    """Useful FLOPs one GPU delivers per hour (peak × MFU × 3600)."""
    usd_per_gpu_hour: float = Field(default=2.50, gt=0)
    """Price of one GPU-hour in USD."""

    def as_rates(self) -> Rates:
        """The conversion rates :mod:`planner.units` uses."""
        return Rates(self.flops_per_gpu_hour, self.usd_per_gpu_hour)


class Settings(BaseModel):
    """The planner's settings."""

    model_config = ConfigDict(extra="forbid")

    project_dir: Path = Field(default_factory=Path.cwd)
    """The project folder: holds the DuckDB file, the config and work folders."""
    db: Path = Path(DEFAULT_DB)
    """The DuckDB file (relative paths are under the project folder)."""
    rates: RatesSettings = Field(default_factory=RatesSettings)
    """How compute and money convert."""
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-plugin option tables: ``[plugins.<name>]``; each plugin validates its own."""
    load_plugins: list[str] | None = None
    """Only load these entry-point plugins (``ANNEALPLAN_LOAD_PLUGINS=a,b``)."""
    proxy: list[str] = Field(default_factory=list)
    """Continuous proxies of accuracies, ``"ACC_GLOB=PROXY_METRIC"`` each (as ``--proxy``;
    the flag, when given, wins)."""
    trust_multiple: float = Field(default=10.0, gt=1.0)
    """The trust region: no plan buys more of a source than this multiple of its largest
    measured budget (``ANNEALPLAN_TRUST_MULTIPLE``; ``--trust-multiple`` wins)."""
    chance: dict[str, float] = Field(default_factory=dict)
    """Chance levels of metrics: metric glob → level (as ``--chance``; wins over a runs
    table's ``chance`` column)."""

    @property
    def db_path(self) -> Path:
        return self.db if self.db.is_absolute() else self.project_dir / self.db


def load_settings(
    *, project_dir: Path | None = None, db: str | os.PathLike[str] | None = None
) -> Settings:
    """Build settings from the config file, the environment and explicit overrides.

    Raises:
        ConfigError: the config file cannot be read or a value is invalid.
    """
    project = Path(project_dir or os.environ.get("ANNEALPLAN_PROJECT") or Path.cwd()).resolve()
    data: dict[str, Any] = {}
    path = project / CONFIG_FILE
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {e}; fix the file or remove it") from e
    data["project_dir"] = project
    if env_db := os.environ.get("ANNEALPLAN_DB"):
        data["db"] = env_db
    if db is not None:
        data["db"] = str(db)
    if trust := os.environ.get("ANNEALPLAN_TRUST_MULTIPLE"):
        data["trust_multiple"] = trust
    if (narrow := os.environ.get("ANNEALPLAN_LOAD_PLUGINS")) is not None:
        data["load_plugins"] = [p.strip() for p in narrow.split(",") if p.strip()]
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid settings in {path} or ANNEALPLAN_*: {problems}") from e
