"""The logs of the registry's topics: opening, preparing off the event loop, config pushes.

:class:`TopicLogs` stands between the topic registry and the log layer. It gets the
config holder (a topic's LogConfig is the broker defaults under its overrides) and the
:class:`LogManager`; it knows nothing of how topics are named, found or persisted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from kbroker.config import ConfigHolder
from kbroker.log.errors import KafkaStorageError
from kbroker.metadata.log_config import log_config_for
from kbroker.metadata.model import TopicInfo

if TYPE_CHECKING:
    from kbroker.log.config import LogConfig
    from kbroker.log.manager import LogManager, PreparedLogs

log = logging.getLogger(__name__)

#: From this many new partitions on, their logs are prepared in bulk (off the event loop where async).
OFF_LOOP_PARTITIONS = 64


class TopicLogs:
    """Opens, prepares, reconfigures, closes and deletes the partition logs of topics."""

    def __init__(self, config: ConfigHolder, log_manager: LogManager) -> None:
        self._config = config
        self._logs = log_manager

    @property
    def log_manager(self) -> LogManager:
        """The log layer these logs live in."""
        return self._logs

    def config_for(self, topic: TopicInfo) -> LogConfig:
        """The topic's effective LogConfig under the broker config in force."""
        return log_config_for(self._config.current, topic.configs)

    def open(self, topic: TopicInfo, partitions: Iterable[int]) -> None:
        """Open (creating where missing) the logs of ``partitions``."""
        partitions = list(partitions)
        missing = [i for i in partitions if self._logs.get_log(topic.name, i) is None]
        if len(missing) >= OFF_LOOP_PARTITIONS:
            # New partitions in bulk (creation, or a restart after a crash mid-creation).
            self.open_prepared(topic, self.prepare(topic, missing), partitions)
        else:
            self._open_each(topic, partitions)

    def prepare(self, topic: TopicInfo, partitions: Iterable[int]) -> PreparedLogs:
        """Create the directories of new partitions' logs; safe in a worker thread."""
        return self._logs.prepare_logs(topic.name, partitions, topic.topic_id, self.config_for(topic))

    def prepare_all(self, topics: Sequence[TopicInfo]) -> list[PreparedLogs]:
        """:meth:`prepare` every partition of ``topics``; nothing is left behind on failure."""
        prepared: list[PreparedLogs] = []
        try:
            for topic in topics:
                prepared.append(self.prepare(topic, range(len(topic.partitions))))
        except BaseException:
            self.discard(prepared)
            raise
        return prepared

    def discard(self, prepared: Iterable[PreparedLogs]) -> None:
        """Remove prepared logs that will not be registered."""
        for prep in prepared:
            self._logs.discard_prepared(prep)

    def open_prepared(self, topic: TopicInfo, prepared: PreparedLogs, partitions: Iterable[int] = ()) -> None:
        """Register prepared logs, then open the rest of ``partitions`` and the leftovers."""
        others = self._logs.register_prepared(prepared, self.config_for(topic))
        rest = [i for i in partitions if i not in prepared.created]
        self._open_each(topic, sorted(set(rest) | set(others)))

    def _open_each(self, topic: TopicInfo, partitions: Iterable[int]) -> None:
        config = self.config_for(topic)
        lm = self._logs
        for index in partitions:
            try:
                lm.get_or_create_log(topic.name, index, config, topic_id=topic.topic_id)
            except KafkaStorageError:
                # The directory belongs to an earlier topic of the same name: a stray.
                log.warning("replacing stray log %s-%d of another topic id", topic.name, index)
                lm.delete_partition(topic.name, index)
                lm.get_or_create_log(topic.name, index, config, topic_id=topic.topic_id)

    def apply_config(self, topic: TopicInfo) -> None:
        """Push the topic's current LogConfig into its open logs."""
        config = self.config_for(topic)
        for index in topic.partitions:
            plog = self._logs.get_log(topic.name, index)
            if plog is not None:
                plog.update_config(config)

    def close(self, topic: TopicInfo) -> None:
        """Close the topic's open logs (before their files are removed elsewhere)."""
        for index in topic.partitions:
            plog = self._logs.get_log(topic.name, index)
            if plog is not None:
                plog.close(snapshot=False)

    def delete(self, topic: TopicInfo) -> None:
        """Remove the topic's logs and directories."""
        self._logs.delete_partitions(topic.name, topic.partitions)

    def delete_strays(self, exists: Callable[[str, int], bool]) -> None:
        """Delete the logs of partitions that do not ``exist``.

        Logs of topics the store does not know (a delete interrupted by a crash) are
        strays, as in KRaft; keeping them would resurrect data under a reused name.
        """
        for name, index in list(self._logs.all_logs()):
            if not exists(name, index):
                log.warning("deleting stray log %s-%d: its topic does not exist", name, index)
                self._logs.delete_partition(name, index)
