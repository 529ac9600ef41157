//! The client side: whom a Tocsin process trusts when it calls a
//! controller, a site or a watchdog, and which certificate it shows when
//! the server asks for one. Both binaries build their HTTP clients from a
//! [`ClientTls`], so every outgoing call verifies the same way.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::{CertificateError, RootCertStore};

use crate::{Error, pem, provider};

/// The machine's trust store, read once per process; Mozilla's roots when
/// it has none (a slim container).
fn machine_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if roots.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        roots
    })
}

/// The machine's trust store plus every certificate in each of `extra`
/// (the operator's CAs).
pub fn trusted_roots(extra: &[PathBuf]) -> Result<RootCertStore, Error> {
    let mut roots = machine_roots().clone();
    for path in extra {
        for cert in pem::certificates("CA certificate", path)? {
            roots.add(cert).map_err(|e| Error::file("CA certificate", path, format!("not a usable CA: {e}")))?;
        }
    }
    Ok(roots)
}

/// A client configuration: trusted roots and, for mutual TLS, a certificate.
#[derive(Clone, Debug)]
pub struct ClientTls(Arc<rustls::ClientConfig>);

impl ClientTls {
    /// Trusts the machine's store plus `ca`; presents `identity` (certificate
    /// and key files) to servers that ask for one.
    pub fn new(ca: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<ClientTls, Error> {
        let extra: Vec<PathBuf> = ca.map(Path::to_path_buf).into_iter().collect();
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(trusted_roots(&extra)?);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    pem::certificates("TLS client certificate", cert)?,
                    pem::private_key("TLS client key", key)?,
                )
                .map_err(|e| {
                    Error::file("TLS client key", key, format!("does not fit the certificate {}: {e}", cert.display()))
                })?,
        };
        Ok(ClientTls(Arc::new(config)))
    }

    /// Only the machine's trust store.
    pub fn machine() -> ClientTls {
        ClientTls::new(None, None).expect("no file to read")
    }

    /// A reqwest client builder that verifies servers with this
    /// configuration (and sends its client certificate).
    pub fn reqwest(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().tls_backend_preconfigured(rustls::ClientConfig::clone(&self.0))
    }

    pub fn rustls(&self) -> Arc<rustls::ClientConfig> {
        self.0.clone()
    }
}

impl Default for ClientTls {
    fn default() -> Self {
        ClientTls::machine()
    }
}

/// What a failed request's TLS error means for the person who sees it,
/// when its cause is TLS: a certificate the client does not trust, one the
/// server did not accept, or a server that does not speak TLS.
pub fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(explain(tls));
        }
        // An io::Error skips what it wraps in the source chain (its source
        // is the wrapped error's source): step into it instead.
        next = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn explain(e: &rustls::Error) -> String {
    use rustls::AlertDescription as Alert;
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "certificate not trusted ({e}): the server's certificate is not signed by a CA this client trusts; \
             give the CA's certificate with --ca FILE (or TOCSIN_CA, or `ca` under [tls])"
        ),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            format!("certificate not valid for this address ({e}): use a name or address the certificate lists")
        }
        rustls::Error::InvalidCertificate(_) => format!("certificate refused: {e}"),
        rustls::Error::AlertReceived(Alert::CertificateRequired | Alert::BadCertificate | Alert::UnknownCA) => {
            format!(
                "the server refused this client's certificate or wants one ({e}): give one its client CA signed \
                 with --tls-client-cert and --tls-client-key"
            )
        }
        rustls::Error::InvalidMessage(_) => format!("TLS failed ({e}): is the server speaking plain HTTP? (http://)"),
        e => format!("TLS failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LocalCa, ServerTls};

    /// An HTTPS server with a certificate `ca` signed, for 127.0.0.1.
    async fn server(dir: &Path, ca: &LocalCa) -> String {
        let issued = ca.issue(&["127.0.0.1"]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, issued.cert_pem).unwrap();
        std::fs::write(&key, issued.key_pem).unwrap();
        let tls = ServerTls::load(&cert, &key, None).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        tokio::spawn(crate::serve(listener, Some(tls), app, std::future::pending()));
        url
    }

    #[tokio::test]
    async fn a_server_of_an_untrusted_ca_is_refused_with_words_and_a_trusted_one_answers() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::new("test CA").unwrap();
        let url = server(dir.path(), &ca).await;
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.cert_pem()).unwrap();

        let stranger = ClientTls::machine().reqwest().build().unwrap();
        let error = stranger.get(&url).send().await.unwrap_err();
        let problem = certificate_problem(&error).unwrap_or_else(|| panic!("not recognised: {error:?}"));
        assert!(problem.starts_with("certificate not trusted") && problem.contains("--ca"), "{problem}");

        let trusting = ClientTls::new(Some(&ca_file), None).unwrap().reqwest().build().unwrap();
        let answer = trusting.get(&url).send().await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "hello");
    }
}
