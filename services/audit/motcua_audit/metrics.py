"""The audit service's own Prometheus metrics (the kit adds gRPC, consumer and DLQ metrics).

``motcua_audit_tree_head_timestamp_seconds`` is what the Helm alert and the Grafana panel use
("time since the last signed head" = ``time() - motcua_audit_tree_head_timestamp_seconds``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LOG_SIZE = Gauge("motcua_audit_log_size", "Entries in the audit log (the Merkle tree's size)")
APPEND_SECONDS = Histogram(
    "motcua_audit_append_seconds",
    "Time to stage one entry inside its writer's transaction (sequencing is batched, ADR 0046)",
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
    "motcua_audit_entries_appended_total",
    "Entries sequenced into the log, by kind (event, access)",
    ["kind"],
)
SEQUENCER_BATCH_SECONDS = Histogram(
    "motcua_audit_sequencer_batch_seconds",
    "Time of one sequencer batch: lock, frontier read, hashing, bulk writes, commit",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
SEQUENCER_BATCH_SIZE = Histogram(
    "motcua_audit_sequencer_batch_entries",
    "Staged entries taken by one sequencer batch (full batches: the sequencer is behind)",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
SEQUENCER_DUPLICATES = Counter(
    "motcua_audit_sequencer_duplicates_total",
    "Staged entries dropped because the log already held their (source, id)",
)
SEQUENCER_FAILURES = Counter(
    "motcua_audit_sequencer_failures_total",
    "Sequencer batches that failed and rolled back (their entries stay staged)",
)
DOCUMENTS_WITHOUT_RESOURCE = Counter(
    "motcua_audit_documents_without_resource_total",
    "document_issued events recorded without a document resource: the payload's document id "
    "was empty or its sha256 not 64 lower-case hex (the event is recorded all the same)",
)
