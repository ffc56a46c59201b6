"""Ray's job client for the ``ray`` backend (its own module: the backend's ``check`` and
its submitter both use it, and neither imports the other at run time)."""

from __future__ import annotations

from typing import Any

from plugins.errors import ConfigError

#: how to install what this backend needs
RAY_EXTRA = "pip install 'annealplan[ray]'"


def job_client(address: str) -> Any:
    """Ray's ``JobSubmissionClient`` for ``address`` (it asks the head for its version).

    Raises:
        ConfigError: Ray is not installed here.
        ConnectionError: the head does not answer.
    """
    try:
        from ray.job_submission import JobSubmissionClient
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"the ray backend needs the ray package, which is not installed here; install it "
            f"with {RAY_EXTRA}"
        ) from e
    try:
        return JobSubmissionClient(address)
    except (OSError, RuntimeError) as e:
        raise ConnectionError(str(e).splitlines()[0] if str(e) else type(e).__name__) from e
