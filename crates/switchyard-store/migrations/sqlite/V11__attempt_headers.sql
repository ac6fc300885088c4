-- What each attempt sent: its request headers in order, credentials redacted (JSON pairs).
ALTER TABLE attempts ADD COLUMN request_headers TEXT;
