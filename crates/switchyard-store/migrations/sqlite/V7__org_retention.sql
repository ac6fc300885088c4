-- Each organization keeps its data as long as it chooses (NULL follows the hub's default), and
-- may drop the payloads of delivered events earlier than the events themselves.
ALTER TABLE orgs ADD COLUMN retention_s INTEGER;
ALTER TABLE orgs ADD COLUMN payload_retention_s INTEGER;
-- Set when the payload retention replaced `data` with null.
ALTER TABLE events ADD COLUMN payload_dropped_at INTEGER;
