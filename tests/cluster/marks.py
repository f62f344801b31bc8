"""Marks of the cluster tests.

:data:`CLUSTER_FEATURES` says whether kbroker's brokers coordinate through etcd (replication,
failover). Until they do, every broker of a local cluster runs alone, and the tests that need a
working cluster are skipped with the reason "requires the cluster features";
``test_cluster_features_flag_matches_the_code`` fails once the cluster code is present while the
flag still says otherwise, so that the tests cannot stay skipped unnoticed.
"""

from __future__ import annotations

import pytest

#: Whether the brokers form a cluster (flip to True once they do).
CLUSTER_FEATURES = True

requires_cluster_features = pytest.mark.skipif(not CLUSTER_FEATURES, reason="requires the cluster features")
