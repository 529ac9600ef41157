//! The `tcp` interface: a connection resource for conversations with
//! non-HTTP services (send a greeting, expect a banner), plain or TLS.

use std::pin::Pin;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::bindings::network::NetError;
use crate::bindings::tcp::{ConnectInfo, ConnectOptions};
use crate::net::{NetSession, connect_any, tls};

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Stream for T {}

/// The host side of a `tcp.connection` resource.
pub struct Connection {
    stream: Pin<Box<dyn Stream>>,
    info: ConnectInfo,
    peer: String,
}

impl Connection {
    pub(crate) fn info(&self) -> ConnectInfo {
        self.info.clone()
    }

    pub(crate) async fn send(&mut self, data: &[u8], deadline: Instant) -> Result<(), NetError> {
        match tokio::time::timeout_at(deadline.into(), self.stream.write_all(data)).await {
            Err(_) => Err(NetError::Timeout(format!("sending to {} took too long", self.peer))),
            Ok(Err(e)) => Err(NetError::Connect(format!("sending to {}: {e}", self.peer))),
            Ok(Ok(())) => Ok(()),
        }
    }

    pub(crate) async fn receive(&mut self, max: usize, deadline: Instant) -> Result<Vec<u8>, NetError> {
        let mut buf = vec![0; max.max(1)];
        match tokio::time::timeout_at(deadline.into(), self.stream.read(&mut buf)).await {
            Err(_) => Err(NetError::Timeout(format!("nothing received from {} in time", self.peer))),
            Ok(Err(e)) => Err(NetError::Connect(format!("receiving from {}: {e}", self.peer))),
            Ok(Ok(n)) => {
                buf.truncate(n);
                Ok(buf)
            }
        }
    }
}

/// The `tcp.connect` host function.
pub(crate) async fn connect(
    net: &mut NetSession,
    host: &str,
    port: u16,
    options: ConnectOptions,
) -> Result<Connection, NetError> {
    let deadline = net.op_deadline(options.timeout_ms);
    let (addrs, dns_ms) = net.resolve(host, port, deadline).await?;
    let (stream, peer, connect_ms) = connect_any(&addrs, deadline).await?;
    let peer = peer.to_string();
    let (stream, tls_ms): (Pin<Box<dyn Stream>>, f64) = if options.tls {
        let name = options.server_name.as_deref().unwrap_or(host);
        let (tls, tls_ms) = tls::handshake(net.shared.tls.client(options.verify_tls), stream, name, deadline).await?;
        (Box::pin(tls), tls_ms)
    } else {
        (Box::pin(stream), 0.0)
    };
    let info = ConnectInfo { remote_addr: peer.clone(), dns_ms, connect_ms, tls_ms };
    Ok(Connection { stream, info, peer })
}
