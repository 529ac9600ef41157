-- Probe nodes in many locations: who owns which check (with a fencing
-- epoch per check), the scheduling lease, and confirmation retests.
-- Keep in step with the other dialect's 0002.

ALTER TABLE nodes ADD COLUMN drained INTEGER NOT NULL DEFAULT 0;
-- Start of the node's current unbroken run of heartbeats (database clock).
ALTER TABLE nodes ADD COLUMN healthy_since INTEGER NOT NULL DEFAULT 0;
-- Bumped whenever the node's work changes (assignment or confirmations).
ALTER TABLE nodes ADD COLUMN work_version INTEGER NOT NULL DEFAULT 0;
-- What the node reports with its heartbeat (JSON): runs in flight, results buffered.
ALTER TABLE nodes ADD COLUMN stats TEXT NOT NULL DEFAULT '{}';

-- The newest slot with an accepted scheduled run.
ALTER TABLE checks ADD COLUMN last_slot INTEGER;
-- How many other locations must see a failure before it counts.
ALTER TABLE checks ADD COLUMN confirm INTEGER NOT NULL DEFAULT 1;

-- The owner of each check. A result is accepted from the current owner
-- (epoch) for slots from from_slot on, and from the previous owner
-- (prev_epoch) for slots before it; anything else is fenced off.
CREATE TABLE assignments (
    check_id   INTEGER PRIMARY KEY,
    node_id    TEXT NOT NULL,
    epoch      INTEGER NOT NULL,
    from_slot  INTEGER NOT NULL,
    prev_node  TEXT,
    prev_epoch INTEGER,
    changed_at INTEGER NOT NULL
);
CREATE INDEX assignments_by_node ON assignments (node_id);
CREATE INDEX assignments_by_prev_node ON assignments (prev_node);

-- Leases with a fencing epoch, renewed against the database clock.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    epoch      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Retests of a failed slot from other locations (runs with seq >= 1).
CREATE TABLE confirmations (
    check_id     INTEGER NOT NULL,
    slot         INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    node_id      TEXT NOT NULL,
    location     TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    -- pending, answered or expired
    state        TEXT NOT NULL,
    status       TEXT,
    PRIMARY KEY (check_id, slot, seq)
);
CREATE INDEX confirmations_by_node ON confirmations (node_id, state);
