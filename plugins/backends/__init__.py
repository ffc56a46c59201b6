"""The built-in executor backends, each a plugin registered through the
``register_executor_backends`` hook exactly as a third party's would be:

- :mod:`plugins.backends.http`: a daemon somewhere, over HTTP with a bearer token;
- :mod:`plugins.backends.local`: the embedded default, a loopback daemon the planner starts.

Dispatch reaches executors only through the registry's backends and the
:class:`~plugins.contract.JobSubmitter` they return.
"""
