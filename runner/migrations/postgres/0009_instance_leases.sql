-- Multi-node correctness (issue 19). An instance is identified by its
-- host and boot as well as its pid, so a process check is only ever made
-- on the host (and boot) that can see that pid; `node` is a label.
ALTER TABLE instances ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN boot_id TEXT NOT NULL DEFAULT '';
-- Until when the instance holds its lease, in milliseconds on the
-- database's clock (PostgreSQL) or the single node's (SQLite). Runs owned
-- by an instance whose lease expired are taken over; NULL for instances
-- written before this migration (their heartbeat_at plus node_ttl counts).
ALTER TABLE instances ADD COLUMN lease_until BIGINT;
-- Why the instance stopped: a clean shutdown, or who marked it dead and
-- why. Set once, with stopped_at: the first verdict is kept.
ALTER TABLE instances ADD COLUMN stop_reason TEXT;
