"""The broker config in force, shared by every component that reads it.

A :class:`BrokerConfig` is immutable; a dynamic change (IncrementalAlterConfigs, or the
dynamic configs stored by an earlier run) builds a new one and :meth:`ConfigHolder.replace`
puts it in force. Components read :attr:`ConfigHolder.current` when they need a value, or
subscribe to act on a change (reopen logs with new defaults, re-read a timeout).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kbroker.config.broker import BrokerConfig

log = logging.getLogger(__name__)

ConfigListener = Callable[[BrokerConfig], None]


class ConfigHolder:
    """Holds the current :class:`BrokerConfig` and tells subscribers when it is replaced."""

    def __init__(self, config: BrokerConfig) -> None:
        self._current = config
        self._listeners: list[ConfigListener] = []

    @property
    def current(self) -> BrokerConfig:
        """The config in force now."""
        return self._current

    def replace(self, config: BrokerConfig) -> None:
        """Put ``config`` in force and call every subscriber with it, in subscription order."""
        self._current = config
        for listener in list(self._listeners):
            listener(config)

    def subscribe(self, listener: ConfigListener) -> None:
        """Call ``listener`` with the new config after each :meth:`replace`."""
        self._listeners.append(listener)
