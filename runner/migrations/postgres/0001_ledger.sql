-- The run ledger. Timestamps are UTC milliseconds since the Unix epoch so
-- the same queries serve SQLite and PostgreSQL.
CREATE TABLE runs (
    id               BIGSERIAL PRIMARY KEY,
    schedule_id      TEXT    NOT NULL,
    job              TEXT    NOT NULL,
    scheduled_for    BIGINT  NOT NULL,
    attempt          BIGINT  NOT NULL,
    triggered_by     TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    not_before       BIGINT,
    created_at       BIGINT  NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    node             TEXT,
    instance_id      TEXT,
    params           TEXT    NOT NULL,
    dry_run          BIGINT  NOT NULL DEFAULT 0,
    force_overlap    BIGINT  NOT NULL DEFAULT 0,
    summary          TEXT,
    output           TEXT,
    details          TEXT,
    error            TEXT,
    cancel_requested BIGINT  NOT NULL DEFAULT 0,
    -- The same slot can never run twice, whichever node asks.
    UNIQUE (schedule_id, scheduled_for, attempt)
);
CREATE INDEX runs_by_status ON runs (status, not_before);
CREATE INDEX runs_by_schedule ON runs (schedule_id, id);

CREATE TABLE schedule_state (
    schedule_id TEXT    PRIMARY KEY,
    paused      BIGINT  NOT NULL DEFAULT 0,
    changed_at  BIGINT  NOT NULL,
    changed_by  TEXT
);

CREATE TABLE instances (
    id           TEXT    PRIMARY KEY,
    node         TEXT    NOT NULL,
    pid          BIGINT  NOT NULL,
    role         TEXT    NOT NULL,
    started_at   BIGINT  NOT NULL,
    heartbeat_at BIGINT  NOT NULL,
    stopped_at   BIGINT
);
