//! Secrets in plugin configs (gateways, checks): hidden when read back,
//! kept when a client sends the hidden form back.
//!
//! What counts as secret: a string field whose name hints at one (`token`,
//! `password`, `key`, ...) or that a plugin's config schema marks
//! `"writeOnly": true`, every value of a `headers` object (an
//! `Authorization` header is as good as a password), and the user-info,
//! path and query of a URL (a Slack-style webhook is a secret path). A URL
//! is shown as `scheme://host[:port]/***`, so a reader still sees where it
//! goes.
//!
//! Sending the hidden form back keeps the stored secret, but only for the
//! same destination: a URL whose host changed, or `***` where nothing is
//! stored, is refused, so nobody can send a stored secret to a host of
//! their choosing without knowing it.

use std::collections::BTreeSet;
use std::sync::{LazyLock, RwLock};

use serde_json::Value;

const SECRET_HINTS: &[&str] = &["token", "secret", "password", "key", "credential", "signature", "authorization"];
pub const REDACTED: &str = "***";
/// Objects whose every value is secret.
const SECRET_MAPS: &[&str] = &["headers"];

/// Field names that some plugin's schema marks `"writeOnly": true`, from
/// every schema this process has seen ([`learn`]). Names, not paths: a
/// name one plugin declares secret is hidden in every config, which hides
/// too much rather than too little.
static DECLARED: LazyLock<RwLock<BTreeSet<String>>> = LazyLock::new(RwLock::default);

/// Takes note of the fields `schema` (a plugin's config schema) declares
/// secret. Called for every plugin a controller loads, stores or receives
/// from its source, before any config of it is shown.
pub fn learn(schema: &Value) {
    let mut found = Vec::new();
    declared_in(schema, &mut found);
    if found.is_empty() {
        return;
    }
    let mut declared = DECLARED.write().unwrap_or_else(|p| p.into_inner());
    declared.extend(found.into_iter().map(|name| name.to_ascii_lowercase()));
}

fn declared_in(schema: &Value, found: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(properties)) = map.get("properties") {
                for (name, property) in properties {
                    if property.get("writeOnly") == Some(&Value::Bool(true)) {
                        found.push(name.clone());
                    }
                }
            }
            map.values().for_each(|v| declared_in(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| declared_in(v, found)),
        _ => {}
    }
}

/// A field named like a secret: a hint is one of its words (`auth_token`,
/// `apiKey`) or ends it (`apikey`), so `keyword` is not one; or a field a
/// plugin's schema declared secret.
fn is_secret(field: &str) -> bool {
    let mut words = String::with_capacity(field.len() + 4);
    for c in field.chars() {
        if c.is_uppercase() {
            words.push('_');
        }
        words.push(c.to_ascii_lowercase());
    }
    let lower = field.to_ascii_lowercase();
    words.split(|c: char| !c.is_ascii_alphanumeric()).any(|word| SECRET_HINTS.contains(&word))
        || SECRET_HINTS.iter().any(|hint| lower.ends_with(hint))
        || DECLARED.read().unwrap_or_else(|p| p.into_inner()).contains(&lower)
}

/// `scheme://host[:port]/***` for a URL that carries anything beyond its
/// destination; `None` for a string that is no such URL.
fn hidden_url(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let carries = !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some();
    carries.then(|| format!("{}/{REDACTED}", url.origin().ascii_serialization()))
}

/// How a secret string is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    /// Not at all: `***`.
    Hidden,
    /// A URL: its destination only.
    Destination,
}

/// Calls `f` on every secret string of a config: what [`redact`] hides and
/// what `secrets` seals. A sealed value counts as secret wherever it is.
pub fn for_each_secret(config: &mut Value, f: &mut dyn FnMut(&mut String, Shown)) {
    visit(config, false, f)
}

fn visit(value: &mut Value, secret: bool, f: &mut dyn FnMut(&mut String, Shown)) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let inner = secret || SECRET_MAPS.contains(&k.to_ascii_lowercase().as_str());
                match v {
                    Value::String(text) if inner || is_secret(k) => f(text, Shown::Hidden),
                    _ => visit(v, inner, f),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| visit(v, secret, f)),
        Value::String(text) if secret || crate::secrets::is_sealed(text) => f(text, Shown::Hidden),
        Value::String(text) if hidden_url(text).is_some() => f(text, Shown::Destination),
        _ => {}
    }
}

/// The config with its secrets hidden (an empty one stays empty: it hides
/// nothing).
pub fn redact(config: &Value) -> Value {
    let mut shown = config.clone();
    for_each_secret(&mut shown, &mut |text, how| {
        if !text.is_empty() {
            *text = match how {
                Shown::Hidden => REDACTED.to_string(),
                Shown::Destination => hidden_url(text).unwrap_or_else(|| REDACTED.to_string()),
            };
        }
    });
    shown
}

/// Puts the stored secrets back where `new` holds their hidden form.
/// Refuses (naming the field) a hidden form that no stored secret stands
/// behind, or a hidden URL that now names another destination.
pub fn restore(new: &mut Value, old: Option<&Value>) -> Result<(), String> {
    restore_at(new, old, "config")
}

/// [`restore`] for a contact's channels (a webhook channel's URL is shown
/// hidden like a gateway's).
pub fn restore_channels(new: &mut Value, old: Option<&Value>) -> Result<(), String> {
    restore_at(new, old, "channels")
}

/// The fields of an object, as stored, that may hold secrets: a plugin
/// config, a contact's channels.
const SECRET_FIELDS: &[&str] = &["config", "channels"];

/// An object (a check, gateway or contact, as the API, the audit trail
/// or a sync report shows it) with the secrets in its fields hidden.
pub fn hide_in(value: &mut Value) {
    for field in SECRET_FIELDS {
        if let Some(inner) = value.get_mut(*field) {
            *inner = redact(inner);
        }
    }
}

fn restore_at(new: &mut Value, old: Option<&Value>, at: &str) -> Result<(), String> {
    match new {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                restore_at(v, old.and_then(|o| o.get(k.as_str())), &format!("{at}.{k}"))?;
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                restore_at(v, old.and_then(|o| o.get(i)), &format!("{at}[{i}]"))?;
            }
        }
        Value::String(text) if crate::secrets::is_sealed(text) => {
            return Err(format!(
                "{at}: values starting with `{}` are sealed secrets, which only Tocsin writes: send the secret itself",
                crate::secrets::PREFIX
            ));
        }
        Value::String(text) if text == REDACTED => match old.and_then(Value::as_str) {
            Some(stored) => *text = stored.to_string(),
            None => {
                return Err(format!(
                    "{at}: `{REDACTED}` keeps a stored secret, and none is stored here: send the value"
                ));
            }
        },
        Value::String(text) if text.ends_with(&format!("/{REDACTED}")) && hidden_url(text).is_some() => {
            match old.and_then(Value::as_str) {
                Some(stored) if hidden_url(stored).as_deref() == Some(text.as_str()) => *text = stored.to_string(),
                _ => {
                    return Err(format!(
                        "{at}: `{REDACTED}` keeps a stored URL only for the same destination: send the whole URL"
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_hidden_and_kept() {
        let stored = json!({
            "account_sid": "AC1", "auth_token": "s3cret", "nested": {"api_key": "k"},
            "url": "https://hooks.slack.com/services/T000/B000/XXXX",
            "headers": {"Authorization": "Bearer abc", "X-Team": "ops"},
            "plain": "https://status.example.com/", "userinfo": "https://u:p@example.com/",
        });
        let shown = redact(&stored);
        assert_eq!(
            shown,
            json!({
                "account_sid": "AC1", "auth_token": "***", "nested": {"api_key": "***"},
                "url": "https://hooks.slack.com/***",
                "headers": {"Authorization": "***", "X-Team": "***"},
                "plain": "https://status.example.com/", "userinfo": "https://example.com/***",
            })
        );
        let mut edited = shown.clone();
        edited["account_sid"] = json!("AC2");
        restore(&mut edited, Some(&stored)).unwrap();
        let mut expected = stored.clone();
        expected["account_sid"] = json!("AC2");
        assert_eq!(edited, expected);
    }

    #[test]
    fn secret_names_are_words_not_substrings() {
        for field in ["auth_token", "apiKey", "api-key", "apikey", "password", "routing_key", "Authorization", "secret"]
        {
            assert!(is_secret(field), "{field}");
        }
        for field in ["keyword", "keys_seen", "account_sid", "from", "url", "tokenizer"] {
            assert!(!is_secret(field), "{field}");
        }
    }

    #[test]
    fn a_schema_declares_its_own_secrets() {
        let config = json!({"pager_pin": "4711", "nested": {"passphrase_x": "hunter2"}, "region": "eu"});
        assert_eq!(redact(&config), config, "nothing hints at these names");
        learn(&json!({"type": "object", "properties": {
            "pager_pin": {"type": "string", "writeOnly": true},
            "region": {"type": "string"},
            "nested": {"type": "object", "properties": {"passphrase_x": {"type": "string", "writeOnly": true}}}}}));
        assert_eq!(redact(&config), json!({"pager_pin": "***", "nested": {"passphrase_x": "***"}, "region": "eu"}));
    }

    #[test]
    fn a_hidden_secret_goes_nowhere_new() {
        let stored = json!({"url": "https://hooks.slack.com/services/T000/B000/XXXX", "headers": {}});
        let mut moved = json!({"url": "https://attacker.example/***"});
        assert!(restore(&mut moved, Some(&stored)).unwrap_err().contains("config.url"));
        let mut invented = json!({"url": "https://hooks.slack.com/***", "headers": {"Authorization": "***"}});
        assert!(restore(&mut invented, Some(&stored)).unwrap_err().contains("config.headers.Authorization"));
        let mut new_url = json!({"url": "https://attacker.example/hook"});
        restore(&mut new_url, Some(&stored)).unwrap();
        assert_eq!(new_url["url"], "https://attacker.example/hook", "a whole new URL is the sender's own");
    }
}
