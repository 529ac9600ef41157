//! Real local peers for the built-in plugins: an HTTP(S) server, TCP
//! banner and echo servers, a DNS server, a fake Twilio and a webhook sink.
//! Every server binds 127.0.0.1:0 and lives as long as the test's runtime.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RData, Record};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

pub async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// The routes the HTTP check is tested against.
pub fn test_site() -> Router {
    Router::new()
        .route("/", get(|| async { "Welcome to the test server" }))
        .route(
            "/status/{code}",
            get(|Path(code): Path<u16>| async move { (StatusCode::from_u16(code).unwrap(), format!("status {code}")) }),
        )
        .route("/json", get(|| async { axum::Json(serde_json::json!({"status": "ok", "queue": {"depth": 7}})) }))
        .route("/redirect", get(|| async { Redirect::to("/") }))
        .route("/redirect-loop", get(|| async { Redirect::to("/redirect-loop") }))
        .route("/redirect-away", get(|| async { Redirect::to("http://elsewhere.example/") }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "finally"
            }),
        )
        .route(
            "/big",
            get(|| async {
                let mut body = "a".repeat(2 << 20);
                body.push_str("needle");
                body
            }),
        )
        .route(
            "/echo",
            any(|method: axum::http::Method, headers: HeaderMap, body: String| async move {
                let headers: HashMap<String, String> =
                    headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
                axum::Json(serde_json::json!({"method": method.as_str(), "headers": headers, "body": body}))
            }),
        )
}

pub async fn http_server(app: Router) -> SocketAddr {
    let (listener, addr) = listener().await;
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A certificate authority the tests trust or not, and the certificates
/// it issues.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    pub ca_file: tempfile::NamedTempFile,
}

pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Tocsin Test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca_file.path(), ca.pem()).unwrap();
        Self { ca, ca_file }
    }

    /// A certificate for `localhost` and 127.0.0.1, valid from a day ago
    /// until `days` from now (negative: already expired).
    pub fn leaf(&self, names: &[&str], days: i64) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            })
            .collect();
        params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(days.abs() + 30);
        params.not_after = OffsetDateTime::now_utc() + time::Duration::days(days);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf {
            chain: vec![cert.der().clone(), self.ca.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// A self-signed certificate no one trusts.
    pub fn self_signed(names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

fn acceptor(leaf: Leaf) -> tokio_rustls::TlsAcceptor {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain, leaf.key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

pub async fn https_server(app: Router, leaf: Leaf) -> SocketAddr {
    let (listener, addr) = listener().await;
    let acceptor = acceptor(leaf);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// Greets every connection with `banner`, then echoes what it receives.
pub async fn tcp_server(banner: &'static str, tls: Option<Leaf>) -> SocketAddr {
    let (listener, addr) = listener().await;
    let acceptor = tls.map(acceptor);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            greet_and_echo(tls, banner).await
                        }
                    }
                    None => greet_and_echo(tcp, banner).await,
                }
            });
        }
    });
    addr
}

async fn greet_and_echo(mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin, banner: &str) {
    if stream.write_all(banner.as_bytes()).await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A port with nothing listening.
pub async fn closed_port() -> SocketAddr {
    let (listener, addr) = listener().await;
    drop(listener);
    addr
}

/// An authoritative DNS server over UDP answering from `records`;
/// other names get NXDOMAIN.
pub async fn dns_server(records: Vec<Record>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else { return };
            let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
            let mut response = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
            response.metadata.authoritative = true;
            response.metadata.recursion_desired = query.metadata.recursion_desired;
            let mut known = false;
            for q in &query.queries {
                response.add_query(q.clone());
                for r in records.iter().filter(|r| r.name == *q.name()) {
                    known = true;
                    if r.record_type() == q.query_type() {
                        response.add_answer(r.clone());
                    }
                }
            }
            if !known {
                response.metadata.response_code = ResponseCode::NXDomain;
            }
            let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

pub fn record(name: &str, ttl: u32, rdata: RData) -> Record {
    Record::from_rdata(Name::from_ascii(name).unwrap(), ttl, rdata)
}

pub fn a(name: &str, ip: &str) -> Record {
    record(name, 300, RData::A(ip.parse::<std::net::Ipv4Addr>().unwrap().into()))
}

/// What a fake gateway received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

pub type Inbox = Arc<Mutex<Vec<Received>>>;

/// A gateway that records every request and answers `status` with `body`.
pub async fn recording_gateway(status: u16, body: &'static str) -> (SocketAddr, Inbox) {
    let inbox: Inbox = Arc::default();
    let app = Router::new()
        .fallback(post(
            |State((inbox, status, body)): State<(Inbox, u16, &'static str)>,
             uri: axum::http::Uri,
             headers: HeaderMap,
             text: String| async move {
                let headers =
                    headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
                inbox.lock().unwrap().push(Received { path: uri.path().to_string(), headers, body: text });
                let mut response: Response = body.into_response();
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                response.headers_mut().insert("content-type", "application/json".parse().unwrap());
                response
            },
        ))
        .with_state((inbox.clone(), status, body));
    (http_server(app).await, inbox)
}

/// A stand-in for Twilio's REST API: basic auth with the account's SID and
/// token, form-encoded `Calls.json` and `Messages.json`, Twilio's JSON
/// bodies and error codes. Numbers starting `+1555000` fail as invalid.
pub struct FakeTwilio {
    pub addr: SocketAddr,
    pub requests: Requests,
}

/// What the fake Twilio received: the resource and the decoded form.
pub type Requests = Arc<Mutex<Vec<(String, HashMap<String, String>)>>>;

pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_TOKEN: &str = "test-token";

pub async fn fake_twilio(outage: bool) -> FakeTwilio {
    let requests: Requests = Arc::default();
    async fn create(
        State((requests, outage)): State<(Requests, bool)>,
        Path((sid, resource)): Path<(String, String)>,
        headers: HeaderMap,
        axum::Form(form): axum::Form<HashMap<String, String>>,
    ) -> Response {
        use base64::Engine as _;
        let error = |status: u16, code: u32, message: &str| {
            let body = serde_json::json!({"code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status});
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
        };
        if outage {
            return error(503, 20500, "Service unavailable");
        }
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}"))
        );
        if sid != TWILIO_SID || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return error(401, 20003, "Authenticate");
        }
        requests.lock().unwrap().push((resource.clone(), form.clone()));
        let to = form.get("To").cloned().unwrap_or_default();
        if !to.starts_with('+') || to.starts_with("+1555000") {
            return error(400, 21211, &format!("The 'To' number {to} is not a valid phone number."));
        }
        let (prefix, required) = match resource.as_str() {
            "Calls.json" => ("CA", ["Twiml", "From"]),
            "Messages.json" => ("SM", ["Body", "From"]),
            _ => return error(404, 20404, "The requested resource was not found"),
        };
        if let Some(missing) = required.iter().find(|f| !form.contains_key(**f)) {
            return error(400, 21201, &format!("No '{missing}' specified"));
        }
        let n = requests.lock().unwrap().len();
        let sid = format!("{prefix}{:032x}", n);
        let body = serde_json::json!({"sid": sid, "account_sid": TWILIO_SID, "to": to, "from": form["From"], "status": "queued"});
        (StatusCode::CREATED, axum::Json(body)).into_response()
    }
    let app = Router::new()
        .route("/2010-04-01/Accounts/{sid}/{resource}", post(create))
        .with_state((requests.clone(), outage));
    FakeTwilio { addr: http_server(app).await, requests }
}

/// An HTTP/1.0-style server: reads the request, answers, and closes the
/// connection (as `python3 -m http.server` does).
pub async fn closing_http_server(body: &'static str) -> SocketAddr {
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut request = Vec::new();
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head =
                    format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(body.as_bytes()).await;
            });
        }
    });
    addr
}
