//! The `http` interface: one HTTP/1.1 exchange per request on a fresh
//! connection, redirects followed by the host so that every hop passes the
//! grant check, and each phase timed.

use std::time::Instant;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::FusedFuture;
use http::header::{HOST, LOCATION, USER_AGENT};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use url::Url;

use crate::bindings::http::{Request, Response, Timings};
use crate::bindings::network::NetError;
use crate::net::{NetSession, connect_any, ms, tls};

/// The `http.send` host function.
pub(crate) async fn send(net: &mut NetSession, request: Request) -> Result<Response, NetError> {
    let started = Instant::now();
    let deadline = net.op_deadline(request.timeout_ms);
    let mut method = Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| NetError::Invalid(format!("{:?} is not an HTTP method", request.method)))?;
    let mut url = parse_url(&request.url)?;
    let mut body = Bytes::from(request.body);
    let max_body = (request.max_body_bytes as usize).min(net.shared.max_body_bytes);
    let mut redirects = 0u8;
    loop {
        let hop = exchange(net, &method, &url, &request.headers, body.clone(), request.verify_tls, deadline).await?;
        let status = hop.response.status();
        let location = hop.response.headers().get(LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string);
        if let (true, Some(location)) = (status.is_redirection(), location)
            && redirects < request.max_redirects
        {
            redirects += 1;
            url = url
                .join(&location)
                .map_err(|e| NetError::Protocol(format!("redirect to unusable location {location:?}: {e}")))?;
            if status == StatusCode::SEE_OTHER
                || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND) && method == Method::POST)
            {
                method = Method::GET;
                body = Bytes::new();
            }
            continue;
        }
        let headers = hop
            .response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let (body, body_truncated) = read_body(hop.response.into_body(), hop.connection, max_body, deadline).await?;
        return Ok(Response {
            status: status.as_u16(),
            headers,
            body,
            body_truncated,
            final_url: url.to_string(),
            redirects,
            remote_addr: hop.remote_addr,
            timings: Timings { total_ms: ms(started.elapsed()), ..hop.timings },
        });
    }
}

fn parse_url(raw: &str) -> Result<Url, NetError> {
    let url = Url::parse(raw).map_err(|e| NetError::Invalid(format!("{raw:?} is not a URL: {e}")))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(url),
        "http" | "https" => Err(NetError::Invalid(format!("{raw:?} has no host"))),
        other => Err(NetError::Invalid(format!("{raw:?}: scheme {other:?} is not http or https"))),
    }
}

struct Hop {
    response: hyper::Response<Incoming>,
    /// Drives the connection; dropping it closes the socket.
    connection: Connection,
    remote_addr: String,
    timings: Timings,
}

/// Fused: it may be polled again after it has finished.
type Connection = futures::future::Fuse<futures::future::BoxFuture<'static, ()>>;

async fn exchange(
    net: &mut NetSession,
    method: &Method,
    url: &Url,
    headers: &[(String, String)],
    body: Bytes,
    verify_tls: bool,
    deadline: Instant,
) -> Result<Hop, NetError> {
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    let (addrs, dns_ms) = net.resolve(host, port, deadline).await?;
    let (stream, remote, connect_ms) = connect_any(&addrs, deadline).await?;

    let request = build_request(method, url, headers, body, &net.shared.user_agent)?;
    let sent = Instant::now();
    let ((response, connection), tls_ms) = if url.scheme() == "https" {
        let (tls, tls_ms) = tls::handshake(net.shared.tls.client(verify_tls), stream, host, deadline).await?;
        (round_trip(TokioIo::new(tls), request, deadline, url).await?, tls_ms)
    } else {
        (round_trip(TokioIo::new(stream), request, deadline, url).await?, 0.0)
    };
    let first_byte_ms = ms(sent.elapsed()) - tls_ms;
    let timings = Timings { dns_ms, connect_ms, tls_ms, first_byte_ms, total_ms: 0.0 };
    Ok(Hop { response, connection, remote_addr: remote.to_string(), timings })
}

fn build_request(
    method: &Method,
    url: &Url,
    headers: &[(String, String)],
    body: Bytes,
    user_agent: &str,
) -> Result<hyper::Request<Full<Bytes>>, NetError> {
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let mut builder = hyper::Request::builder().method(method.clone()).uri(if path.is_empty() { "/" } else { path });
    let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
    let mut has_host = false;
    let mut has_agent = false;
    for (name, value) in headers {
        has_host |= name.eq_ignore_ascii_case(HOST.as_str());
        has_agent |= name.eq_ignore_ascii_case(USER_AGENT.as_str());
        builder = builder.header(name.as_str(), value.as_str());
    }
    if !has_host {
        builder = builder.header(HOST, host);
    }
    if !has_agent {
        builder = builder.header(USER_AGENT, user_agent);
    }
    builder.body(Full::new(body)).map_err(|e| NetError::Invalid(format!("bad request header: {e}")))
}

/// Sends `request` and returns the response head with the future that
/// drives the connection. The connection is driven in this task, not a
/// spawned one, and never reused: dropping it closes the socket.
async fn round_trip<IO>(
    io: TokioIo<IO>,
    request: hyper::Request<Full<Bytes>>,
    deadline: Instant,
    url: &Url,
) -> Result<(hyper::Response<Incoming>, Connection), NetError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let exchange = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        let mut conn: Connection = async move {
            let _ = conn.await;
        }
        .boxed()
        .fuse();
        let mut response = std::pin::pin!(sender.send_request(request));
        let response = tokio::select! {
            biased;
            response = &mut response => response,
            // The connection ended first (a server that answers and closes):
            // the response, or why there is none, is ready.
            _ = &mut conn => response.await,
        };
        response.map(|r| (r, conn))
    };
    match tokio::time::timeout_at(deadline.into(), exchange).await {
        Err(_) => Err(NetError::Timeout(format!("no response from {url} in time"))),
        Ok(Err(e)) => Err(NetError::Protocol(format!("{url}: {e}"))),
        Ok(Ok(done)) => Ok(done),
    }
}

async fn read_body(
    mut body: Incoming,
    mut connection: Connection,
    max: usize,
    deadline: Instant,
) -> Result<(Vec<u8>, bool), NetError> {
    let mut out = Vec::new();
    let read = async {
        loop {
            let frame = tokio::select! {
                frame = body.frame() => frame,
                // Keep the connection moving while the body arrives.
                _ = &mut connection, if !connection.is_terminated() => continue,
            };
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| NetError::Protocol(format!("reading the body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                let room = max - out.len();
                if data.len() > room {
                    out.extend_from_slice(&data[..room]);
                    return Ok(true);
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(false)
    };
    match tokio::time::timeout_at(deadline.into(), read).await {
        Err(_) => Err(NetError::Timeout("the response body did not arrive in time".into())),
        Ok(Err(e)) => Err(e),
        Ok(Ok(truncated)) => Ok((out, truncated)),
    }
}
