-- Alerting: incidents and their timeline, escalation policies and their
-- durable state, contacts, notifier gateways and routes, the outbox of
-- notifications and every delivery attempt, maintenance windows and
-- silences. Keep in step with the other dialect's 0003.

-- The escalation policy of a check's incidents (none: the one named
-- `default`, if any).
ALTER TABLE checks ADD COLUMN policy TEXT;

-- Contacts, escalation policies, gateways, routes and maintenance windows:
-- configuration objects, each its API form as JSON (`spec`), validated by
-- `alerting::directory` before it is stored.
CREATE TABLE contacts (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE policies (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE gateways (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE routes (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE maintenance (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE incidents (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- `check:<id>`, or `<source>:<key>` for inbound alerts.
    dedup_key       TEXT NOT NULL,
    source          TEXT NOT NULL,
    check_id        INTEGER,
    title           TEXT NOT NULL,
    message         TEXT NOT NULL,
    severity        TEXT NOT NULL,
    policy          TEXT,
    -- triggered, acknowledged, resolved
    state           TEXT NOT NULL,
    opened_at       INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    acknowledged_at INTEGER,
    owner           TEXT,
    resolved_at     INTEGER,
    resolved_by     TEXT,
    -- Good runs in a row since the last failure, towards recovery.
    good_runs       INTEGER NOT NULL DEFAULT 0,
    reopened        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX incidents_by_key ON incidents (dedup_key, id);
-- One open incident per key, even when two controllers ingest at once.
CREATE UNIQUE INDEX incidents_open_key ON incidents (dedup_key) WHERE state <> 'resolved';
CREATE INDEX incidents_by_state ON incidents (state, id);
CREATE INDEX incidents_by_check ON incidents (check_id, state);

-- The timeline: every change, notification, delivery and response.
CREATE TABLE incident_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT,
    detail      TEXT NOT NULL
);
CREATE INDEX incident_events_by_incident ON incident_events (incident_id, id);

-- Where each incident's escalation stands; the policy is copied in so an
-- edit does not change an escalation under way.
CREATE TABLE escalations (
    incident_id INTEGER PRIMARY KEY,
    policy      TEXT NOT NULL,
    steps       TEXT NOT NULL,
    repeat      INTEGER NOT NULL,
    fallback    TEXT,
    -- suppressed, waiting, accepted, exhausted, stopped
    state       TEXT NOT NULL,
    -- The step under way (steps.len() = the fallback step) and the pass.
    step        INTEGER NOT NULL,
    pass        INTEGER NOT NULL,
    deadline_at INTEGER,
    -- Contacts of the current step who rejected (JSON list).
    rejected    TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX escalations_due ON escalations (state, deadline_at);

-- Every notification, written in the transaction of the event that causes
-- it, then delivered by workers: pending -> sending (leased) -> delivered
-- or failed. The id is the idempotency key the gateways see.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id     INTEGER NOT NULL,
    event           TEXT NOT NULL,
    step            INTEGER,
    pass            INTEGER,
    contact         TEXT NOT NULL,
    channel         TEXT NOT NULL,
    address         TEXT NOT NULL,
    source          TEXT NOT NULL,
    state           TEXT NOT NULL,
    gateway_index   INTEGER NOT NULL,
    attempt         INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    gateway         TEXT,
    message_id      TEXT,
    last_error      TEXT,
    -- accept or reject, once: links are single-use.
    response        TEXT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_by_incident ON outbox (incident_id, id);

-- Every attempt to deliver through a gateway.
CREATE TABLE deliveries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id  INTEGER NOT NULL,
    gateway    TEXT NOT NULL,
    at         INTEGER NOT NULL,
    -- delivered, failed (retry later), failed_over, given_up
    outcome    TEXT NOT NULL,
    message_id TEXT,
    error      TEXT,
    latency_ms INTEGER NOT NULL
);
CREATE INDEX deliveries_by_gateway ON deliveries (gateway, at);

-- Notifications held back until ends_at for the sources that match
-- (JSON list of globs).
CREATE TABLE silences (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    sources    TEXT NOT NULL,
    ends_at    INTEGER NOT NULL,
    comment    TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
