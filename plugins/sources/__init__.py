"""Built-in data-source kinds: ``files``, ``hf-disk``, ``synthetic``, ``filtered``, ``licensed``.

Each module is a plugin of its own, registered by plugins.manager through the same hooks a
third-party package uses.
"""

from __future__ import annotations
