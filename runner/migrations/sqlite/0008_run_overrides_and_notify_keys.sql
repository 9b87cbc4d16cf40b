-- A run row is not a command (issue 20): the executor takes a run's job
-- kind and params from its schedule. New rows keep `params` as JSON null
-- (older rows keep the full copy they were written with, shown by
-- `patrol runs` but never run) and a manual run's overrides here, checked
-- against the schedule's `manual_params` before it runs.
ALTER TABLE runs ADD COLUMN overrides TEXT;

-- The key notifiers identify an alert by (PagerDuty's dedup_key, the
-- webhook's `notify_key`): `<schedule>/<finding key>` for alerts opened
-- since, so two schedules never share an incident. NULL for alerts opened
-- before this migration: they keep the bare finding key they were opened
-- with, so their resolve reaches the same incident.
ALTER TABLE alerts ADD COLUMN notify_key TEXT;
