-- Side effects jobs have outside the ledger (files written, commands run,
-- changes made elsewhere): the intent is written before the effect is
-- performed and its outcome after, so a retried attempt of the same slot
-- does not perform again what an earlier attempt did.
CREATE TABLE effects (
    id            BIGSERIAL PRIMARY KEY,
    schedule_id   TEXT   NOT NULL,
    scheduled_for BIGINT NOT NULL,
    effect_key    TEXT   NOT NULL,
    kind          TEXT   NOT NULL,
    description   TEXT   NOT NULL,
    run_id        BIGINT NOT NULL,
    attempt       BIGINT NOT NULL,
    -- intended | done | failed
    status        TEXT   NOT NULL,
    error         TEXT,
    intended_at   BIGINT NOT NULL,
    finished_at   BIGINT,
    UNIQUE (schedule_id, scheduled_for, effect_key)
);
CREATE INDEX effects_by_run ON effects (run_id);
