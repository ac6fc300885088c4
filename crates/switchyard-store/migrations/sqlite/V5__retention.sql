-- Retention deletes events. The foreign key from deliveries to events made every such delete
-- scan all deliveries (and every delivery insert look its event up); the store alone writes
-- both tables and deletes an event's deliveries with it, so the key goes. SQLite drops a foreign
-- key only by rebuilding the table.
CREATE TABLE deliveries_new (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL,
    event_seq       INTEGER NOT NULL,
    event_id        TEXT NOT NULL,
    -- exactly one of endpoint_id and executor is set
    endpoint_id     TEXT,
    executor        TEXT,
    subscription_id TEXT,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER,
    claimed_by      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
INSERT INTO deliveries_new (id, org_id, event_seq, event_id, endpoint_id, executor,
    subscription_id, status, attempts, next_attempt_at, claimed_by, created_at, updated_at)
SELECT id, org_id, event_seq, event_id, endpoint_id, executor,
    subscription_id, status, attempts, next_attempt_at, claimed_by, created_at, updated_at
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_event ON deliveries (org_id, event_id);
CREATE INDEX deliveries_org ON deliveries (org_id, id);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, event_seq);
