-- A subscription's mode: `async` (delivered after the publish answered) or `sync` (attempted
-- once while the publish waits).
ALTER TABLE subscriptions ADD COLUMN mode TEXT NOT NULL DEFAULT 'async';
