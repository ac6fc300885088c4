-- Ordered delivery and the per-endpoint queue.
--
-- An ordered endpoint stores what it orders by (`entity` or a data path; NULL: unordered) and
-- what a key does when its head fails for good.
ALTER TABLE endpoints ADD COLUMN ordering_key TEXT;
ALTER TABLE endpoints ADD COLUMN on_head_failure TEXT;

-- A delivery to an ordered endpoint keeps its key (`ordering_key`, shown in the API) and, while
-- it is open (pending or blocked), the same key in `order_slot`; the slot is cleared when the
-- delivery settles. The head of a key is its open delivery with the lowest event_seq.
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
ALTER TABLE deliveries ADD COLUMN order_slot TEXT;
CREATE INDEX deliveries_order ON deliveries (endpoint_id, order_slot, event_seq)
    WHERE order_slot IS NOT NULL;

-- Each endpoint pulls its own due deliveries; the poller finds the endpoints that have any.
CREATE INDEX deliveries_endpoint_due ON deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
DROP INDEX deliveries_due;

-- Endpoint health: updated once per endpoint per recorded batch of attempts.
CREATE TABLE endpoint_health (
    endpoint_id          TEXT PRIMARY KEY REFERENCES endpoints(id) ON DELETE CASCADE,
    org_id               TEXT NOT NULL,
    consecutive_failures INTEGER NOT NULL,
    failing_since        INTEGER,
    last_success_at      INTEGER,
    last_failure_at      INTEGER,
    last_error           TEXT
);
-- Attempts name their endpoint so that health over a window reads only that endpoint's.
ALTER TABLE attempts ADD COLUMN endpoint_id TEXT;
CREATE INDEX attempts_endpoint ON attempts (endpoint_id, at) WHERE endpoint_id IS NOT NULL;
-- Why an attempt waited: held back by flow control once due, and why its retry waits.
ALTER TABLE attempts ADD COLUMN waited TEXT;
ALTER TABLE attempts ADD COLUMN retry_reason TEXT;
