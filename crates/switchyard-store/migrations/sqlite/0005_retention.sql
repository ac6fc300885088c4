-- Retention deletes events: the foreign key from deliveries to events is checked on each delete,
-- which without this index scans every delivery.
CREATE INDEX deliveries_event_seq ON deliveries (event_seq);
