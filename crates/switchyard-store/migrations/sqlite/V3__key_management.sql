-- Key management: a displayable prefix (never the key) and when each key was last used.
ALTER TABLE api_keys ADD COLUMN prefix TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;
CREATE INDEX api_keys_by_org ON api_keys (org_id);

-- One row the readiness check rewrites to learn whether the disk takes writes again.
CREATE TABLE write_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL);
