-- State jobs keep between runs of a schedule (cursors, correlation tables),
-- written in the transaction that records the run's end.
CREATE TABLE job_state (
    schedule_id TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    value       BLOB    NOT NULL,
    updated_at  INTEGER NOT NULL,
    run_id      INTEGER,
    PRIMARY KEY (schedule_id, key)
);
