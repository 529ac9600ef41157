//! Grants a notifier's config implies: a gateway configured with
//! `url = "https://hooks.example.com/x"` may reach that host without a
//! separate allowlist entry, and so may a provider's default `api_base`.

use serde_json::Value;

use super::Grant;

/// The hosts a gateway's config names (URLs, `host`): its notifier may
/// reach them without a separate allowlist entry.
pub fn implied_grants(config: &Value) -> Vec<Grant> {
    let mut grants = Vec::new();
    walk(config, None, &mut grants);
    grants
}

/// The defaults a config schema declares for its top-level fields (such as
/// a provider's `api_base`), as a config object.
pub fn schema_defaults(schema: &Value) -> Value {
    let defaults = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .filter_map(|(k, p)| Some((k.clone(), p.get("default")?.clone())))
                .collect::<serde_json::Map<_, _>>()
        })
        .unwrap_or_default();
    Value::Object(defaults)
}

fn walk(value: &Value, key: Option<&str>, grants: &mut Vec<Grant>) {
    match value {
        Value::String(s) => {
            let host = match url::Url::parse(s) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => url.host_str().map(str::to_string),
                _ if key == Some("host") => Some(s.clone()),
                _ => None,
            };
            if let Some(grant) = host.and_then(|h| h.parse::<Grant>().ok()) {
                grants.push(grant);
            }
        }
        Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, Some(k), grants)),
        Value::Array(items) => items.iter().for_each(|v| walk(v, key, grants)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn gateway_configs_grant_their_hosts() {
        let grants = implied_grants(&json!({"url": "http://127.0.0.1:9000/hook", "api_base": "https://api.twilio.com",
                                             "host": "smtp.example.com", "from": "+1555"}));
        assert_eq!(grants.len(), 3, "{grants:?}");
    }

    #[test]
    fn schema_defaults_grant_the_default_endpoint() {
        let schema = json!({"properties": {"api_base": {"type": "string", "default": "https://api.twilio.com"},
                                           "from": {"type": "string"}}});
        assert_eq!(implied_grants(&schema_defaults(&schema)), vec!["api.twilio.com".parse::<Grant>().unwrap()]);
    }
}
