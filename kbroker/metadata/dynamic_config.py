"""Dynamic broker configs (AlterConfigs on the BROKER resource) kept across restarts.

Kafka keeps them in the cluster metadata; on a single broker they live in one JSON file
in the first log dir, replaced atomically on every change and applied at start-up over
the static config. In a cluster they live in etcd instead (``MetadataManager``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from kbroker.config import ConfigError
from kbroker.fs import read_text, save_file

if TYPE_CHECKING:
    from kbroker.config import BrokerConfig

log = logging.getLogger(__name__)

DYNAMIC_CONFIG_FILE = "kbroker-dynamic-configs.json"
_FORMAT_VERSION = 1


class DynamicConfigStore:
    """The persisted dynamic broker configs of one data directory."""

    def __init__(self, log_dir: Path) -> None:
        self.path = Path(log_dir) / DYNAMIC_CONFIG_FILE

    def load(self) -> dict[str, str]:
        """The saved key/values; empty when none were saved (or the file is unreadable)."""
        try:
            raw = json.loads(read_text(self.path))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.error("ignoring unreadable dynamic broker configs in %s: %s", self.path, e)
            return {}
        configs = raw.get("configs") if isinstance(raw, dict) and raw.get("version") == _FORMAT_VERSION else None
        if not isinstance(configs, dict):
            log.error("ignoring dynamic broker configs in %s: unsupported format", self.path)
            return {}
        return {str(k): str(v) for k, v in configs.items()}

    def save(self, configs: Mapping[str, str]) -> None:
        """Replace the saved configs (tmp file, fsync, rename)."""
        doc = {"version": _FORMAT_VERSION, "configs": dict(sorted(configs.items()))}
        save_file(self.path, (json.dumps(doc, indent=1) + "\n").encode())

    def apply(self, config: BrokerConfig) -> BrokerConfig:
        """``config`` with the saved dynamic configs on top; a key that is no longer
        dynamic or whose value no longer parses is skipped with a warning."""
        for key, value in self.load().items():
            try:
                config = config.with_dynamic({key: value})
            except ConfigError as e:
                log.warning("ignoring saved dynamic broker config %s=%s: %s", key, value, e)
        return config
