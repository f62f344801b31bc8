"""DescribeLogDirs (key 35): each log directory, the space on its volume and the size of every
partition log it holds (``kafka-log-dirs.sh --describe``, ``Admin.describeLogDirs``).

As Kafka's ``KafkaApis.handleDescribeLogDirsRequest`` and ``ReplicaManager.describeLogDirs``:
a null topic list means every hosted partition, otherwise only the named partitions this
broker hosts are listed (an unknown one is left out, not an error); a topic left with no
partition in a dir is left out of that dir. Per partition: its size (the bytes of its
segments' ``.log`` files, Kafka's ``UnifiedLog.size``), the offset lag (the high watermark
minus the log end offset, at least 0: always 0 for the leader's own log) and ``is_future_key``
false (kbroker has no ``-future`` logs). From v4, the volume's total and usable bytes. A log
dir that cannot be read is KAFKA_STORAGE_ERROR with no topics, as Kafka answers for an
offline dir.

kbroker adds one field Kafka does not have, ``last_cleaning`` (tag 10000 in the partition
entry, flexible versions only, see protocol/extensions.json): the log cleaner's last pass over
the partition, absent when it was never cleaned. Kafka clients skip unknown tagged fields.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio

from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.versions import VersionRange
from kbroker.common import TopicPartition
from kbroker.fs import is_memory_path
from kbroker.handlers import authz
from kbroker.handlers.api import MANY, HostedLogs, RequestContext, map_yielding, response
from kbroker.log.partition_log import PartitionLog
from kbroker.security.model import AclOperation

log = logging.getLogger(__name__)

API_KEY = 35
VERSIONS = VersionRange(0, 5)


def volume_space(log_dir: Path) -> tuple[int, int]:
    """``(total, usable)`` bytes of the volume holding ``log_dir`` (Java's ``FileStore``
    ``getTotalSpace``/``getUsableSpace``: usable is what an unprivileged writer may fill);
    OSError if the directory cannot be read."""
    if is_memory_path(log_dir):
        return -1, -1  # no volume: Kafka's "unknown" (the fields' default)
    st = os.statvfs(log_dir)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def partition_entry(tp: TopicPartition, plog: PartitionLog) -> dict[str, Any]:
    """One partition's entry: size on disk, offset lag, and kbroker's last cleaning."""
    cleaning = plog.last_cleaning
    return {"partition_index": tp.partition, "partition_size": plog.size_in_bytes,
            "offset_lag": max(plog.high_watermark - plog.log_end_offset, 0), "is_future_key": False,
            "last_cleaning": None if cleaning is None else asdict(cleaning)}


async def describe_log_dirs(logs: HostedLogs, wanted: set[TopicPartition] | None) -> tuple[int, list[dict[str, Any]]]:
    """Every configured log dir with the hosted partitions in ``wanted`` (None: all);
    returns ``(partitions listed, results)``."""
    dirs: list[Path] = list(dict.fromkeys(Path(os.path.abspath(d)) for d in logs.log_dirs))
    by_dir: dict[Path, list[tuple[TopicPartition, PartitionLog]]] = {d: [] for d in dirs}
    for tp, plog in sorted(logs.all_logs().items(), key=lambda item: item[0]):
        if wanted is not None and tp not in wanted:
            continue
        where = logs.log_dir_of(tp.topic, tp.partition)
        if where is not None:
            by_dir.setdefault(Path(os.path.abspath(where)), []).append((tp, plog))
    # statvfs may block on a sick volume: not on the event loop.
    space = await anyio.to_thread.run_sync(_space_of, dirs)
    results: list[dict[str, Any]] = []
    count = 0
    for d in dirs:
        found = space[d]
        if isinstance(found, OSError):
            log.warning("cannot describe log dir %s: %s", d, found)
            results.append({"error_code": ErrorCode.KAFKA_STORAGE_ERROR, "log_dir": str(d), "topics": []})
            continue
        entries = await map_yielding(lambda item: (item[0].topic, partition_entry(*item)), by_dir[d])
        topics: dict[str, list[dict[str, Any]]] = {}
        for topic, entry in entries:
            topics.setdefault(topic, []).append(entry)
        count += len(entries)
        results.append({"error_code": ErrorCode.NONE, "log_dir": str(d),
                        "topics": [{"name": n, "partitions": ps} for n, ps in topics.items()],
                        "total_bytes": found[0], "usable_bytes": found[1], "is_cordoned": False})
    return count, results


def _space_of(dirs: Sequence[Path]) -> dict[Path, tuple[int, int] | OSError]:
    out: dict[Path, tuple[int, int] | OSError] = {}
    for d in dirs:
        try:
            out[d] = volume_space(d)
        except OSError as e:
            out[d] = e
    return out


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    # As Kafka: DESCRIBE on the cluster, else no directories and CLUSTER_AUTHORIZATION_FAILED
    # (v3+ carries the code; older versions just see no directories).
    if not authz.cluster(ctx, AclOperation.DESCRIBE):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "results": []}
    topics = ctx.request.body.topics
    wanted: set[TopicPartition] | None = None
    if topics is not None:
        wanted = set()
        seen = 0
        for t in topics:
            for p in t.partitions:
                wanted.add(TopicPartition(t.topic, p))
                seen += 1
                if seen % MANY == 0:
                    await anyio.sleep(0)  # a request may name hundreds of thousands: let others in
    count, results = await describe_log_dirs(ctx.broker.log_manager, wanted)
    return response(count, throttle_time_ms=0, error_code=ErrorCode.NONE, results=results)
