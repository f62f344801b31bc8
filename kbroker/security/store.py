"""Durable documents of the security state (ACLs, SCRAM credentials, client quotas).

Kafka keeps them in its cluster metadata; a single broker keeps each kind in one JSON
file in the first log dir, replaced atomically (tmp file, fsync, rename) on each change.
The cluster keeps them elsewhere: components depend on :class:`StateStore`, not on files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

from kbroker.fs import read_text, save_file

log = logging.getLogger(__name__)
_FORMAT_VERSION = 1


class StateStore(Protocol):
    """Loads and saves one JSON-shaped document per kind (``acls``, ``scram``, ``quotas``)."""

    def load(self, kind: str) -> Any:
        """The saved document of ``kind``, or None when none was saved."""
        ...

    def save(self, kind: str, document: Any) -> None:
        """Replace the document of ``kind``; it is durable when this returns."""
        ...


class FileStateStore:
    """A :class:`StateStore` keeping ``kbroker-<kind>.json`` files in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, kind: str) -> Path:
        """The file of ``kind``."""
        return self.directory / f"kbroker-{kind}.json"

    def load(self, kind: str) -> Any:
        path = self.path(kind)
        try:
            raw = json.loads(read_text(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            # Starting with no ACLs (or credentials) would open the broker: refuse instead.
            raise OSError(f"cannot read {path}: {e}") from e
        if not isinstance(raw, dict) or raw.get("version") != _FORMAT_VERSION or "data" not in raw:
            raise OSError(f"cannot read {path}: unsupported format")
        return raw["data"]

    def save(self, kind: str, document: Any) -> None:
        data = json.dumps({"version": _FORMAT_VERSION, "data": document}, indent=1, sort_keys=True)
        # Credentials and ACLs are for the broker's eyes only.
        save_file(self.path(kind), (data + "\n").encode(), mode=0o600)
