//! The `site` row: this site's name, role and epoch, where its feed stands
//! and whom it follows. Every change of role is a conditional update, so
//! two controllers of one site (or an operator and a watchdog) cannot both
//! win.

use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::model::now_ms;
use crate::store::{Backend, Db, Result, StoreError};

/// A site's role. `SiteRole` in the API's document, where `Role` is a
/// token's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = SiteRole)]
pub enum Role {
    /// Takes changes, schedules checks and sends notifications.
    Active,
    /// Follows another site's feed; refuses changes of its own.
    Passive,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Passive => "passive",
        }
    }

    fn parse(text: &str) -> Result<Role> {
        match text {
            "active" => Ok(Role::Active),
            "passive" => Ok(Role::Passive),
            other => Err(StoreError::Corrupt(format!("site role {other:?}"))),
        }
    }
}

/// The site row as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Site {
    pub name: String,
    pub role: Role,
    /// The highest site epoch this site has seen; a promotion takes one above.
    pub epoch: i64,
    /// The seq of the newest change this site holds.
    pub head: i64,
    /// The epoch that change was written in.
    pub head_epoch: i64,
    /// That change's link in the feed's hash chain (empty: none yet).
    pub head_chain: String,
    /// The site followed while passive.
    pub source: Option<String>,
    /// When the role last changed (unix ms).
    pub changed_at: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    role: String,
    epoch: i64,
    head: i64,
    head_epoch: i64,
    head_chain: String,
    source: Option<String>,
    changed_at: i64,
}

const COLUMNS: &str = "name, role, epoch, head, head_epoch, head_chain, source, changed_at";

fn from_row(row: Row) -> Result<Site> {
    Ok(Site {
        name: row.name,
        role: Role::parse(&row.role)?,
        epoch: row.epoch,
        head: row.head,
        head_epoch: row.head_epoch,
        head_chain: row.head_chain,
        source: row.source,
        changed_at: row.changed_at,
    })
}

pub async fn load(db: &Db) -> Result<Site> {
    load_in(&mut *db.reader().acquire().await?).await
}

pub async fn load_in(conn: &mut AnyConnection) -> Result<Site> {
    let sql = format!("SELECT {COLUMNS} FROM site WHERE id = 1");
    from_row(sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql)).fetch_one(conn).await?)
}

/// Inside a transaction: the site row, locked until the transaction ends
/// (feed captures and other role changes wait).
pub async fn lock(conn: &mut AnyConnection) -> Result<Site> {
    sqlx::query("UPDATE site SET head = head WHERE id = 1").execute(&mut *conn).await?;
    load_in(conn).await
}

/// At start: the configured name; a site that never held anything and is
/// told to follow starts passive.
pub async fn configure(db: &Db, name: &str, follow: Option<&str>) -> Result<Site> {
    let mut tx = db.writer().begin().await?;
    let site = lock(&mut tx).await?;
    if site.name != name {
        sqlx::query("UPDATE site SET name = $1 WHERE id = 1").bind(name).execute(&mut *tx).await?;
    }
    if let Some(url) = follow
        && site.role == Role::Active
        && site.head == 0
    {
        set_passive(&mut tx, url, site.epoch).await?;
    }
    let site = load_in(&mut tx).await?;
    tx.commit().await?;
    Ok(site)
}

/// Makes this site passive, following `source` from where its feed stands.
pub async fn follow(db: &Db, source: &str, actor: &str) -> Result<Site> {
    let mut tx = db.writer().begin().await?;
    let site = lock(&mut tx).await?;
    set_passive(&mut tx, source, site.epoch).await?;
    let after = load_in(&mut tx).await?;
    audit(&mut tx, actor, "site.follow", &site, &after).await?;
    tx.commit().await?;
    Ok(after)
}

async fn audit(conn: &mut AnyConnection, actor: &str, action: &str, before: &Site, after: &Site) -> Result<()> {
    let change = crate::store::audit::Change {
        actor,
        action,
        kind: "site",
        name: &after.name,
        before: crate::store::audit::snapshot(before),
        after: crate::store::audit::snapshot(after),
    };
    crate::store::audit::record(conn, change).await
}

pub async fn set_passive(conn: &mut AnyConnection, source: &str, epoch: i64) -> Result<()> {
    sqlx::query("UPDATE site SET role = 'passive', source = $1, epoch = $2, changed_at = $3 WHERE id = 1")
        .bind(source)
        .bind(epoch)
        .bind(now_ms())
        .execute(conn)
        .await?;
    Ok(())
}

/// Steps an active site down because `source` is active with a newer
/// epoch. False when the site had changed meanwhile.
pub async fn step_down(db: &Db, source: &str, their_epoch: i64) -> Result<bool> {
    let mut tx = db.writer().begin().await?;
    let before = lock(&mut tx).await?;
    let done = sqlx::query(
        "UPDATE site SET role = 'passive', source = $1, epoch = $2, changed_at = $3 \
         WHERE id = 1 AND role = 'active' AND epoch < $2",
    )
    .bind(source)
    .bind(their_epoch)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    // A change of role is in the trail whoever caused it.
    let after = load_in(&mut tx).await?;
    let actor = format!("peer site {source} (proven, epoch {their_epoch})");
    audit(&mut tx, &actor, "site.step_down", &before, &after).await?;
    tx.commit().await?;
    Ok(true)
}

/// Makes this site active with an epoch above any it has seen. `seen`,
/// when given, must still be the site's epoch (a watchdog's fence).
pub async fn promote(db: &Db, seen: Option<i64>, actor: &str) -> Result<Site> {
    let mut tx = db.writer().begin().await?;
    let site = lock(&mut tx).await?;
    if site.role == Role::Active {
        return Err(StoreError::Conflict(format!("site {} is active already (epoch {})", site.name, site.epoch)));
    }
    if let Some(seen) = seen
        && seen != site.epoch
    {
        return Err(StoreError::Conflict(format!(
            "site {} is at epoch {} now, not {seen}: someone acted first",
            site.name, site.epoch
        )));
    }
    sqlx::query("UPDATE site SET role = 'active', source = NULL, epoch = epoch + 1, changed_at = $1 WHERE id = 1")
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    if db.backend == Backend::Postgres {
        // Objects arrived with their source's ids; new ones must not collide.
        for table in ["checks", "silences"] {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT MAX(id) FROM {table}), 1))"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
        }
    }
    let after = load_in(&mut tx).await?;
    audit(&mut tx, actor, "site.promote", &site, &after).await?;
    tx.commit().await?;
    Ok(after)
}
