//! The status page and its JSON as last rendered. The watch loop renders
//! them once a round ([`Published::refresh`]); requests are served the
//! stored bytes, so reading the page, however often, renders nothing and
//! reads no state.

use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use prometheus_client::metrics::counter::Counter;

use crate::model::Millis;
use crate::state::State;

/// One render: the HTML page and the JSON of the same view.
pub struct Rendered {
    pub html: Bytes,
    pub json: Bytes,
}

pub struct Published {
    current: RwLock<Option<Arc<Rendered>>>,
    /// `tocsin_watchdog_page_renders_total`.
    renders: Counter,
}

impl Published {
    pub fn new(renders: Counter) -> Published {
        Published { current: RwLock::default(), renders }
    }

    /// The last render, if one succeeded.
    pub fn current(&self) -> Option<Arc<Rendered>> {
        self.current.read().expect("page lock").clone()
    }

    /// Renders the page as of `now`. When the state cannot be read the
    /// last render stays up (a page a round old beats none).
    pub async fn refresh(&self, state: &State, now: Millis, watchdog: &str) {
        let view = match super::view(state, now, watchdog).await {
            Ok(view) => view,
            Err(e) => {
                tracing::warn!(error = %e, "reading the watchdog's state for the status page failed");
                return;
            }
        };
        let rendered = Rendered {
            html: Bytes::from(super::render(&view)),
            json: Bytes::from(serde_json::to_vec(&view).expect("a status view serializes")),
        };
        self.renders.inc();
        *self.current.write().expect("page lock") = Some(Arc::new(rendered));
    }
}
