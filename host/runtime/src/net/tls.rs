//! TLS for plugins: client configurations (verifying and not), and the
//! `tls` interface, which completes a handshake whatever the certificate
//! and reports what it found, so a check can say *why* a certificate is bad.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::bindings::network::NetError;
use crate::bindings::tls::{Certificate, InspectOptions, Report};
use crate::net::{NetSession, connect_any, ms};

pub(crate) struct TlsConfigs {
    verify: Arc<ClientConfig>,
    insecure: Arc<ClientConfig>,
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl TlsConfigs {
    /// The system's trust store (or Mozilla's roots when it has none) plus
    /// the operator's extra CAs.
    pub fn load(extra_roots: &[PathBuf]) -> Result<Self, crate::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = tocsin_tls::client::trusted_roots(extra_roots)
            .map_err(|e| crate::Error::Config(format!("extra_roots: {e}")))?;
        let roots = Arc::new(roots);
        let builder = || {
            ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
        };
        let verify = builder().with_root_certificates(roots.clone()).with_no_client_auth();
        let insecure = builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Recorder::new(&roots, &provider, false)?))
            .with_no_client_auth();
        Ok(Self { verify: Arc::new(verify), insecure: Arc::new(insecure), roots, provider })
    }

    pub fn client(&self, verify: bool) -> Arc<ClientConfig> {
        if verify { self.verify.clone() } else { self.insecure.clone() }
    }
}

pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>, NetError> {
    ServerName::try_from(name.to_string())
        .map_err(|_| NetError::Invalid(format!("{name:?} is not a valid TLS server name")))
}

/// Completes a TLS handshake over `stream`, within `deadline`.
pub(crate) async fn handshake(
    config: Arc<ClientConfig>,
    stream: TcpStream,
    name: &str,
    deadline: Instant,
) -> Result<(TlsStream<TcpStream>, f64), NetError> {
    let started = Instant::now();
    let connector = TlsConnector::from(config);
    match tokio::time::timeout_at(deadline.into(), connector.connect(server_name(name)?, stream)).await {
        Err(_) => Err(NetError::Timeout(format!("TLS handshake with {name} took too long"))),
        Ok(Err(e)) => Err(NetError::Tls(format!("{name}: {}", tls_error(&e)))),
        Ok(Ok(tls)) => Ok((tls, ms(started.elapsed()))),
    }
}

fn tls_error(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(cert)) => format!("invalid certificate: {cert:?}"),
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}

/// Accepts any certificate, remembering what real verification said.
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    /// `None`: accept without verifying (plain `verify-tls: false`).
    verdict: Option<Mutex<Option<Verdict>>>,
}

#[derive(Clone, Debug)]
struct Verdict {
    trusted: bool,
    name_matches: bool,
    error: Option<String>,
}

impl Recorder {
    fn new(roots: &Arc<RootCertStore>, provider: &Arc<CryptoProvider>, record: bool) -> Result<Self, crate::Error> {
        let inner = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| crate::Error::Config(format!("certificate verifier: {e}")))?;
        Ok(Self { inner, verdict: record.then(|| Mutex::new(None)) })
    }

    fn verdict(&self) -> Option<Verdict> {
        self.verdict.as_ref()?.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(slot) = &self.verdict else {
            return Ok(ServerCertVerified::assertion());
        };
        let verdict = match self.inner.verify_server_cert(end_entity, intermediates, name, ocsp, now) {
            Ok(_) => Verdict { trusted: true, name_matches: true, error: None },
            Err(e) => {
                let name_error = matches!(
                    e,
                    rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForName
                            | rustls::CertificateError::NotValidForNameContext { .. }
                    )
                );
                // The chain is checked before the name, so a name error
                // means the chain was fine.
                let name_matches = !name_error
                    && rustls::server::ParsedCertificate::try_from(end_entity)
                        .and_then(|cert| rustls::client::verify_server_name(&cert, name))
                        .is_ok();
                Verdict { trusted: name_error, name_matches, error: Some(describe_cert_error(&e)) }
            }
        };
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(verdict);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn describe_cert_error(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::Expired) => "certificate has expired".into(),
        rustls::Error::InvalidCertificate(C::ExpiredContext { not_after, .. }) => {
            format!("certificate expired at unix time {}", not_after.as_secs())
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "certificate is not valid yet".into()
        }
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "certificate is not signed by a trusted authority".into()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "certificate is not valid for this name".into()
        }
        other => other.to_string(),
    }
}

/// The `tls.inspect` host function.
pub(crate) async fn inspect(
    net: &mut NetSession,
    host: &str,
    port: u16,
    options: InspectOptions,
) -> Result<Report, NetError> {
    let deadline = net.op_deadline(options.timeout_ms);
    let (addrs, _) = net.resolve(host, port, deadline).await?;
    let (stream, remote, _) = connect_any(&addrs, deadline).await?;
    let remote = remote.to_string();
    let name = options.server_name.unwrap_or_else(|| host.to_string());
    let recorder = Arc::new(
        Recorder::new(&net.shared.tls.roots, &net.shared.tls.provider, true)
            .map_err(|e| NetError::Tls(e.to_string()))?,
    );
    let config = ClientConfig::builder_with_provider(net.shared.tls.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let (tls, handshake_ms) = handshake(Arc::new(config), stream, &name, deadline).await?;
    let (_, conn) = tls.get_ref();
    let chain = conn.peer_certificates().unwrap_or_default().iter().map(|c| certificate(c)).collect();
    let protocol = conn.protocol_version().and_then(|v| v.as_str()).unwrap_or("").to_string();
    let cipher = conn.negotiated_cipher_suite().and_then(|s| s.suite().as_str()).unwrap_or("").to_string();
    let verdict = recorder.verdict().unwrap_or(Verdict {
        trusted: false,
        name_matches: false,
        error: Some("no certificate".into()),
    });
    Ok(Report {
        chain,
        trusted: verdict.trusted,
        name_matches: verdict.name_matches,
        verify_error: verdict.error,
        protocol,
        cipher,
        remote_addr: remote,
        handshake_ms,
    })
}

fn certificate(der: &CertificateDer<'_>) -> Certificate {
    let fingerprint = hex::encode(Sha256::digest(der.as_ref()));
    match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok((_, cert)) => {
            let sans = cert
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|ext| {
                    ext.value
                        .general_names
                        .iter()
                        .filter_map(|n| match n {
                            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                            x509_parser::extensions::GeneralName::IPAddress(ip) => ip_string(ip),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            Certificate {
                subject: cert.subject().to_string(),
                issuer: cert.issuer().to_string(),
                sans,
                serial: cert.raw_serial_as_string(),
                not_before: cert.validity().not_before.timestamp(),
                not_after: cert.validity().not_after.timestamp(),
                sha256_fingerprint: fingerprint,
            }
        }
        Err(e) => Certificate {
            subject: format!("(unparseable certificate: {e})"),
            issuer: String::new(),
            sans: Vec::new(),
            serial: String::new(),
            not_before: 0,
            not_after: 0,
            sha256_fingerprint: fingerprint,
        },
    }
}

fn ip_string(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).to_string()),
        _ => None,
    }
}
