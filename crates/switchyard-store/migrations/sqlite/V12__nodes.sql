-- Several nodes: which node made each attempt, and which node works each endpoint.
ALTER TABLE attempts ADD COLUMN node TEXT;

-- A node sends to an endpoint only while it holds the endpoint's lease (so max_rps and
-- ordering hold across nodes); a lease not renewed by `lease_until` may be taken over, and
-- `epoch` counts the holders it has had.
CREATE TABLE endpoint_leases (
    endpoint_id TEXT PRIMARY KEY,
    node        TEXT NOT NULL,
    lease_until INTEGER NOT NULL,
    epoch       INTEGER NOT NULL
);
CREATE INDEX endpoint_leases_node ON endpoint_leases (node);

-- The nodes that deliver, each until its last beat runs out: endpoints are spread over them.
CREATE TABLE node_heartbeats (
    node       TEXT PRIMARY KEY,
    seen_until INTEGER NOT NULL
);

-- The master key check: sealed by the first node that opened the database; a node with
-- another master key refuses to start.
CREATE TABLE key_check (id INTEGER PRIMARY KEY CHECK (id = 1), sealed BLOB NOT NULL);
