-- Verifications asked for by hand (`patrol verify release`): what was
-- checked, the verdict and every stage's detail, so a re-check is on record
-- and a repeat within the cache window is answered from here. `basis` is a
-- digest of what the result rested on (the job state read, the params and
-- the files they name): a record answers a repeat only while it is unchanged.
--
-- Ledgers made before jobs had their own tables already have this table
-- (runner migrations 5 and 6, same shape): it is kept, with its rows.
CREATE TABLE IF NOT EXISTS verifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL,
    schedule_id TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    verified    INTEGER NOT NULL,
    result      TEXT    NOT NULL,
    node        TEXT    NOT NULL,
    checked_at  INTEGER NOT NULL,
    basis       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS verifications_by_subject ON verifications (kind, schedule_id, subject, checked_at);
