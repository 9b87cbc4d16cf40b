-- Alerting: alerts (one row per incident of a finding key), the outbox of
-- deliveries (one row per alert event per notifier, written before it is
-- sent), every attempt at sending, silences, and notifier health.
CREATE TABLE alerts (
    id            BIGSERIAL PRIMARY KEY,
    alert_key     TEXT    NOT NULL,
    schedule_id   TEXT    NOT NULL,
    job           TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    severity      TEXT    NOT NULL,
    title         TEXT    NOT NULL,
    finding       TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    node          TEXT    NOT NULL,
    first_seen_at BIGINT  NOT NULL,
    last_seen_at  BIGINT  NOT NULL,
    resolved_at   BIGINT,
    first_run_id  BIGINT,
    last_run_id   BIGINT
);
-- At most one firing alert per key and schedule, whichever node records it.
CREATE UNIQUE INDEX alerts_one_firing ON alerts (schedule_id, alert_key) WHERE status = 'firing';
CREATE INDEX alerts_by_status ON alerts (status, schedule_id);

CREATE TABLE deliveries (
    id          BIGSERIAL PRIMARY KEY,
    alert_id    BIGINT  NOT NULL REFERENCES alerts (id),
    alert_key   TEXT    NOT NULL,
    notifier    TEXT    NOT NULL,
    route       TEXT    NOT NULL,
    group_key   TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    reason      TEXT,
    view        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    not_before  BIGINT  NOT NULL,
    attempts    BIGINT  NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT,
    sent_at     BIGINT,
    remote      TEXT,
    last_error  TEXT
);
CREATE INDEX deliveries_due ON deliveries (status, not_before);
-- Order is kept per (key, notifier): the worker only sends the oldest open one.
CREATE INDEX deliveries_by_key ON deliveries (alert_key, notifier, id);
CREATE INDEX deliveries_by_alert ON deliveries (alert_id, notifier);

CREATE TABLE delivery_attempts (
    id             BIGSERIAL PRIMARY KEY,
    delivery_id    BIGINT  NOT NULL REFERENCES deliveries (id),
    attempt        BIGINT  NOT NULL,
    instance_id    TEXT,
    started_at     BIGINT  NOT NULL,
    finished_at    BIGINT,
    outcome        TEXT,
    http_status    BIGINT,
    retry_after_ms BIGINT,
    error          TEXT
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id);

CREATE TABLE silences (
    id         BIGSERIAL PRIMARY KEY,
    matchers   TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    created_by TEXT,
    created_at BIGINT  NOT NULL,
    starts_at  BIGINT  NOT NULL,
    ends_at    BIGINT  NOT NULL,
    expired_at BIGINT
);

CREATE TABLE notifier_health (
    notifier             TEXT    PRIMARY KEY,
    consecutive_failures BIGINT  NOT NULL,
    last_failure_at      BIGINT,
    last_success_at      BIGINT,
    last_error           TEXT
);
