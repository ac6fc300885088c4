-- Routing runs outside the writer: a publish carries the routing version it was routed with,
-- and every change to where an organization's events go bumps it in the same transaction.
ALTER TABLE orgs ADD COLUMN routing_version INTEGER NOT NULL DEFAULT 0;
