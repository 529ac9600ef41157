//! Reads what a handler left of a request body before its answer goes out.
//!
//! A handler that refuses a body (over its size limit, say) stops reading
//! it; the connection is then closed with data unread, and a client still
//! sending meets a broken pipe instead of the 413 that says what is wrong.
//! So the body is lent to the handler, and whatever it left is read and
//! discarded afterwards, up to a bound and a deadline, past which the
//! connection is given up as before.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

/// At most this much is read past what the handler wanted.
const DRAIN_BYTES: u64 = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(10);

type Slot = Arc<Mutex<Option<Body>>>;

/// The request body, read through a slot the middleware keeps a hold of.
struct Lent(Slot);

impl HttpBody for Lent {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> SizeHint {
        // Limits look at the declared length first.
        self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(HttpBody::size_hint).unwrap_or_default()
    }
}

pub async fn drain_unread(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let slot: Slot = Arc::new(Mutex::new(Some(body)));
    let response = next.run(Request::from_parts(parts, Body::new(Lent(slot.clone())))).await;
    let rest = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(mut rest) = rest.filter(|b| !b.is_end_stream()) {
        let drained = tokio::time::timeout(DRAIN_TIME, async {
            let mut read = 0u64;
            while read < DRAIN_BYTES {
                match rest.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
                    _ => return,
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::debug!("gave up reading the rest of a refused request body");
        }
    }
    response
}
