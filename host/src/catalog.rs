//! The plugins a controller or node can run: the built-ins that ship in the
//! binary, and uploaded ones, loaded from the database on first use.
//!
//! A check names a plugin as `name` or `name@version`. A built-in is always
//! the binary's own version (so upgrading Tocsin upgrades them); an uploaded
//! plugin is pinned to the version resolved when the check was saved.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tocsin_runtime::{LoadError, Plugin, PluginKind, Runtime};

use crate::model::PluginRecord;
use crate::store::{self, Db, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no plugin named {0:?}")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the upload is not a plugin Tocsin accepts: {0}")]
    Load(#[from] LoadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct Catalog {
    runtime: Runtime,
    builtins: Arc<HashMap<String, Plugin>>,
    uploaded: Arc<Mutex<HashMap<(String, String), Plugin>>>,
}

impl Catalog {
    /// Loads the built-in plugins into `runtime`.
    pub async fn new(runtime: Runtime) -> Result<Catalog, LoadError> {
        let mut builtins = HashMap::new();
        for artifact in tocsin_builtins::BUILTIN {
            let plugin = runtime.load(artifact.wasm).await?;
            crate::redact::learn(&plugin.info().config_schema);
            builtins.insert(plugin.info().name.clone(), plugin);
        }
        Ok(Catalog { runtime, builtins: Arc::new(builtins), uploaded: Arc::default() })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn builtin(&self, name: &str) -> Option<Plugin> {
        self.builtins.get(name).cloned()
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtins.contains_key(name)
    }

    /// The plugin a check's `plugin` field names, as stored (`http`,
    /// `custom@1.2.0`).
    pub async fn get(&self, db: &Db, plugin: &str) -> Result<Plugin, CatalogError> {
        let (name, version) = store::checks::split_plugin(plugin);
        match version {
            None => self.builtins.get(name).cloned().ok_or_else(|| CatalogError::Unknown(name.to_string())),
            Some(version) => self.uploaded(db, name, version).await,
        }
    }

    async fn uploaded(&self, db: &Db, name: &str, version: &str) -> Result<Plugin, CatalogError> {
        let key = (name.to_string(), version.to_string());
        if let Some(plugin) = self.uploaded.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(plugin.clone());
        }
        let wasm = match store::plugins::wasm(db, name, version).await {
            Err(StoreError::NotFound(_)) => return Err(CatalogError::Unknown(format!("{name}@{version}"))),
            other => other?,
        };
        let plugin = self.runtime.load(&wasm).await?;
        crate::redact::learn(&plugin.info().config_schema);
        self.uploaded.lock().unwrap_or_else(|p| p.into_inner()).insert(key, plugin.clone());
        Ok(plugin)
    }

    /// Resolves what a user wrote (`http`, `custom`, `custom@1.2.0`) to the
    /// plugin and the form to store: built-ins unpinned, uploaded plugins
    /// pinned to a version (the newest when none is given).
    pub async fn resolve(&self, db: &Db, wanted: &str, kind: PluginKind) -> Result<(Plugin, String), CatalogError> {
        let (name, version) = store::checks::split_plugin(wanted);
        let (plugin, stored) = if let Some(builtin) = self.builtins.get(name) {
            if let Some(v) = version
                && v != builtin.info().version
            {
                return Err(CatalogError::Invalid(format!(
                    "the built-in plugin {name} is version {}, not {v}",
                    builtin.info().version
                )));
            }
            (builtin.clone(), name.to_string())
        } else {
            let version = match version {
                Some(v) => v.to_string(),
                None => newest(&store::plugins::versions(db, name).await?)
                    .ok_or_else(|| CatalogError::Unknown(name.to_string()))?,
            };
            (self.uploaded(db, name, &version).await?, format!("{name}@{version}"))
        };
        if plugin.info().kind != kind {
            return Err(CatalogError::Invalid(format!(
                "plugin {wanted} is a {} plugin, not a {kind} plugin",
                plugin.info().kind
            )));
        }
        Ok((plugin, stored))
    }

    /// Validates and stores an upload. `name` and `version`, when given,
    /// must match what the plugin says of itself.
    pub async fn upload(
        &self,
        db: &Db,
        wasm: &[u8],
        name: Option<&str>,
        version: Option<&str>,
        actor: &str,
    ) -> Result<(PluginRecord, bool), CatalogError> {
        let plugin = self.runtime.load(wasm).await?;
        let info = plugin.info();
        crate::redact::learn(&info.config_schema);
        for (given, actual, what) in [(name, &info.name, "name"), (version, &info.version, "version")] {
            if let Some(given) = given
                && given != actual
            {
                return Err(CatalogError::Invalid(format!(
                    "the upload says its {what} is {given:?}, but the plugin describes itself as {}",
                    info.id()
                )));
            }
        }
        if self.is_builtin(&info.name) {
            return Err(CatalogError::Conflict(format!(
                "{:?} is the name of a built-in plugin; choose another name",
                info.name
            )));
        }
        let record = record_of(&plugin, false);
        let mut tx = db.writer().begin().await.map_err(StoreError::from)?;
        let created = store::plugins::insert(&mut tx, &record, wasm, actor).await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.uploaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((info.name.clone(), info.version.clone()), plugin.clone());
        Ok((record, created))
    }

    /// Learns the secret fields of every stored plugin's schema, so that
    /// configs of plugins not loaded yet are hidden as well.
    pub async fn learn_secrets(&self, db: &Db) -> Result<(), CatalogError> {
        for record in store::plugins::list(db).await? {
            crate::redact::learn(&record.config_schema);
        }
        Ok(())
    }

    /// Built-in and uploaded plugins.
    pub async fn list(&self, db: &Db) -> Result<Vec<PluginRecord>, CatalogError> {
        let mut all: Vec<PluginRecord> = self.builtins.values().map(|p| record_of(p, true)).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all.extend(store::plugins::list(db).await?);
        Ok(all)
    }

    /// The versions of plugin `name` (one for a built-in).
    pub async fn versions(&self, db: &Db, name: &str) -> Result<Vec<PluginRecord>, CatalogError> {
        if let Some(builtin) = self.builtins.get(name) {
            return Ok(vec![record_of(builtin, true)]);
        }
        let versions = store::plugins::versions(db, name).await?;
        if versions.is_empty() {
            return Err(CatalogError::Unknown(name.to_string()));
        }
        Ok(versions)
    }

    pub async fn delete(&self, db: &Db, name: &str, version: &str, actor: &str) -> Result<(), CatalogError> {
        if self.is_builtin(name) {
            return Err(CatalogError::Conflict(format!("{name} is a built-in plugin and cannot be deleted")));
        }
        let record = store::plugins::get(db, name, version).await?;
        let mut tx = db.writer().begin().await.map_err(StoreError::from)?;
        store::plugins::delete(&mut tx, name, version, actor).await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.uploaded.lock().unwrap_or_else(|p| p.into_inner()).remove(&(name.to_string(), version.to_string()));
        self.runtime.unload(&record.sha256);
        Ok(())
    }
}

fn newest(versions: &[PluginRecord]) -> Option<String> {
    versions.iter().filter_map(|r| semver::Version::parse(&r.version).ok()).max().map(|v| v.to_string())
}

pub fn record_of(plugin: &Plugin, builtin: bool) -> PluginRecord {
    let info = plugin.info();
    PluginRecord {
        name: info.name.clone(),
        version: info.version.clone(),
        kind: info.kind.to_string(),
        sha256: plugin.sha256().to_string(),
        description: info.description.clone(),
        config_schema: info.config_schema.clone(),
        size: plugin.size() as i64,
        builtin,
        created_at: None,
    }
}
