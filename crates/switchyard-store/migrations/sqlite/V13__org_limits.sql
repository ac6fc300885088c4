-- What the instance admin set for one organization: its shares and quotas (JSON object,
-- absent fields follow the hub's settings).
ALTER TABLE orgs ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';

-- Event hooks are claimed a few per organization at a time, the organizations found by a
-- skip-scan over this index: one organization's backlog never hides another's hooks.
CREATE INDEX deliveries_hooks_due ON deliveries (org_id, next_attempt_at)
    WHERE status = 'pending' AND endpoint_id IS NULL;

-- Bytes of each organization's key-value storage (keys and values), kept with every write for
-- its `kv_bytes` quota.
ALTER TABLE orgs ADD COLUMN kv_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE orgs SET kv_bytes = (SELECT COALESCE(SUM(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))), 0)
                            FROM kv WHERE kv.org_id = orgs.id);
