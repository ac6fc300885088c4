-- The packages an executor version declares (JSON: pip, npm or composer) and where their
-- install stands (JSON: installing, ready with the directory's key and the lock, or failed
-- with the installer's output); NULL without packages.
ALTER TABLE executors ADD COLUMN packages TEXT;
ALTER TABLE executors ADD COLUMN packages_state TEXT;
