-- State jobs keep between runs of a schedule (cursors, correlation tables),
-- written in the transaction that records the run's end.
CREATE TABLE job_state (
    schedule_id TEXT   NOT NULL,
    key         TEXT   NOT NULL COLLATE "C",
    value       BYTEA  NOT NULL,
    updated_at  BIGINT NOT NULL,
    run_id      BIGINT,
    PRIMARY KEY (schedule_id, key)
);
