-- Redundant sites: this site's role and epoch, and the configuration change
-- feed. Keep in step with the other dialect's 0005.

-- One row. `role` is 'active' (takes changes, schedules, alerts) or
-- 'passive' (follows `source`). `epoch` is the highest site epoch seen; a
-- promotion takes one above it. `head` is the seq of the newest feed entry
-- and `head_epoch` the epoch it was written in; `head_chain` is that entry's
-- link in the feed's hash chain, which says where a follower stands.
CREATE TABLE site (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    epoch      BIGINT  NOT NULL,
    head       BIGINT  NOT NULL,
    head_epoch BIGINT  NOT NULL,
    head_chain TEXT    NOT NULL,
    source     TEXT,
    changed_at BIGINT  NOT NULL
);
INSERT INTO site (id, name, role, epoch, head, head_epoch, head_chain, changed_at) VALUES (1, 'main', 'active', 1, 0, 0, '', 0);

-- The change feed: every configuration change, in commit order, with the
-- object as it is after the change (`body`, none when it was deleted).
-- `chain` is sha256 over the previous entry's chain and this entry, so two
-- sites hold the same entry at a seq only if they hold the same history up
-- to it. A follower holds a copy of its source's entries.
CREATE TABLE changes (
    seq    BIGINT  PRIMARY KEY,
    epoch  BIGINT  NOT NULL,
    at     BIGINT  NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    kind   TEXT    NOT NULL,
    name   TEXT    NOT NULL,
    body   TEXT,
    chain  TEXT    NOT NULL
);
