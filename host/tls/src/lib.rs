//! TLS for both of Tocsin's binaries, in one place: reading PEM files
//! ([`pem`]), the server side (its configuration, serving a router over
//! HTTPS, reloading the certificate: [`server`]), the client side (the
//! machine's trust store plus the operator's CA, an optional client
//! certificate, and what a refused certificate means: [`client`]), and a
//! throwaway CA for `tocsin dev` and the tests ([`ca`]).
//!
//! Everything uses rustls with the ring provider, named explicitly, so no
//! configuration here depends on which provider a process installed.

pub mod ca;
pub mod client;
pub mod pem;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

pub use ca::{Issued, LocalCa};
pub use client::{ClientTls, certificate_problem};
pub use server::{ServerTls, serve};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file named in the settings is missing or does not hold what it should.
    #[error("{what} {}: {reason}", path.display())]
    File { what: &'static str, path: PathBuf, reason: String },
    /// The settings do not fit together.
    #[error("{0}")]
    Settings(String),
}

impl Error {
    fn file(what: &'static str, path: &Path, reason: impl std::fmt::Display) -> Error {
        Error::File { what, path: path.to_path_buf(), reason: reason.to_string() }
    }
}

/// The `[tls]` section of a controller's or watchdog's config file (flags
/// set the same fields): what this process serves, and what it trusts when
/// it calls others.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Serve HTTPS with this certificate chain (PEM, the server's first).
    pub cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// Require clients to present a certificate signed by this CA (PEM).
    pub client_ca: Option<PathBuf>,
    /// Trust servers signed by this CA (PEM) besides the machine's trust store.
    pub ca: Option<PathBuf>,
    /// The certificate this process presents when it calls a server that requires one.
    pub client_cert: Option<PathBuf>,
    /// Its private key.
    pub client_key: Option<PathBuf>,
}

impl Settings {
    /// What to serve: `None` for plain HTTP.
    pub fn server(&self) -> Result<Option<ServerTls>, Error> {
        match (&self.cert, &self.key) {
            (None, None) if self.client_ca.is_some() => Err(Error::Settings(
                "a client CA (--client-ca, tls.client_ca) needs a server certificate and key \
                 (--tls-cert and --tls-key, tls.cert and tls.key): mutual TLS is TLS first"
                    .into(),
            )),
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => ServerTls::load(cert, key, self.client_ca.as_deref()).map(Some),
            (Some(_), None) => Err(Error::Settings(
                "a TLS certificate (--tls-cert, tls.cert) needs its private key (--tls-key, tls.key)".into(),
            )),
            (None, Some(_)) => Err(Error::Settings(
                "a TLS key (--tls-key, tls.key) needs its certificate (--tls-cert, tls.cert)".into(),
            )),
        }
    }

    /// How to call others.
    pub fn client(&self) -> Result<ClientTls, Error> {
        let identity = match (&self.client_cert, &self.client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            _ => {
                return Err(Error::Settings(
                    "a client certificate needs both --tls-client-cert and --tls-client-key \
                     (tls.client_cert and tls.client_key)"
                        .into(),
                ));
            }
        };
        ClientTls::new(self.ca.as_deref(), identity)
    }
}

/// The provider every configuration here is built with.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
