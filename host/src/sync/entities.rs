//! The configuration objects the change feed carries, and how each is read
//! as JSON (for the feed and snapshots) and written back (on a follower).
//!
//! One description per table ([`Table`]) drives every query, so an object
//! is exported and imported through the same list of columns and a column
//! added to a table is synced once it is added here. Only definitions are
//! synced: a check's status, runs, incidents, nodes and the outbox belong to
//! the site that produced them.

use serde_json::{Map, Value};
use sqlx::{AnyConnection, Row};

use crate::store::{Result, StoreError};

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

#[derive(Clone, Copy, PartialEq)]
enum Col {
    Int,
    Text,
}

/// A kind of configuration object and its table.
pub struct Table {
    /// The kind in feed entries: `check`, `token`, ...
    pub kind: &'static str,
    /// `object_kind` in the audit trail (what [`Table::for_audit`] maps).
    audit: &'static str,
    table: &'static str,
    /// The columns that identify an object; its feed name is their values
    /// joined by `@`.
    key: &'static [&'static str],
    /// Every synced column, the key included.
    columns: &'static [(&'static str, Col)],
    /// Columns a new row needs that are not synced, as SQL literals.
    insert_defaults: &'static [(&'static str, &'static str)],
    /// Rows of other tables that go with a deleted object (`$1..` = key).
    cascade: &'static [&'static str],
}

/// Every synced kind, in the order a snapshot is applied.
pub static TABLES: &[Table] = &[
    Table {
        kind: "plugin",
        audit: "plugin",
        table: "plugins",
        key: &["name", "version"],
        columns: &[
            ("name", Col::Text),
            ("version", Col::Text),
            ("kind", Col::Text),
            ("sha256", Col::Text),
            ("description", Col::Text),
            ("config_schema", Col::Text),
            ("size", Col::Int),
            ("created_at", Col::Int),
            ("created_by", Col::Text),
        ],
        insert_defaults: &[],
        cascade: &[],
    },
    Table {
        kind: "token",
        audit: "token",
        table: "tokens",
        key: &["id"],
        columns: &[
            ("id", Col::Text),
            ("name", Col::Text),
            ("role", Col::Text),
            // An argon2 hash: the secret itself never leaves the site that
            // minted it, yet the token works on every site.
            ("hash", Col::Text),
            ("created_at", Col::Int),
            ("created_by", Col::Text),
            ("revoked_at", Col::Int),
        ],
        insert_defaults: &[],
        cascade: &[],
    },
    spec_table("contact", "contact", "contacts"),
    spec_table("policy", "policy", "policies"),
    spec_table("gateway", "gateway", "gateways"),
    spec_table("route", "route", "routes"),
    spec_table("maintenance", "maintenance window", "maintenance"),
    Table {
        kind: "check",
        audit: "check",
        table: "checks",
        key: &["name"],
        columns: &[
            ("id", Col::Int),
            ("name", Col::Text),
            ("description", Col::Text),
            ("plugin", Col::Text),
            ("plugin_version", Col::Text),
            ("target", Col::Text),
            ("config", Col::Text),
            ("interval_ms", Col::Int),
            ("timeout_ms", Col::Int),
            ("locations", Col::Text),
            ("tags", Col::Text),
            ("allow", Col::Text),
            ("paused", Col::Int),
            ("confirm", Col::Int),
            ("policy", Col::Text),
            ("created_at", Col::Int),
            ("updated_at", Col::Int),
        ],
        insert_defaults: &[("status", "'pending'"), ("status_since", "0"), ("last_message", "''")],
        cascade: &[
            "DELETE FROM runs WHERE check_id IN (SELECT id FROM checks WHERE name = $1)",
            "DELETE FROM run_hours WHERE check_id IN (SELECT id FROM checks WHERE name = $1)",
            "DELETE FROM assignments WHERE check_id IN (SELECT id FROM checks WHERE name = $1)",
        ],
    },
    Table {
        kind: "silence",
        audit: "silence",
        table: "silences",
        key: &["id"],
        columns: &[
            ("id", Col::Int),
            ("sources", Col::Text),
            ("ends_at", Col::Int),
            ("comment", Col::Text),
            ("created_by", Col::Text),
            ("created_at", Col::Int),
        ],
        insert_defaults: &[],
        cascade: &[],
    },
];

/// Contacts, policies, gateways, routes and maintenance windows: a name
/// and the API form as JSON.
const fn spec_table(kind: &'static str, audit: &'static str, table: &'static str) -> Table {
    Table {
        kind,
        audit,
        table,
        key: &["name"],
        columns: &[("name", Col::Text), ("spec", Col::Text), ("created_at", Col::Int), ("updated_at", Col::Int)],
        insert_defaults: &[],
        cascade: &[],
    }
}

impl Table {
    /// The synced kind an audit entry's `object_kind` names, if any.
    pub fn for_audit(object_kind: &str) -> Option<&'static Table> {
        TABLES.iter().find(|t| t.audit == object_kind)
    }

    pub fn for_kind(kind: &str) -> Option<&'static Table> {
        TABLES.iter().find(|t| t.kind == kind)
    }

    pub fn audit_kind(&self) -> &'static str {
        self.audit
    }

    /// Plugins carry their bytes beside the feed, fetched by sha256.
    pub fn has_wasm(&self) -> bool {
        self.table == "plugins"
    }

    fn column_list(&self) -> String {
        self.columns.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
    }

    fn key_condition(&self) -> String {
        self.key.iter().enumerate().map(|(i, k)| format!("{k} = ${}", i + 1)).collect::<Vec<_>>().join(" AND ")
    }

    /// `name@version` -> `["name", "version"]`, checked against the key.
    fn key_parts<'a>(&self, name: &'a str) -> Result<Vec<&'a str>> {
        let parts: Vec<&str> =
            if self.key.len() == 1 { vec![name] } else { name.splitn(self.key.len(), '@').collect() };
        if parts.len() != self.key.len() {
            return Err(StoreError::Corrupt(format!("{} name {name:?} does not identify one", self.kind)));
        }
        Ok(parts)
    }

    /// Binds the key columns of `name` as `$1..`, each as its column's type.
    fn bind_key<'q>(&self, mut query: AnyQuery<'q>, name: &str) -> Result<AnyQuery<'q>> {
        for (column, part) in self.key.iter().zip(self.key_parts(name)?) {
            query = match self.columns.iter().find(|(c, _)| c == column).map(|(_, t)| *t) {
                Some(Col::Int) => query.bind(part.parse::<i64>().map_err(|_| {
                    StoreError::Corrupt(format!("{} name {name:?}: {column} is not a number", self.kind))
                })?),
                _ => query.bind(part.to_string()),
            };
        }
        Ok(query)
    }

    fn name_of(&self, body: &Map<String, Value>) -> String {
        self.key.iter().map(|k| scalar(body.get(*k))).collect::<Vec<_>>().join("@")
    }

    fn to_json(&self, row: &sqlx::any::AnyRow) -> Result<Map<String, Value>> {
        let mut object = Map::new();
        for (name, col) in self.columns {
            let value = match col {
                Col::Int => row.try_get::<Option<i64>, _>(*name)?.map(Value::from),
                Col::Text => row.try_get::<Option<String>, _>(*name)?.map(Value::from),
            };
            object.insert(name.to_string(), value.unwrap_or(Value::Null));
        }
        Ok(object)
    }

    /// The object `name` as it is now, or `None` when there is none.
    pub async fn export(&self, conn: &mut AnyConnection, name: &str) -> Result<Option<Value>> {
        let sql = format!("SELECT {} FROM {} WHERE {}", self.column_list(), self.table, self.key_condition());
        let query = self.bind_key(sqlx::query(sqlx::AssertSqlSafe(sql)), name)?;
        match query.fetch_optional(conn).await? {
            Some(row) => Ok(Some(Value::Object(self.to_json(&row)?))),
            None => Ok(None),
        }
    }

    /// Every object of this kind, by name.
    pub async fn export_all(&self, conn: &mut AnyConnection) -> Result<Vec<(String, Value)>> {
        let sql = format!("SELECT {} FROM {} ORDER BY {}", self.column_list(), self.table, self.key.join(", "));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(conn).await?;
        rows.iter()
            .map(|row| {
                let object = self.to_json(row)?;
                Ok((self.name_of(&object), Value::Object(object)))
            })
            .collect()
    }

    /// Makes the object `name` what `body` says: written, or deleted when
    /// `body` is `None`. `wasm` is a plugin's bytes.
    pub async fn import(
        &self,
        conn: &mut AnyConnection,
        name: &str,
        body: Option<&Value>,
        wasm: Option<&[u8]>,
    ) -> Result<()> {
        let Some(body) = body else { return self.delete(conn, name).await };
        let object = body
            .as_object()
            .ok_or_else(|| StoreError::Corrupt(format!("{} {name}: the body is not an object", self.kind)))?;
        let mut columns: Vec<String> = self.columns.iter().map(|(c, _)| c.to_string()).collect();
        let mut values: Vec<String> = (1..=self.columns.len()).map(|i| format!("${i}")).collect();
        for (column, literal) in self.insert_defaults {
            columns.push(column.to_string());
            values.push(literal.to_string());
        }
        if self.has_wasm() {
            columns.push("wasm".into());
            values.push(format!("${}", self.columns.len() + 1));
        }
        let updates: Vec<String> = self
            .columns
            .iter()
            .filter(|(c, _)| !self.key.contains(c))
            .map(|(c, _)| format!("{c} = excluded.{c}"))
            .chain(self.has_wasm().then(|| "wasm = excluded.wasm".to_string()))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}",
            self.table,
            columns.join(", "),
            values.join(", "),
            self.key.join(", "),
            updates.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (column, col) in self.columns {
            let value = object.get(*column).filter(|v| !v.is_null());
            query = match col {
                Col::Int => query.bind(value.and_then(Value::as_i64)),
                Col::Text => query.bind(value.and_then(Value::as_str).map(str::to_string)),
            };
        }
        if self.has_wasm() {
            let wasm = wasm.ok_or_else(|| StoreError::Corrupt(format!("plugin {name}: its bytes are missing")))?;
            query = query.bind(wasm.to_vec());
        }
        query.execute(conn).await?;
        Ok(())
    }

    async fn delete(&self, conn: &mut AnyConnection, name: &str) -> Result<()> {
        let statements = self.cascade.iter().map(|s| s.to_string());
        let own = format!("DELETE FROM {} WHERE {}", self.table, self.key_condition());
        for sql in statements.chain(std::iter::once(own)) {
            self.bind_key(sqlx::query(sqlx::AssertSqlSafe(sql)), name)?.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

fn scalar(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}
