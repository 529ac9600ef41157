//! A fake of Twilio's REST API for alerting tests: it records every call
//! and message request (the form Twilio would get) and answers with the
//! status it was started with, in Twilio's JSON. It runs on a thread of its
//! own, so sync and async tests alike can use it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path};
use axum::http::StatusCode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

/// One request: the resource (`Calls`, `Messages`) and its form fields.
#[derive(Clone, Debug)]
pub struct Received {
    pub resource: String,
    pub form: HashMap<String, String>,
}

impl Received {
    /// The Gather action of a call's TwiML: where Twilio posts the key press.
    pub fn callback(&self) -> String {
        let twiml = &self.form["Twiml"];
        let start = twiml.find("action=\"").expect("a Gather action") + 8;
        let end = start + twiml[start..].find('"').expect("a closing quote");
        twiml[start..end].replace("&amp;", "&")
    }

    /// The key press Twilio posts to [`Received::callback`]: the form body
    /// and its `X-Twilio-Signature`, made as Twilio makes it (Base64 of
    /// HMAC-SHA1 keyed by the auth token, over the URL and then each field's
    /// name and value, sorted by name).
    pub fn key_press(&self, digits: &str) -> (String, String) {
        let mut fields = vec![
            ("AccountSid".to_string(), ACCOUNT_SID.to_string()),
            ("CallSid".to_string(), "CA0001".to_string()),
            ("Digits".to_string(), digits.to_string()),
            ("From".to_string(), self.form.get("To").cloned().unwrap_or_default()),
        ];
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
        fields.sort();
        let mut mac = Hmac::<Sha1>::new_from_slice(AUTH_TOKEN.as_bytes()).expect("any key length");
        mac.update(self.callback().as_bytes());
        for (name, value) in &fields {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
        (body, base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The fake account's SID, in [`FakeTwilio::gateway`]'s config.
pub const ACCOUNT_SID: &str = "AC123";
/// The fake account's auth token, in [`FakeTwilio::gateway`]'s config.
pub const AUTH_TOKEN: &str = "secret-token";

#[derive(Clone)]
pub struct FakeTwilio {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeTwilio {
    /// Answers every request with `status` (201 is Twilio's "created").
    pub fn start(status: u16) -> FakeTwilio {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = received.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(async move {
                let app = axum::Router::new().route(
                    "/2010-04-01/Accounts/{sid}/{resource}",
                    axum::routing::post(
                        move |Path((_sid, resource)): Path<(String, String)>,
                              Form(form): Form<HashMap<String, String>>| {
                            let log = log.clone();
                            async move {
                                let n = {
                                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                                    let resource = resource.trim_end_matches(".json").to_string();
                                    log.push(Received { resource, form });
                                    log.len()
                                };
                                let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                                let body = if code.is_success() {
                                    json!({"sid": format!("SM{n:032}"), "status": "queued"})
                                } else {
                                    json!({"code": 20500, "message": "Internal Server Error", "status": status})
                                };
                                (code, axum::Json(body))
                            }
                        },
                    ),
                );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
                tx.send(listener.local_addr().expect("an address")).expect("the test waits");
                let _ = axum::serve(listener, app).await;
            });
        });
        let addr = rx.recv().expect("the fake's address");
        FakeTwilio { url: format!("http://{addr}"), received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A Tocsin gateway of the `twilio` plugin pointed at this fake.
    pub fn gateway(&self, name: &str) -> Value {
        json!({"name": name, "plugin": "twilio", "timeout": "5s",
               "config": {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from": "+15550000", "api_base": self.url}})
    }
}
