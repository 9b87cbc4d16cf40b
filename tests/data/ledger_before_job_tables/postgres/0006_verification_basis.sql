-- What a recorded verification rested on (a digest of the provmon state it
-- read, the schedule's params and the key and rule files they name): a
-- record answers a repeat only while its basis is unchanged.
ALTER TABLE verifications ADD COLUMN basis TEXT NOT NULL DEFAULT '';
