//! Writing what a source sent: a page of its feed (following), or its whole
//! state (recovering). Each is one transaction on the locked site row, so
//! a crash leaves the site where it was and two controllers of one site
//! cannot apply the same page twice.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::entities::{TABLES, Table};
use super::feed::{self, Entry};
use super::site::{self, Role, Site};
use crate::store::audit::{self, Change};
use crate::store::{Db, Result, StoreError};

/// A source's whole configuration at one point of its feed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    pub site: Site,
    pub objects: Vec<Object>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Object {
    pub kind: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub body: Value,
}

/// Plugin bytes by sha256, fetched before the transaction.
pub type Wasm = HashMap<String, Vec<u8>>;

/// The sha256 a plugin body names.
pub fn plugin_sha(kind: &str, body: Option<&Value>) -> Option<String> {
    let table = Table::for_kind(kind)?;
    if !table.has_wasm() {
        return None;
    }
    body?.get("sha256")?.as_str().map(str::to_string)
}

/// Applies `entries`, which follow `after` (seq, chain) in the source's
/// feed. `None` when this site no longer stands at `after` (another
/// controller applied them first); otherwise the site afterwards.
pub async fn page(
    db: &Db,
    source: &str,
    source_epoch: i64,
    after: (i64, &str),
    entries: &[Entry],
    wasm: &Wasm,
) -> Result<Option<Site>> {
    let mut tx = db.writer().begin().await?;
    let here = site::lock(&mut tx).await?;
    if here.role != Role::Passive {
        return Err(StoreError::Conflict(format!("site {} is active: it follows no one", here.name)));
    }
    if (here.head, here.head_chain.as_str()) != after {
        return Ok(None);
    }
    let (mut seq, mut chain, mut epoch) = (after.0, after.1.to_string(), here.head_epoch);
    for entry in entries {
        if entry.seq != seq + 1 || feed::link(&chain, entry) != entry.chain {
            return Err(StoreError::Corrupt(format!(
                "the source sent change {} that does not follow change {seq} here (sequence or chain)",
                entry.seq
            )));
        }
        let table = Table::for_kind(&entry.kind).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "change {} is of kind {:?}, which this version does not know: upgrade this site",
                entry.seq, entry.kind
            ))
        })?;
        // Secrets travel sealed: store them only if this site can open them.
        crate::store::sealing::check_opens(db.keys(), &entry.kind, &entry.name, entry.body.as_ref())
            .map_err(|e| StoreError::Conflict(format!("change {} cannot be stored here: {e}", entry.seq)))?;
        let bytes = plugin_sha(&entry.kind, entry.body.as_ref()).and_then(|sha| wasm.get(&sha));
        if let Some(schema) = entry.body.as_ref().and_then(|body| body.get("config_schema")) {
            crate::redact::learn(schema);
        }
        table.import(&mut tx, &entry.name, entry.body.as_ref(), bytes.map(Vec::as_slice)).await?;
        feed::insert(&mut tx, entry).await?;
        let actor = format!("{} (via {source})", entry.actor);
        let change = Change {
            actor: &actor,
            action: &entry.action,
            kind: table.audit_kind(),
            name: &entry.name,
            before: None,
            after: entry.body.clone().map(redacted),
        };
        audit::insert(&mut tx, change).await?;
        (seq, chain, epoch) = (entry.seq, entry.chain.clone(), entry.epoch);
    }
    sqlx::query(
        "UPDATE site SET head = $1, head_epoch = $2, head_chain = $3, \
         epoch = CASE WHEN epoch < $4 THEN $4 ELSE epoch END WHERE id = 1",
    )
    .bind(seq)
    .bind(epoch)
    .bind(&chain)
    .bind(source_epoch)
    .execute(&mut *tx)
    .await?;
    let site = site::load_in(&mut tx).await?;
    tx.commit().await?;
    Ok(Some(site))
}

/// What a recovery threw away, for the operator.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Report {
    /// Objects that existed only here, or differed from the source's.
    pub discarded: Vec<Discarded>,
    /// Objects the source had and this site did not.
    pub added: usize,
    /// Objects that were already the same.
    pub unchanged: usize,
    /// Where this site's feed stood before (seq, epoch).
    pub was_at: (i64, i64),
    /// The site afterwards.
    pub site: Option<Site>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Discarded {
    pub kind: String,
    pub name: String,
    /// `only here` or `replaced by the source's`.
    pub why: String,
    /// The object as it was here (token hashes left out).
    #[schema(value_type = Object)]
    pub was: Value,
}

/// Resets this site to `snapshot`, taken from `source`, and leaves it
/// following `source` from the snapshot's position.
pub async fn recover(db: &Db, source: &str, snapshot: &Snapshot, wasm: &Wasm, actor: &str) -> Result<Report> {
    if let Some(unknown) = snapshot.objects.iter().find(|o| Table::for_kind(&o.kind).is_none()) {
        return Err(StoreError::Corrupt(format!(
            "the source has objects of kind {:?}, which this version does not know: upgrade this site",
            unknown.kind
        )));
    }
    for object in &snapshot.objects {
        crate::store::sealing::check_opens(db.keys(), &object.kind, &object.name, Some(&object.body))
            .map_err(|e| StoreError::Conflict(format!("the snapshot cannot be stored here: {e}")))?;
    }
    let theirs: BTreeMap<(&str, &str), &Value> =
        snapshot.objects.iter().map(|o| ((o.kind.as_str(), o.name.as_str()), &o.body)).collect();
    let mut tx = db.writer().begin().await?;
    let here = site::lock(&mut tx).await?;
    let mut report = Report { was_at: (here.head, here.head_epoch), ..Report::default() };
    // What this site holds: the same as the source's, or not.
    let mut held: HashMap<(&str, String), bool> = HashMap::new();
    for table in TABLES {
        for (name, mine) in table.export_all(&mut tx).await? {
            let theirs = theirs.get(&(table.kind, name.as_str()));
            held.insert((table.kind, name.clone()), theirs.is_some_and(|body| **body == mine));
            match theirs {
                Some(body) if **body == mine => report.unchanged += 1,
                Some(_) => report.discarded.push(Discarded {
                    kind: table.kind.into(),
                    name,
                    why: "replaced by the source's".into(),
                    was: redacted(mine),
                }),
                None => {
                    table.import(&mut tx, &name, None, None).await?;
                    report.discarded.push(Discarded {
                        kind: table.kind.into(),
                        name,
                        why: "only here".into(),
                        was: redacted(mine),
                    });
                }
            }
        }
    }
    for table in TABLES {
        for object in snapshot.objects.iter().filter(|o| o.kind == table.kind) {
            match held.get(&(table.kind, object.name.clone())) {
                Some(true) => continue,
                Some(false) => {}
                None => report.added += 1,
            }
            let bytes = plugin_sha(&object.kind, Some(&object.body)).and_then(|sha| wasm.get(&sha));
            table.import(&mut tx, &object.name, Some(&object.body), bytes.map(Vec::as_slice)).await?;
        }
    }
    // The entries this site held are not the source's; it holds none now
    // and stands where the snapshot was taken.
    sqlx::query("DELETE FROM changes").execute(&mut *tx).await?;
    sqlx::query(
        "UPDATE site SET role = 'passive', source = $1, head = $2, head_epoch = $3, head_chain = $4, \
         epoch = CASE WHEN epoch < $5 THEN $5 ELSE epoch END, changed_at = $6 WHERE id = 1",
    )
    .bind(source)
    .bind(snapshot.site.head)
    .bind(snapshot.site.head_epoch)
    .bind(&snapshot.site.head_chain)
    .bind(snapshot.site.epoch)
    .bind(crate::model::now_ms())
    .execute(&mut *tx)
    .await?;
    let after = site::load_in(&mut tx).await?;
    report.site = Some(after.clone());
    let change = Change {
        actor,
        action: "site.recover",
        kind: "site",
        name: &after.name,
        before: audit::snapshot(&here),
        after: audit::snapshot(&report),
    };
    audit::insert(&mut tx, change).await?;
    tx.commit().await?;
    Ok(report)
}

/// A token's hash and a config's secrets stay out of reports and the audit
/// trail.
fn redacted(mut body: Value) -> Value {
    if let Some(hash) = body.get_mut("hash") {
        *hash = Value::from(crate::redact::REDACTED);
    }
    crate::redact::hide_in(&mut body);
    body
}
