-- The watchdog's levers and readings. Keep in step with the other
-- dialect's 0004.

-- Evicted by the watchdog or an operator: the node owns nothing until it
-- is resumed, whether or not it still heartbeats.
ALTER TABLE nodes ADD COLUMN evicted BIGINT NOT NULL DEFAULT 0;

-- A row each watchdog writes and reads back, to prove the database takes
-- writes (a database that answers reads only is not healthy).
CREATE TABLE watchdog_probes (
    watchdog   TEXT PRIMARY KEY,
    token      TEXT NOT NULL,
    written_at BIGINT NOT NULL
);
