"""The audit service's own Prometheus metrics (the kit adds gRPC, consumer and DLQ metrics).

``motcua_audit_tree_head_timestamp_seconds`` is what the Helm alert and the Grafana panel use
("time since the last signed head" = ``time() - motcua_audit_tree_head_timestamp_seconds``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LOG_SIZE = Gauge("motcua_audit_log_size", "Entries in the audit log (the Merkle tree's size)")
APPEND_SECONDS = Histogram(
    "motcua_audit_append_seconds",
    "Time to append one entry (its Merkle nodes and row), inside its transaction",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
TREE_HEAD_TIMESTAMP = Gauge(
    "motcua_audit_tree_head_timestamp_seconds", "Unix time of the newest signed tree head"
)
TREE_HEAD_SIZE = Gauge("motcua_audit_tree_head_size", "Tree size of the newest signed tree head")
TREE_HEADS_SIGNED = Counter("motcua_audit_tree_heads_signed_total", "Tree heads signed")
VERIFICATION_FAILURES = Counter(
    "motcua_audit_verification_failures_total",
    "Failed self-checks of the stored log, by check (entry_hash, node_hash, missing_node, "
    "tree_head_signature, tree_head_root, consistency)",
    ["check"],
)
ENTRIES_APPENDED = Counter(
    "motcua_audit_entries_appended_total", "Entries appended, by kind (event, access)", ["kind"]
)
