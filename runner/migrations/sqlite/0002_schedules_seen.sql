-- When a runner first scheduled each schedule: where catch-up starts for a
-- schedule that has never fired yet (its first slot may fall in downtime).
CREATE TABLE schedules_seen (
    schedule_id   TEXT    PRIMARY KEY,
    first_seen_at INTEGER NOT NULL
);
