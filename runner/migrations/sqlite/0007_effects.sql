-- Side effects jobs have outside the ledger (files written, commands run,
-- changes made elsewhere): the intent is written before the effect is
-- performed and its outcome after, so a retried attempt of the same slot
-- does not perform again what an earlier attempt did.
CREATE TABLE effects (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule_id   TEXT    NOT NULL,
    scheduled_for INTEGER NOT NULL,
    effect_key    TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    description   TEXT    NOT NULL,
    run_id        INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    -- intended | done | failed
    status        TEXT    NOT NULL,
    error         TEXT,
    intended_at   INTEGER NOT NULL,
    finished_at   INTEGER,
    UNIQUE (schedule_id, scheduled_for, effect_key)
);
CREATE INDEX effects_by_run ON effects (run_id);
