-- How an executor version or a synchronous hook is offered to AI agents over MCP (JSON:
-- name, description, input schema); NULL when it is not a tool.
ALTER TABLE executors ADD COLUMN tool TEXT;
ALTER TABLE sync_hooks ADD COLUMN tool TEXT;
