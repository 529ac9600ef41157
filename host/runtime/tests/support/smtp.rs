//! A real SMTP server for the email notifier's tests. The protocol is the
//! `mailin` crate's (command parsing, the state machine, multi-line EHLO
//! replies, AUTH PLAIN and LOGIN, DATA and its dot-unstuffing); this module
//! only gives it sockets, plain or implicit TLS, and records what arrived.
//! Sessions run on plain threads because `mailin`'s sessions are not `Send`
//! across an `.await`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin::{Action, AuthMechanism, Handler, Response, SessionBuilder, response};

use super::servers::Leaf;

/// One message as the server received it.
#[derive(Clone, Debug, Default)]
pub struct Mail {
    /// The name the client greeted with (`EHLO name`).
    pub helo: String,
    /// The user that authenticated, if any.
    pub user: Option<String>,
    /// The envelope: `MAIL FROM` and every accepted `RCPT TO`.
    pub from: String,
    pub to: Vec<String>,
    /// The message after dot-unstuffing, CRLF line endings kept.
    pub data: String,
}

impl Mail {
    /// The value of the first header named `name` (unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            match &mut value {
                Some(v) if line.starts_with([' ', '\t']) => v.push_str(line),
                Some(_) => break,
                None => {
                    if let Some((n, v)) = line.split_once(':')
                        && n.eq_ignore_ascii_case(name)
                    {
                        value = Some(v.trim_start().to_string());
                    }
                }
            }
        }
        value
    }

    /// The body, after the blank line that ends the headers.
    pub fn body(&self) -> &str {
        self.data.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or("")
    }
}

#[derive(Default)]
pub struct SmtpOptions {
    /// Speak TLS from the first byte (SMTPS).
    pub tls: Option<Leaf>,
    /// Require AUTH with these mechanisms and this username and password.
    pub auth: Option<(Vec<AuthMechanism>, &'static str, &'static str)>,
    /// Offer AUTH without TLS.
    pub plaintext_auth: bool,
    /// Recipients refused at `RCPT TO`, with the code and text of the reply.
    pub reject: Vec<(&'static str, u16, &'static str)>,
}

pub struct SmtpServer {
    pub addr: SocketAddr,
    pub mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpServer {
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

struct Shared {
    mails: Arc<Mutex<Vec<Mail>>>,
    credentials: Option<(&'static str, &'static str)>,
    reject: Vec<(&'static str, u16, &'static str)>,
}

/// `mailin`'s callbacks: record the envelope and the data, refuse the
/// recipients the test asked for, check credentials.
struct Recorder {
    shared: Arc<Shared>,
    current: Mail,
}

impl Recorder {
    fn login(&mut self, user: &str, password: &str) -> Response {
        match self.shared.credentials {
            Some((u, p)) if u == user && p == password => {
                self.current.user = Some(user.to_string());
                response::AUTH_OK
            }
            _ => Response::custom(535, "5.7.8 Authentication credentials invalid".into()),
        }
    }
}

impl Handler for Recorder {
    fn helo(&mut self, _ip: IpAddr, domain: &str) -> Response {
        self.current.helo = domain.to_string();
        response::OK
    }

    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.current.from = from.to_string();
        self.current.to.clear();
        self.current.data.clear();
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        if let Some((_, code, text)) = self.shared.reject.iter().find(|(address, ..)| *address == to) {
            return Response::custom(*code, text.to_string());
        }
        self.current.to.push(to.to_string());
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.push_str(&String::from_utf8_lossy(buf));
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mut mails = self.shared.mails.lock().unwrap();
        mails.push(self.current.clone());
        Response::custom(250, format!("2.0.0 Ok: queued as Q{:04}", mails.len()))
    }

    fn auth_plain(&mut self, _authorization_id: &str, authentication_id: &str, password: &str) -> Response {
        self.login(authentication_id, password)
    }

    fn auth_login(&mut self, username: &str, password: &str) -> Response {
        self.login(username, password)
    }
}

pub fn smtp_server(options: SmtpOptions) -> SmtpServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let mut builder = SessionBuilder::new("mx.tocsin.test");
    if let Some((mechanisms, ..)) = &options.auth {
        for mechanism in mechanisms {
            builder.enable_auth(mechanism.clone());
        }
    }
    if options.plaintext_auth {
        builder.insecure_enable_plaintext_auth();
    }
    let shared = Arc::new(Shared {
        mails: mails.clone(),
        credentials: options.auth.as_ref().map(|(_, user, password)| (*user, *password)),
        reject: options.reject,
    });
    let tls = options.tls.map(|leaf| {
        Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(leaf.chain, leaf.key)
                .unwrap(),
        )
    });
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (builder, shared, tls) = (builder.clone(), shared.clone(), tls.clone());
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let peer = stream.peer_addr().map(|a| a.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
                let recorder = Recorder { shared, current: Mail::default() };
                match tls {
                    Some(config) => {
                        let Ok(connection) = rustls::ServerConnection::new(config) else { return };
                        let stream = rustls::StreamOwned::new(connection, stream);
                        serve(stream, &builder, peer, recorder, true);
                    }
                    None => serve(stream, &builder, peer, recorder, false),
                }
            });
        }
    });
    SmtpServer { addr, mails }
}

fn serve<S: Read + Write>(stream: S, builder: &SessionBuilder, peer: IpAddr, recorder: Recorder, tls: bool) {
    let mut session = builder.build(peer, recorder);
    if tls {
        // Implicit TLS: the session is encrypted from the start, so AUTH
        // may be offered.
        session.tls_active();
    }
    let mut stream = BufReader::new(stream);
    let reply = |stream: &mut BufReader<S>, response: &Response| {
        let out = stream.get_mut();
        out.write_all(&response.buffer().unwrap()).and_then(|_| out.flush()).is_ok()
    };
    if !reply(&mut stream, &session.greeting()) {
        return;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        match stream.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let response = session.process(&line);
        match response.action {
            Action::NoReply => {}
            Action::Reply => {
                if !reply(&mut stream, &response) {
                    return;
                }
            }
            Action::Close | Action::UpgradeTls => {
                reply(&mut stream, &response);
                return;
            }
        }
    }
}
