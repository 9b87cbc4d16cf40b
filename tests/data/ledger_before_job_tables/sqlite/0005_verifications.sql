-- Verifications asked for by hand (`patrol verify release`): what was
-- checked, the verdict and every stage's detail, so a re-check is on record
-- and a repeat within the cache window is answered from here.
CREATE TABLE verifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL,
    schedule_id TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    verified    INTEGER NOT NULL,
    result      TEXT    NOT NULL,
    node        TEXT    NOT NULL,
    checked_at  INTEGER NOT NULL
);
CREATE INDEX verifications_by_subject ON verifications (kind, schedule_id, subject, checked_at);
