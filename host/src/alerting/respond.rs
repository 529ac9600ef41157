//! A contact's answer to a notification: accept (the incident is theirs,
//! the escalation stops) or reject (their step may end at once). Links,
//! key presses, the API and the CLI all come here. A notification takes
//! one answer; a second is refused, so a link works once.

use serde_json::json;

use super::{escalation, incidents, outbox};
use crate::model::now_ms;
use crate::store::{self, Db};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Accept,
    Reject,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Accept => "accept",
            Answer::Reject => "reject",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RespondError {
    #[error("notification {0} not found")]
    NotFound(i64),
    #[error("this notification was already answered ({0})")]
    Used(String),
    #[error("{0}")]
    Closed(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

impl From<sqlx::Error> for RespondError {
    fn from(e: sqlx::Error) -> Self {
        RespondError::Store(e.into())
    }
}

/// What happened, for the person who answered.
pub async fn respond(db: &Db, notification: i64, answer: Answer, via: &str) -> Result<String, RespondError> {
    let now = now_ms();
    let mut tx = db.writer().begin().await?;
    let Some(row) = outbox::get(&mut tx, notification).await? else {
        return Err(RespondError::NotFound(notification));
    };
    if let Some(earlier) = &row.response {
        return Err(RespondError::Used(earlier.clone()));
    }
    // Tests widen the window in which two answers have both read the row.
    #[cfg(feature = "testing")]
    if fail::eval("respond-after-read", |_| ()).is_some() {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let (state, owner): (String, Option<String>) = sqlx::query_as("SELECT state, owner FROM incidents WHERE id = $1")
        .bind(row.incident_id)
        .fetch_one(&mut *tx)
        .await?;
    if state == "resolved" {
        return Err(RespondError::Closed(format!("incident {} is already resolved", row.incident_id)));
    }
    // The conditional update decides: of two answers racing (on PostgreSQL
    // the second waits for the first's commit, then matches nothing), only
    // the one that changed the row applies.
    let claimed = sqlx::query("UPDATE outbox SET response = $2 WHERE id = $1 AND response IS NULL")
        .bind(notification)
        .bind(answer.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if claimed == 0 {
        let earlier: Option<String> = sqlx::query_scalar("SELECT response FROM outbox WHERE id = $1")
            .bind(notification)
            .fetch_one(&mut *tx)
            .await?;
        return Err(RespondError::Used(earlier.unwrap_or_else(|| "by another answer".into())));
    }
    let said = match answer {
        Answer::Accept => {
            if !incidents::acknowledge(&mut tx, row.incident_id, &row.contact, via, now).await? {
                let owner = owner.unwrap_or_else(|| "someone".into());
                return Err(RespondError::Closed(format!(
                    "incident {} was already accepted by {owner}",
                    row.incident_id
                )));
            }
            format!("You accepted incident {}. It is yours.", row.incident_id)
        }
        Answer::Reject => {
            let detail = json!({"notification": notification, "channel": row.channel, "via": via});
            incidents::record(&mut tx, row.incident_id, "rejected", Some(&row.contact), detail, now).await?;
            escalation::rejected(&mut tx, row.incident_id, &row.contact, row.step, row.pass, now).await?;
            tracing::info!(incident = row.incident_id, contact = %row.contact, via, "notification rejected");
            format!("You rejected incident {}. The next on call is notified.", row.incident_id)
        }
    };
    tx.commit().await?;
    Ok(said)
}

/// The newest notification of `incident` to `contact`, for answers given
/// through the API or CLI on a contact's behalf.
pub async fn latest_for(db: &Db, incident: i64, contact: &str) -> store::Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT MAX(id) FROM outbox WHERE incident_id = $1 AND contact = $2")
        .bind(incident)
        .bind(contact)
        .fetch_one(db.reader())
        .await?)
}
