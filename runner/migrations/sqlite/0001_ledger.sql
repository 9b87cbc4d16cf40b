-- The run ledger. Timestamps are UTC milliseconds since the Unix epoch so
-- the same queries serve SQLite and PostgreSQL.
CREATE TABLE runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule_id      TEXT    NOT NULL,
    job              TEXT    NOT NULL,
    scheduled_for    INTEGER NOT NULL,
    attempt          INTEGER NOT NULL,
    triggered_by     TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    not_before       INTEGER,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    node             TEXT,
    instance_id      TEXT,
    params           TEXT    NOT NULL,
    dry_run          INTEGER NOT NULL DEFAULT 0,
    force_overlap    INTEGER NOT NULL DEFAULT 0,
    summary          TEXT,
    output           TEXT,
    details          TEXT,
    error            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    -- The same slot can never run twice, whichever node asks.
    UNIQUE (schedule_id, scheduled_for, attempt)
);
CREATE INDEX runs_by_status ON runs (status, not_before);
CREATE INDEX runs_by_schedule ON runs (schedule_id, id);

CREATE TABLE schedule_state (
    schedule_id TEXT    PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    changed_at  INTEGER NOT NULL,
    changed_by  TEXT
);

CREATE TABLE instances (
    id           TEXT    PRIMARY KEY,
    node         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    role         TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    stopped_at   INTEGER
);
