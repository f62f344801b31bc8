"""The cluster id and node id stamp in each log dir: Kafka's ``meta.properties``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from kbroker.config import generate_cluster_id, load_properties
from kbroker.fs import save_file, store_for

META_PROPERTIES = "meta.properties"


class MetaPropertiesError(RuntimeError):
    """The log dirs belong to another cluster or node (Kafka refuses to start then)."""


def _render(node_id: int, cluster_id: str) -> bytes:
    stamp = time.strftime("%a %b %d %H:%M:%S %Z %Y")
    return f"#\n#{stamp}\nnode.id={node_id}\nversion=1\ncluster.id={cluster_id}\n".encode()


def load_or_create_cluster_id(log_dirs: Sequence[Path], node_id: int, configured: str | None) -> str:
    """The cluster id stored in ``log_dirs`` (written to every dir that lacks it).

    A new id is ``configured`` or, failing that, a fresh 22-character base64url UUID.
    Raises :class:`MetaPropertiesError` when dirs disagree or belong to another node.
    """
    found: dict[Path, str] = {}
    for d in log_dirs:
        path = d / META_PROPERTIES
        if not store_for(path).exists(path):
            continue
        props = load_properties(path)
        stored_node = props.get("node.id", props.get("broker.id"))
        if stored_node is not None and int(stored_node) != node_id:
            raise MetaPropertiesError(
                f"Stored node id {stored_node} in {path} doesn't match the configured node.id {node_id}")
        if "cluster.id" in props:
            found[d] = props["cluster.id"].strip()
    ids = set(found.values())
    if len(ids) > 1:
        raise MetaPropertiesError(f"Log dirs belong to different clusters: {sorted(ids)}")
    if ids:
        cluster_id = ids.pop()
        if configured is not None and configured != cluster_id:
            raise MetaPropertiesError(
                f"The configured cluster.id {configured} doesn't match the stored cluster id "
                f"{cluster_id} in meta.properties")
    else:
        cluster_id = configured or generate_cluster_id()
    for d in log_dirs:
        if d not in found:
            save_file(d / META_PROPERTIES, _render(node_id, cluster_id))
    return cluster_id
