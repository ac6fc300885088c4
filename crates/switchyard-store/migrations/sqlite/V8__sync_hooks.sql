-- Synchronous hooks: a named front door to an executor that a caller runs and waits for.
CREATE TABLE sync_hooks (
    org_id        TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    executor      TEXT NOT NULL,
    timeout_ms    INTEGER NOT NULL,
    cache_ttl_s   INTEGER,
    input_schema  TEXT,
    output_schema TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (org_id, name)
);
-- The hook whose call made the run, if a call did.
ALTER TABLE runs ADD COLUMN hook TEXT;
