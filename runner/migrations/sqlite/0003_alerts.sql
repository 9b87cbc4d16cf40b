-- Alerting: alerts (one row per incident of a finding key), the outbox of
-- deliveries (one row per alert event per notifier, written before it is
-- sent), every attempt at sending, silences, and notifier health.
CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_key     TEXT    NOT NULL,
    schedule_id   TEXT    NOT NULL,
    job           TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    severity      TEXT    NOT NULL,
    title         TEXT    NOT NULL,
    finding       TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    node          TEXT    NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    resolved_at   INTEGER,
    first_run_id  INTEGER,
    last_run_id   INTEGER
);
-- At most one firing alert per key and schedule, whichever node records it.
CREATE UNIQUE INDEX alerts_one_firing ON alerts (schedule_id, alert_key) WHERE status = 'firing';
CREATE INDEX alerts_by_status ON alerts (status, schedule_id);

CREATE TABLE deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id    INTEGER NOT NULL REFERENCES alerts (id),
    alert_key   TEXT    NOT NULL,
    notifier    TEXT    NOT NULL,
    route       TEXT    NOT NULL,
    group_key   TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    reason      TEXT,
    view        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    not_before  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER,
    sent_at     INTEGER,
    remote      TEXT,
    last_error  TEXT
);
CREATE INDEX deliveries_due ON deliveries (status, not_before);
-- Order is kept per (key, notifier): the worker only sends the oldest open one.
CREATE INDEX deliveries_by_key ON deliveries (alert_key, notifier, id);
CREATE INDEX deliveries_by_alert ON deliveries (alert_id, notifier);

CREATE TABLE delivery_attempts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id    INTEGER NOT NULL REFERENCES deliveries (id),
    attempt        INTEGER NOT NULL,
    instance_id    TEXT,
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    outcome        TEXT,
    http_status    INTEGER,
    retry_after_ms INTEGER,
    error          TEXT
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id);

CREATE TABLE silences (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    matchers   TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    created_by TEXT,
    created_at INTEGER NOT NULL,
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    expired_at INTEGER
);

CREATE TABLE notifier_health (
    notifier             TEXT    PRIMARY KEY,
    consecutive_failures INTEGER NOT NULL,
    last_failure_at      INTEGER,
    last_success_at      INTEGER,
    last_error           TEXT
);
