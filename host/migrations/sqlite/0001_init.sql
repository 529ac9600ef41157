-- Tocsin's schema on SQLite. Keep in step with ../postgres/0001_init.sql:
-- same tables, columns and meanings; only the types differ.
-- Times are unix milliseconds; JSON is stored as text.

CREATE TABLE plugins (
    name          TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    sha256        TEXT    NOT NULL,
    description   TEXT    NOT NULL,
    config_schema TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    wasm          BLOB    NOT NULL,
    created_at    INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE checks (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL UNIQUE,
    description    TEXT    NOT NULL,
    plugin         TEXT    NOT NULL,
    plugin_version TEXT,
    target         TEXT    NOT NULL,
    config         TEXT    NOT NULL,
    interval_ms    INTEGER NOT NULL,
    timeout_ms     INTEGER NOT NULL,
    -- ",eu,us," so that a location or tag filter is a portable LIKE.
    locations      TEXT    NOT NULL,
    tags           TEXT    NOT NULL,
    allow          TEXT    NOT NULL,
    paused         INTEGER NOT NULL,
    status         TEXT    NOT NULL,
    status_since   INTEGER NOT NULL,
    last_run_at    INTEGER,
    last_message   TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX checks_by_plugin ON checks (plugin, plugin_version);

-- One row per check per scheduled slot (seq 0), plus confirmation retests
-- of that slot (seq 1, 2, ...).
CREATE TABLE runs (
    check_id    INTEGER NOT NULL,
    slot        INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    attempt     TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    error_code  TEXT,
    message     TEXT    NOT NULL,
    metrics     TEXT    NOT NULL,
    response_ms REAL,
    node        TEXT    NOT NULL,
    location    TEXT    NOT NULL,
    epoch       INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    logs        TEXT,
    refusals    TEXT,
    PRIMARY KEY (check_id, slot, seq)
);
CREATE INDEX runs_by_slot ON runs (slot);

-- Hourly aggregates of runs, kept long after the runs are pruned.
CREATE TABLE run_hours (
    check_id        INTEGER NOT NULL,
    hour            INTEGER NOT NULL,
    runs            INTEGER NOT NULL,
    up              INTEGER NOT NULL,
    degraded        INTEGER NOT NULL,
    down            INTEGER NOT NULL,
    errors          INTEGER NOT NULL,
    response_avg_ms REAL,
    response_min_ms REAL,
    response_max_ms REAL,
    PRIMARY KEY (check_id, hour)
);

CREATE TABLE nodes (
    id             TEXT    PRIMARY KEY,
    name           TEXT    NOT NULL,
    location       TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    registered_at  INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL
);

CREATE TABLE tokens (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    revoked_at INTEGER
);

-- Every change to configuration: who, what, before and after, when. The
-- sequence number orders the change feed.
CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    object_kind TEXT    NOT NULL,
    object_name TEXT    NOT NULL,
    before      TEXT,
    after       TEXT
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
