-- Schedules: a cron line in a time zone that publishes an event at each fire time.
CREATE TABLE schedules (
    org_id        TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    cron          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    data          TEXT NOT NULL,
    enabled       INTEGER NOT NULL,
    misfire       TEXT NOT NULL,
    -- The next fire time (ms); NULL while disabled or when the line never fires again.
    next_fire_at  INTEGER,
    -- The last fire time an event was published for.
    last_fired_at INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (org_id, name)
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE next_fire_at IS NOT NULL;
