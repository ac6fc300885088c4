-- What kind of failure a failed run was (`timeout`, `memory`, `no_room`…), beside its words in
-- `error`; NULL for runs that succeeded and for runs stored before kinds were.
ALTER TABLE runs ADD COLUMN failure TEXT;
