//! The server side: a rustls configuration from the operator's files, and
//! [`serve`], which serves a router over plain HTTP or HTTPS on a bound
//! listener until a shutdown future resolves. With TLS, handshakes run in
//! each connection's own task with a deadline (a client that never finishes
//! one holds nothing), a client speaking plain HTTP is answered by closing
//! the connection at its first byte, and SIGHUP reloads the certificate and
//! key from their files without dropping a connection.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use rustls::server::WebPkiClientVerifier;

use crate::{Error, pem, provider};

/// How long a client has to complete its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// A server's TLS: the configuration in use and the files it came from.
#[derive(Clone)]
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    config: RustlsConfig,
}

impl ServerTls {
    /// Reads `cert` (a chain, the server's first) and `key`; with
    /// `client_ca`, clients must present a certificate it signed.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<ServerTls, Error> {
        let config = config(cert, key, client_ca)?;
        Ok(ServerTls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            client_ca: client_ca.map(Path::to_path_buf),
            config: RustlsConfig::from_config(config),
        })
    }

    /// Reads the files again and serves new connections with them (a
    /// renewed certificate); on an error the one in use stays.
    pub fn reload(&self) -> Result<(), Error> {
        self.config.reload_from_config(config(&self.cert, &self.key, self.client_ca.as_deref())?);
        Ok(())
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.client_ca.is_some()
    }
}

fn config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Arc<rustls::ServerConfig>, Error> {
    let chain = pem::certificates("TLS certificate", cert)?;
    let private = pem::private_key("TLS key", key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in pem::certificates("client CA", path)? {
                roots.add(ca).map_err(|e| Error::file("client CA", path, format!("not a usable CA: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| Error::file("client CA", path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, private)
        .map_err(|e| Error::file("TLS key", key, format!("does not fit the certificate {}: {e}", cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `http` or `https`, for the URLs a server prints and hands out.
pub fn scheme(tls: Option<&ServerTls>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

/// Serves `app` on `listener` (HTTPS when `tls` is given) until `shutdown`
/// resolves, then lets requests in flight finish. Handlers can read the
/// peer's address (`ConnectInfo<SocketAddr>`). Meanwhile SIGHUP reloads
/// the certificate, and never stops the server (with or without TLS, so a
/// `systemctl reload` is always safe).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<ServerTls>,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let reloads = tokio::spawn(reload_on_hangup(tls.clone()));
    let served = match tls {
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let stop = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stop.graceful_shutdown(None);
            });
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls.config).handshake_timeout(HANDSHAKE);
            axum_server::from_tcp(listener.into_std()?)?.acceptor(acceptor).handle(handle).serve(app).await
        }
    };
    reloads.abort();
    served
}

/// Reloads the certificate on every SIGHUP (certificate rotation).
async fn reload_on_hangup(tls: Option<ServerTls>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: a renewed certificate takes a restart");
        return;
    };
    while hangups.recv().await.is_some() {
        let Some(tls) = &tls else {
            tracing::info!("SIGHUP: serving plain HTTP, no certificate to reload");
            continue;
        };
        match tls.reload() {
            Ok(()) => tracing::info!(cert = %tls.cert.display(), "SIGHUP: reloaded the TLS certificate and key"),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the TLS files cannot be used; keeping the certificate in use")
            }
        }
    }
}
