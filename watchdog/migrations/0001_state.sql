-- The watchdog's own state: what it saw, per component, kept small enough
-- to render 90 days of history at once.

-- The newest judgement of each component.
CREATE TABLE components (
    id         TEXT PRIMARY KEY,   -- "controller:c1", "database", "node:eu-1", ...
    kind       TEXT NOT NULL,      -- controller, scheduler, database, location, node, canary, watchdog
    name       TEXT NOT NULL,
    state      TEXT NOT NULL,      -- up, degraded, down
    detail     TEXT NOT NULL,
    latency_ms REAL,
    since      INTEGER NOT NULL,   -- when it entered this state (ms)
    seen_at    INTEGER NOT NULL
);

-- Samples rolled up per component and 5 minutes (charts) and per day (uptime bars).
CREATE TABLE buckets (
    component   TEXT NOT NULL,
    start       INTEGER NOT NULL,
    up          INTEGER NOT NULL DEFAULT 0,
    degraded    INTEGER NOT NULL DEFAULT 0,
    down        INTEGER NOT NULL DEFAULT 0,
    latency_sum REAL NOT NULL DEFAULT 0,
    latency_n   INTEGER NOT NULL DEFAULT 0,
    latency_max REAL,
    PRIMARY KEY (component, start)
);
CREATE TABLE days (
    component TEXT NOT NULL,
    day       INTEGER NOT NULL,    -- days since 1970-01-01 (UTC)
    up        INTEGER NOT NULL DEFAULT 0,
    degraded  INTEGER NOT NULL DEFAULT 0,
    down      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (component, day)
);

-- A component down or degraded is an incident until it is up again.
CREATE TABLE incidents (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    component   TEXT NOT NULL,
    title       TEXT NOT NULL,
    severity    TEXT NOT NULL,     -- degraded, down (the worst seen)
    opened_at   INTEGER NOT NULL,
    resolved_at INTEGER
);
CREATE INDEX incidents_open ON incidents (component, resolved_at);
CREATE INDEX incidents_recent ON incidents (opened_at);
CREATE TABLE incident_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    text        TEXT NOT NULL
);
CREATE INDEX incident_events_by_incident ON incident_events (incident_id, id);

-- Every failover action with its evidence and the watchdogs that agreed.
CREATE TABLE actions (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,       -- evict_node, revoke_lease
    target    TEXT NOT NULL,
    evidence  TEXT NOT NULL,
    agreed_by TEXT NOT NULL,       -- comma-separated watchdog names
    outcome   TEXT NOT NULL        -- done, refused: ...
);

-- Every alarm this watchdog sent (or failed to).
CREATE TABLE alarms (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    component TEXT NOT NULL,
    event     TEXT NOT NULL,       -- down, degraded, recovered
    text      TEXT NOT NULL,
    gateway   TEXT,
    outcome   TEXT NOT NULL
);
