//! The `email` notifier: sends the notification as a plain-text email over
//! SMTP (RFC 5321), to the contact's address.
//!
//! A plugin has no sockets: the SMTP conversation goes through the host's
//! `tcp` interface, which can speak TLS from the first byte but cannot
//! upgrade a plain connection. So this plugin supports implicit TLS
//! (SMTPS, usually port 465) or a plain connection (a local relay on port
//! 25 or 587), and **not STARTTLS**. Credentials are only sent over TLS
//! unless `allow_plaintext_auth` says the network is trusted.
//!
//! The conversation: the 220 greeting, `EHLO` (or `HELO` when the server
//! does not know `EHLO`), `AUTH PLAIN` or `AUTH LOGIN` when a username is
//! configured, `MAIL FROM`, `RCPT TO`, `DATA` with the message dot-stuffed
//! and ending in `<CRLF>.<CRLF>`, then `QUIT`. Multi-line replies
//! (`250-...`) are read whole. The message itself (RFC 5322 headers, MIME,
//! quoted-printable or base64 bodies, RFC 2047 encoded words) is built by
//! `mail-builder`; its `Message-ID` is derived from the notification's id,
//! so a relay or a mailbox that de-duplicates by it sees one message per
//! notification however often it is retried.
//!
//! Failure mapping:
//! - no connection, a closed connection or a timeout: retry, fail over;
//! - a 4xx reply (temporary): retry, fail over;
//! - a 5xx reply (permanent): no retry, fail over, except a 5xx to
//!   `RCPT TO` whose enhanced status code is `5.1.x` (bad mailbox, unknown
//!   user, bad domain): that is about the address, which no other gateway
//!   will deliver to either, so no failover. A 550 without an enhanced code
//!   is ambiguous (unknown user or "relaying denied" by this relay), so it
//!   fails over.
//! - anything else the server says that SMTP does not allow: no retry,
//!   fail over.

use std::fmt::Write as _;

use base64::Engine as _;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::text::Text;
use tocsin_plugin_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("dependentRequired" = {"username": ["password"], "password": ["username"]}))]
struct Config {
    /// The SMTP server: a relay or a submission server.
    #[schemars(length(min = 1))]
    host: String,
    /// 25 for a relay, 465 for submission over implicit TLS.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1))]
    port: u16,
    /// Speak TLS from the first byte (SMTPS, port 465). STARTTLS is not
    /// supported: use implicit TLS or a plain relay on a trusted network.
    #[serde(default)]
    tls: bool,
    /// Verify the server's certificate (with `tls`).
    #[serde(default = "yes")]
    verify_tls: bool,
    /// Authenticate with AUTH PLAIN or AUTH LOGIN (whichever the server
    /// offers, PLAIN first).
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// Send the username and password over a connection without TLS. Only
    /// for a relay on a network you trust.
    #[serde(default)]
    allow_plaintext_auth: bool,
    /// The sender: the envelope's `MAIL FROM` and the `From` header.
    #[schemars(regex(pattern = r"^[^@\s<>]+@[^@\s<>]+$"))]
    from: String,
    /// The sender's display name, for example `Tocsin`.
    #[serde(default)]
    from_name: Option<String>,
    /// Put before every subject; empty for none.
    #[serde(default = "default_subject_prefix")]
    subject_prefix: String,
    /// The name to greet the server with (`EHLO name`); defaults to the
    /// domain of `from`.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[A-Za-z0-9.\-\[\]:]+$"))]
    helo_name: Option<String>,
}

fn default_port() -> u16 {
    25
}
fn default_subject_prefix() -> String {
    "[Tocsin]".into()
}
fn yes() -> bool {
    true
}

/// The most a single reply may take; a server that says more is broken.
const MAX_REPLY_BYTES: usize = 64 << 10;

struct Email;

impl Notifier for Email {
    fn describe() -> PluginInfo {
        PluginInfo::notifier::<Config>(
            "email",
            env!("CARGO_PKG_VERSION"),
            "Emails a contact through an SMTP server (implicit TLS or plain; no STARTTLS)",
        )
    }

    fn deliver(config: String, n: Notification) -> Result<Delivered, Failure> {
        let config: Config = gateway_config(&config)?;
        let to = n.contact.address.trim();
        if !is_address(to) {
            // No gateway can deliver to it: this is the contact's data.
            return Err(Failure {
                message: format!("{to:?} is not an email address this gateway can send to (ASCII local@domain)"),
                retry: false,
                failover: false,
            });
        }
        let credentials = match (&config.username, &config.password) {
            (Some(user), Some(password)) => Some((user.as_str(), password.as_str())),
            (None, None) => None,
            _ => return Err(permanent("config: username and password go together".into())),
        };
        if credentials.is_some() && !config.tls && !config.allow_plaintext_auth {
            return Err(permanent(
                "refusing to send the SMTP password without TLS: set `tls` (implicit TLS, usually port 465; \
                 STARTTLS is not supported) or `allow_plaintext_auth`"
                    .into(),
            ));
        }
        let (message_id, message) = build_message(&config, &n, to);

        let server = format!("the SMTP server {}:{}", config.host, config.port);
        let options =
            tcp::ConnectOptions { timeout_ms: 0, tls: config.tls, verify_tls: config.verify_tls, server_name: None };
        let conn = tcp::connect(&config.host, config.port, &options).map_err(|e| net_failure(&server, &e))?;
        let mut smtp = Smtp { conn, buffer: Vec::new(), server };

        let greeting = smtp.reply()?;
        smtp.expect("the greeting", greeting, &[220])?;
        let helo_name = config.helo_name.clone().unwrap_or_else(|| domain_of(&config.from).to_string());
        let extensions = smtp.hello(&helo_name)?;
        if let Some((user, password)) = credentials {
            smtp.authenticate(&extensions, user, password)?;
        }
        smtp.command("MAIL FROM", &format!("MAIL FROM:<{}>", config.from), &[250])?;
        let reply = smtp.send(&format!("RCPT TO:<{to}>"))?;
        smtp.expect_recipient(reply, to)?;
        smtp.command("DATA", "DATA", &[354])?;
        smtp.write(&dot_stuff(&message))?;
        let reply = smtp.reply()?;
        let accepted = smtp.expect("the end of the message", reply, &[250])?;
        // The message is the server's from here on: a failed QUIT changes
        // nothing about its delivery.
        if smtp.write(b"QUIT\r\n").is_ok() {
            let _ = smtp.reply();
        }
        Ok(Delivered { message_id, detail: accepted.summary() })
    }
}

/// One SMTP conversation over a host `tcp` connection.
struct Smtp {
    conn: tcp::Connection,
    /// Bytes received and not yet part of a reply.
    buffer: Vec<u8>,
    /// `the SMTP server host:port`, for messages.
    server: String,
}

/// A complete reply: its code and the text of each line.
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// `550 5.1.1 <x@example.com>: Recipient address rejected`, one line.
    fn summary(&self) -> String {
        let text: String = self.lines.join(" ").chars().take(300).collect();
        format!("{} {}", self.code, text.trim()).trim_end().to_string()
    }

    /// The RFC 3463 enhanced status code the text starts with, `5.1.1`.
    fn enhanced(&self) -> Option<(u8, u16, u16)> {
        let first = self.lines.first()?.split_whitespace().next()?;
        let mut parts = first.split('.');
        let class = parts.next()?.parse().ok()?;
        let subject = parts.next()?.parse().ok()?;
        let detail = parts.next()?.parse().ok()?;
        (parts.next().is_none() && matches!(class, 2 | 4 | 5)).then_some((class, subject, detail))
    }
}

impl Smtp {
    fn write(&mut self, data: &[u8]) -> Result<(), Failure> {
        self.conn.send(data).map_err(|e| net_failure(&self.server, &e))
    }

    fn send(&mut self, line: &str) -> Result<Reply, Failure> {
        self.write(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// Sends `line` and requires one of `codes`; `stage` names the command
    /// in messages (never the line itself, which may hold credentials).
    fn command(&mut self, stage: &str, line: &str, codes: &[u16]) -> Result<Reply, Failure> {
        let reply = self.send(line)?;
        self.expect(stage, reply, codes)
    }

    fn expect(&self, stage: &str, reply: Reply, codes: &[u16]) -> Result<Reply, Failure> {
        if codes.contains(&reply.code) {
            return Ok(reply);
        }
        let message = format!("{} answered {stage} with {}", self.server, reply.summary());
        Err(match reply.code {
            400..=499 => Failure { message, retry: true, failover: true },
            500..=599 => Failure { message, retry: false, failover: true },
            _ => Failure { message: format!("{message} (not an SMTP reply that fits)"), retry: false, failover: true },
        })
    }

    /// A `5.1.x` rejection of the recipient is about the address itself, so
    /// no other gateway will do better (see the module's doc).
    fn expect_recipient(&self, reply: Reply, to: &str) -> Result<Reply, Failure> {
        let bad_address = reply.code >= 500 && matches!(reply.enhanced(), Some((5, 1, _)));
        let mut result = self.expect(&format!("RCPT TO <{to}>"), reply, &[250, 251]);
        if let Err(failure) = &mut result
            && bad_address
        {
            failure.failover = false;
        }
        result
    }

    /// One whole reply: continuation lines (`250-...`) up to the last
    /// (`250 ...`).
    fn reply(&mut self) -> Result<Reply, Failure> {
        let mut code = None;
        let mut lines = Vec::new();
        loop {
            while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim_end_matches(['\r', '\n']);
                let bytes = line.as_bytes();
                let this_code = match bytes.get(..3) {
                    Some(digits) if digits.iter().all(u8::is_ascii_digit) => {
                        u16::from(digits[0] - b'0') * 100
                            + u16::from(digits[1] - b'0') * 10
                            + u16::from(digits[2] - b'0')
                    }
                    _ => return Err(self.garbled(line)),
                };
                if *code.get_or_insert(this_code) != this_code {
                    return Err(self.garbled(line));
                }
                lines.push(line.get(4..).unwrap_or("").to_string());
                match bytes.get(3) {
                    Some(b'-') => continue,
                    None | Some(b' ') => return Ok(Reply { code: this_code, lines }),
                    Some(_) => return Err(self.garbled(line)),
                }
            }
            if self.buffer.len() > MAX_REPLY_BYTES || lines.len() > 1000 {
                return Err(Failure {
                    message: format!("{} sent a reply longer than {MAX_REPLY_BYTES} bytes", self.server),
                    retry: false,
                    failover: true,
                });
            }
            let chunk = self.conn.receive(4096, 0).map_err(|e| net_failure(&self.server, &e))?;
            if chunk.is_empty() {
                return Err(Failure {
                    message: format!("{} closed the connection before replying", self.server),
                    retry: true,
                    failover: true,
                });
            }
            self.buffer.extend_from_slice(&chunk);
        }
    }

    fn garbled(&self, line: &str) -> Failure {
        let line: String = line.chars().take(200).collect();
        Failure {
            message: format!("{} does not speak SMTP: it sent {line:?}", self.server),
            retry: false,
            failover: true,
        }
    }

    /// `EHLO`, falling back to `HELO` for a server that does not know it;
    /// returns the extensions (`AUTH PLAIN LOGIN`, `8BITMIME`, ...).
    fn hello(&mut self, name: &str) -> Result<Vec<String>, Failure> {
        let reply = self.send(&format!("EHLO {name}"))?;
        if reply.code == 250 {
            return Ok(reply.lines.into_iter().skip(1).collect());
        }
        if (500..=504).contains(&reply.code) || reply.code == 550 {
            self.command("HELO", &format!("HELO {name}"), &[250])?;
            return Ok(Vec::new());
        }
        self.expect("EHLO", reply, &[250]).map(|_| Vec::new())
    }

    fn authenticate(&mut self, extensions: &[String], user: &str, password: &str) -> Result<(), Failure> {
        // `AUTH PLAIN LOGIN`, or the pre-standard `AUTH=PLAIN LOGIN`.
        let mechanisms: Vec<String> = extensions
            .iter()
            .filter_map(|e| {
                let upper = e.to_ascii_uppercase();
                upper.strip_prefix("AUTH").filter(|rest| rest.starts_with([' ', '='])).map(|rest| rest[1..].to_string())
            })
            .flat_map(|rest| rest.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect();
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        if mechanisms.iter().any(|m| m == "PLAIN") {
            let token = b64(format!("\0{user}\0{password}").as_bytes());
            self.command("AUTH PLAIN", &format!("AUTH PLAIN {token}"), &[235])?;
        } else if mechanisms.iter().any(|m| m == "LOGIN") {
            self.command("AUTH LOGIN", "AUTH LOGIN", &[334])?;
            self.command("AUTH LOGIN (username)", &b64(user.as_bytes()), &[334])?;
            self.command("AUTH LOGIN (password)", &b64(password.as_bytes()), &[235])?;
        } else {
            let offered = if mechanisms.is_empty() { "no AUTH at all".to_string() } else { mechanisms.join(" ") };
            return Err(Failure {
                message: format!(
                    "{} offers neither AUTH PLAIN nor AUTH LOGIN ({offered}); a username is configured",
                    self.server
                ),
                retry: false,
                failover: true,
            });
        }
        Ok(())
    }
}

/// The RFC 5322 message and its Message-ID (without the angle brackets).
fn build_message(config: &Config, n: &Notification, to: &str) -> (String, Vec<u8>) {
    let message_id = format!("{}@{}", id_left(&n.id), domain_of(&config.from));
    let from = match &config.from_name {
        Some(name) => Address::new_address(Some(one_line(name)), config.from.as_str()),
        None => Address::new_address(None::<&str>, config.from.as_str()),
    };
    let contact = one_line(&n.contact.name);
    let to_header = Address::new_address((!contact.is_empty()).then_some(contact), to);
    let mut subject = one_line(&n.title);
    if let Some(label) = event_label(n.event) {
        subject = format!("{label}: {subject}");
    }
    if !config.subject_prefix.is_empty() {
        subject = format!("{} {subject}", one_line(&config.subject_prefix));
    }
    let message = MessageBuilder::new()
        .from(from)
        .to(to_header)
        .subject(subject)
        .message_id(message_id.clone())
        // RFC 3834: vacation responders and the like must not answer.
        .header("Auto-Submitted", Text::new("auto-generated"))
        .header("X-Tocsin-Incident", Text::new(one_line(&n.incident)))
        .header("X-Tocsin-Event", Text::new(event_name(n.event)))
        .text_body(body(n))
        .write_to_vec()
        .unwrap_or_default();
    (message_id, message)
}

fn body(n: &Notification) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{}\n", n.title.trim());
    if !n.message.trim().is_empty() {
        let _ = writeln!(text, "{}\n", n.message.trim_end());
    }
    let _ = writeln!(text, "Event: {}", event_name(n.event));
    if !n.severity.is_empty() {
        let _ = writeln!(text, "Severity: {}", n.severity);
    }
    if !n.source.is_empty() {
        let _ = writeln!(text, "Source: {}", n.source);
    }
    let _ = writeln!(text, "Incident: {}", n.incident);
    let links = [
        ("Accept", &n.links.accept_url),
        ("Reject", &n.links.reject_url),
        ("View the incident", &n.links.incident_url),
    ];
    if links.iter().any(|(_, url)| url.is_some()) {
        text.push('\n');
    }
    for (label, url) in links {
        if let Some(url) = url {
            let _ = writeln!(text, "{label}: {url}");
        }
    }
    // No "-- " signature separator: its trailing blank alone would make
    // the whole body quoted-printable.
    let _ = write!(text, "\nSent by Tocsin to {}.\n", one_line(&n.contact.name));
    text
}

/// The message as SMTP `DATA` wants it: CRLF line endings, a `.` doubled
/// at the start of a line (RFC 5321 4.5.2), and the `<CRLF>.<CRLF>` end.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut line_start = true;
    for (i, &b) in message.iter().enumerate() {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        match b {
            b'\n' if i == 0 || message[i - 1] != b'\r' => out.extend_from_slice(b"\r\n"),
            b'\r' if message.get(i + 1) != Some(&b'\n') => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
        line_start = b == b'\n' || (b == b'\r' && message.get(i + 1) != Some(&b'\n'));
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The notification id as the left part of a Message-ID: RFC 5322 `atext`
/// is kept, anything else becomes `=XX`, so different ids never collide.
fn id_left(id: &str) -> String {
    let mut out = String::from("tocsin");
    if !id.is_empty() {
        out.push('.');
    }
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$%&'*+-/?^_`{|}~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "={b:02X}");
        }
    }
    out
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, domain)| domain).filter(|d| !d.is_empty()).unwrap_or("localhost")
}

/// `local@domain`, ASCII, with nothing that would break the SMTP command
/// line it goes into.
fn is_address(address: &str) -> bool {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && address.bytes().all(|b| b.is_ascii_graphic() && !b"<>()[],;:\"\\".contains(&b))
                && address.bytes().filter(|&b| b == b'@').count() == 1
        }
        None => false,
    }
}

/// Header text on one line: newlines and runs of blanks become one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn net_failure(server: &str, e: &NetError) -> Failure {
    Failure { message: format!("{server}: {}", e.describe()), retry: e.is_target_failure(), failover: true }
}

/// A problem with this gateway's configuration: retrying will not fix it,
/// another gateway may work.
fn permanent(message: String) -> Failure {
    Failure { message, retry: false, failover: true }
}

export_notifier!(Email);
