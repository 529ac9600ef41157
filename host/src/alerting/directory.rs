//! Contacts, policies, gateways, routes and maintenance windows: stored as
//! their API form (JSON), validated here before they are, and kept
//! consistent (a contact a policy names cannot be deleted, and so on).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::AnyConnection;
use tocsin_runtime::{Grant, PluginKind};

use super::model::{CHANNELS, Contact, Gateway, Maintenance, Policy, Route, Step};
use crate::catalog::Catalog;
use crate::model::Millis;
use crate::secrets::Keyring;
use crate::store::{self, Db, StoreError};

/// A kind of configuration object and its table.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    pub table: &'static str,
    pub noun: &'static str,
    /// In audit actions: `contact.create`.
    pub key: &'static str,
}

pub const CONTACTS: Kind = Kind { table: "contacts", noun: "contact", key: "contact" };
pub const POLICIES: Kind = Kind { table: "policies", noun: "policy", key: "policy" };
pub const GATEWAYS: Kind = Kind { table: "gateways", noun: "gateway", key: "gateway" };
pub const ROUTES: Kind = Kind { table: "routes", noun: "route", key: "route" };
pub const MAINTENANCE: Kind = Kind { table: "maintenance", noun: "maintenance window", key: "maintenance" };

/// A stored object's JSON with its config's secrets opened.
fn open(keys: &Keyring, kind: Kind, name: &str, text: &str) -> store::Result<Value> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("{} {name}: {e}", kind.noun));
    let mut spec: Value = serde_json::from_str(text).map_err(corrupt)?;
    if let Some(config) = spec.get_mut("config") {
        *config = keys.open_config(config).map_err(|e| StoreError::Secrets(format!("{} {name}", kind.noun), e))?;
    }
    Ok(spec)
}

fn decode<T: DeserializeOwned>(keys: &Keyring, kind: Kind, name: &str, text: &str) -> store::Result<T> {
    let spec = open(keys, kind, name, text)?;
    serde_json::from_value(spec).map_err(|e| StoreError::Corrupt(format!("{} {name}: {e}", kind.noun)))
}

/// An object as stored, a gateway's secrets left sealed: for kinds without
/// secrets and reads that do not use them (existence, names).
pub async fn get<T: DeserializeOwned>(conn: &mut AnyConnection, kind: Kind, name: &str) -> store::Result<Option<T>> {
    let sql = format!("SELECT spec FROM {} WHERE name = $1", kind.table);
    let spec: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(conn).await?;
    spec.map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{} {name}: {e}", kind.noun))))
        .transpose()
}

pub async fn list<T: DeserializeOwned>(conn: &mut AnyConnection, kind: Kind) -> store::Result<Vec<T>> {
    let sql = format!("SELECT name, spec FROM {} ORDER BY name", kind.table);
    let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(conn).await?;
    rows.into_iter()
        .map(|(name, s)| {
            serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{} {name}: {e}", kind.noun)))
        })
        .collect()
}

/// An object with a gateway's secrets opened: what the API shows (hidden)
/// and the deliverer uses.
pub async fn get_opened<T: DeserializeOwned>(
    conn: &mut AnyConnection,
    keys: &Keyring,
    kind: Kind,
    name: &str,
) -> store::Result<Option<T>> {
    let sql = format!("SELECT spec FROM {} WHERE name = $1", kind.table);
    let spec: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(conn).await?;
    spec.map(|s| decode(keys, kind, name, &s)).transpose()
}

pub async fn list_opened<T: DeserializeOwned>(
    conn: &mut AnyConnection,
    keys: &Keyring,
    kind: Kind,
) -> store::Result<Vec<T>> {
    let sql = format!("SELECT name, spec FROM {} ORDER BY name", kind.table);
    let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(conn).await?;
    rows.into_iter().map(|(name, s)| decode(keys, kind, &name, &s)).collect()
}

/// The stored form of an object: a plugin config (a gateway's) sealed.
fn sealed_text<T: Serialize>(keys: &Keyring, spec: &T) -> store::Result<String> {
    let mut spec = serde_json::to_value(spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if let Some(config) = spec.get_mut("config") {
        *config = keys.seal_config(config);
    }
    Ok(spec.to_string())
}

/// Creates (`replace` false: a conflict if it exists) or replaces (`replace`
/// true: not found if it does not) an object; returns what it replaced.
pub async fn put<T: Serialize>(
    conn: &mut AnyConnection,
    keys: &Keyring,
    kind: Kind,
    name: &str,
    spec: &T,
    replace: bool,
    now: Millis,
) -> store::Result<Option<Value>> {
    let before: Option<Value> = get_opened(conn, keys, kind, name).await?;
    let text = sealed_text(keys, spec)?;
    match (&before, replace) {
        (Some(_), false) => return Err(StoreError::Conflict(format!("{} {name} already exists", kind.noun))),
        (None, true) => return Err(StoreError::NotFound(format!("{} {name}", kind.noun))),
        (None, false) => {
            let sql =
                format!("INSERT INTO {} (name, spec, created_at, updated_at) VALUES ($1, $2, $3, $3)", kind.table);
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).bind(&text).bind(now).execute(conn).await?;
        }
        (Some(_), true) => {
            let sql = format!("UPDATE {} SET spec = $2, updated_at = $3 WHERE name = $1", kind.table);
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).bind(&text).bind(now).execute(conn).await?;
        }
    }
    Ok(before)
}

/// Deletes an object; returns it.
pub async fn delete(conn: &mut AnyConnection, keys: &Keyring, kind: Kind, name: &str) -> store::Result<Value> {
    let before: Option<Value> = get_opened(conn, keys, kind, name).await?;
    let Some(before) = before else { return Err(StoreError::NotFound(format!("{} {name}", kind.noun))) };
    let sql = format!("DELETE FROM {} WHERE name = $1", kind.table);
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).execute(conn).await?;
    Ok(before)
}

// Bounds of policies and gateways; the API's document declares them too.
pub const MAX_STEPS: usize = 20;
pub const MAX_REPEAT: u32 = 9;
pub const STEP_TIMEOUT_SECS: std::ops::RangeInclusive<f64> = 1.0..=86_400.0;
pub const GATEWAY_TIMEOUT_SECS: std::ops::RangeInclusive<f64> = 0.1..=60.0;

/// What is wrong with an object: the field and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid { field: field.into(), message: message.into() }
}

fn check_name(kind: Kind, name: &str) -> Result<(), Invalid> {
    if crate::api::is_name(name) {
        return Ok(());
    }
    Err(invalid(
        "name",
        format!("{} name {name:?}: use 1 to 63 lowercase letters, digits, `.`, `_` and `-`", kind.noun),
    ))
}

pub fn validate_contact(c: &Contact) -> Result<(), Invalid> {
    check_name(CONTACTS, &c.name)?;
    if c.channels.is_empty() {
        return Err(invalid("channels", "a contact needs at least one channel"));
    }
    for (i, ch) in c.channels.iter().enumerate() {
        let field = format!("channels[{i}]");
        let address = ch.address.trim();
        let ok = match ch.channel.as_str() {
            "voice" | "sms" => {
                address.len() >= 8
                    && address.len() <= 16
                    && address.starts_with('+')
                    && address[1..].chars().all(|c| c.is_ascii_digit())
            }
            "email" => address.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.')),
            "webhook" => reqwest::Url::parse(address).is_ok_and(|u| matches!(u.scheme(), "http" | "https")),
            "chat" => !address.is_empty(),
            other => {
                return Err(invalid(field, format!("unknown channel {other:?}; use one of {}", CHANNELS.join(", "))));
            }
        };
        if !ok {
            let want = match ch.channel.as_str() {
                "voice" | "sms" => "a phone number in E.164 form, such as +15550100",
                "email" => "an email address",
                "webhook" => "an http(s) URL",
                _ => "a chat channel or user",
            };
            return Err(invalid(field, format!("{:?} is not {want}", ch.address)));
        }
    }
    Ok(())
}

/// Policies may only name contacts (and their channels) that exist.
pub async fn validate_policy(conn: &mut AnyConnection, p: &Policy) -> Result<(), Invalid> {
    check_name(POLICIES, &p.name)?;
    if p.steps.is_empty() {
        return Err(invalid("steps", "a policy needs at least one step"));
    }
    if p.steps.len() > MAX_STEPS {
        return Err(invalid("steps", format!("at most {MAX_STEPS} steps")));
    }
    if p.repeat > MAX_REPEAT {
        return Err(invalid("repeat", format!("{} is out of range: repeat 0 to {MAX_REPEAT} times", p.repeat)));
    }
    let steps = p.steps.iter().enumerate().map(|(i, s)| (format!("steps[{i}]"), s));
    for (field, step) in steps.chain(p.fallback.iter().map(|s| ("fallback".to_string(), s))) {
        validate_step(conn, &field, step).await?;
    }
    Ok(())
}

async fn validate_step(conn: &mut AnyConnection, field: &str, step: &Step) -> Result<(), Invalid> {
    if step.notify.is_empty() {
        return Err(invalid(format!("{field}.notify"), "a step must notify at least one contact"));
    }
    let secs = step.timeout.as_secs_f64();
    if !STEP_TIMEOUT_SECS.contains(&secs) {
        return Err(invalid(format!("{field}.timeout"), "between 1s and 24h"));
    }
    for target in &step.notify {
        let (name, channel) = match target.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (target.as_str(), None),
        };
        let contact: Option<Contact> =
            get(conn, CONTACTS, name).await.map_err(|e| invalid(field, format!("reading contacts: {e}")))?;
        let Some(contact) = contact else {
            return Err(invalid(format!("{field}.notify"), format!("unknown contact {name:?}")));
        };
        if let Some(channel) = channel
            && !contact.channels.iter().any(|c| c.channel == channel)
        {
            return Err(invalid(format!("{field}.notify"), format!("contact {name} has no {channel} channel")));
        }
    }
    Ok(())
}

pub async fn validate_gateway(catalog: &Catalog, db: &Db, g: &Gateway) -> Result<(), Invalid> {
    check_name(GATEWAYS, &g.name)?;
    let plugin = catalog.get(db, &g.plugin).await.map_err(|e| invalid("plugin", e.to_string()))?;
    if plugin.info().kind != PluginKind::Notifier {
        return Err(invalid("plugin", format!("{} is a check plugin, not a notifier", g.plugin)));
    }
    plugin.validate_config(&g.config).map_err(|e| invalid("config", e.to_string()))?;
    for (i, grant) in g.allow.iter().enumerate() {
        grant.parse::<Grant>().map_err(|e| invalid(format!("allow[{i}]"), e.to_string()))?;
    }
    let secs = g.timeout.as_secs_f64();
    if !GATEWAY_TIMEOUT_SECS.contains(&secs) {
        return Err(invalid("timeout", "between 100ms and 60s"));
    }
    Ok(())
}

pub async fn validate_route(conn: &mut AnyConnection, r: &Route) -> Result<(), Invalid> {
    check_name(ROUTES, &r.name)?;
    if !CHANNELS.contains(&r.channel.as_str()) {
        return Err(invalid("channel", format!("unknown channel {:?}; use one of {}", r.channel, CHANNELS.join(", "))));
    }
    if r.gateways.is_empty() {
        return Err(invalid("gateways", "a route needs at least one gateway"));
    }
    for (i, name) in r.gateways.iter().enumerate() {
        let found: Option<Value> =
            get(conn, GATEWAYS, name).await.map_err(|e| invalid("gateways", format!("reading gateways: {e}")))?;
        if found.is_none() {
            return Err(invalid(format!("gateways[{i}]"), format!("unknown gateway {name:?}")));
        }
    }
    super::suppress::globs(&r.sources).map_err(|e| invalid("sources", e))?;
    Ok(())
}

pub fn validate_maintenance(m: &Maintenance) -> Result<(), Invalid> {
    check_name(MAINTENANCE, &m.name)?;
    match m.problem() {
        Some(problem) => Err(invalid("schedule", problem)),
        None => Ok(()),
    }
}

/// Who still refers to `name` of `kind`, which must not be deleted.
pub async fn users(conn: &mut AnyConnection, kind: Kind, name: &str) -> store::Result<Vec<String>> {
    let mut users = Vec::new();
    if kind.table == CONTACTS.table {
        let policies: Vec<Policy> = list(conn, POLICIES).await?;
        for p in policies {
            let named = p
                .steps
                .iter()
                .chain(p.fallback.iter())
                .flat_map(|s| &s.notify)
                .any(|t| t.split(':').next() == Some(name));
            if named {
                users.push(format!("policy {}", p.name));
            }
        }
    } else if kind.table == GATEWAYS.table {
        let routes: Vec<Route> = list(conn, ROUTES).await?;
        users.extend(
            routes.into_iter().filter(|r| r.gateways.iter().any(|g| g == name)).map(|r| format!("route {}", r.name)),
        );
    } else if kind.table == POLICIES.table {
        let checks: Vec<String> = sqlx::query_scalar("SELECT name FROM checks WHERE policy = $1 ORDER BY name")
            .bind(name)
            .fetch_all(&mut *conn)
            .await?;
        users.extend(checks.into_iter().map(|c| format!("check {c}")));
    }
    Ok(users)
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn contacts_need_sane_addresses() {
        let c = |channel: &str, address: &str| Contact {
            name: "ada".into(),
            full_name: String::new(),
            channels: vec![super::super::model::ContactChannel { channel: channel.into(), address: address.into() }],
        };
        assert!(validate_contact(&c("voice", "+15550100")).is_ok());
        assert!(validate_contact(&c("sms", "555-0100")).unwrap_err().message.contains("E.164"));
        assert!(validate_contact(&c("pigeon", "x")).unwrap_err().message.contains("unknown channel"));
        assert!(validate_contact(&c("email", "ada@example.com")).is_ok());
    }
}
