//! Plugins for a `tocsin node`: its built-ins, and uploaded ones fetched
//! from a controller by sha256, checked against that sha256 and kept on
//! disk so a restart without a controller can still run them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tocsin_runtime::Plugin;

use super::agent::PluginSource;
use super::link::Link;
use super::schedule::AssignedCheck;
use crate::catalog::Catalog;

pub struct NodePlugins {
    pub catalog: Catalog,
    pub link: Arc<dyn Link>,
    pub dir: PathBuf,
    pub loaded: Mutex<HashMap<String, Plugin>>,
}

impl NodePlugins {
    async fn uploaded(&self, sha256: &str) -> Result<Plugin, String> {
        if let Some(plugin) = self.loaded.lock().unwrap_or_else(|p| p.into_inner()).get(sha256) {
            return Ok(plugin.clone());
        }
        let path = self.dir.join(format!("{sha256}.wasm"));
        let wasm = match std::fs::read(&path) {
            Ok(wasm) if hex::encode(Sha256::digest(&wasm)) == sha256 => wasm,
            _ => {
                let wasm =
                    self.link.plugin(sha256.to_string()).await.map_err(|e| format!("fetching plugin {sha256}: {e}"))?;
                if hex::encode(Sha256::digest(&wasm)) != sha256 {
                    return Err(format!("the controller sent plugin bytes that do not match sha256 {sha256}"));
                }
                if let Err(e) = std::fs::create_dir_all(&self.dir).and_then(|()| std::fs::write(&path, &wasm)) {
                    tracing::warn!(path = %path.display(), error = %e, "could not keep a plugin on disk");
                }
                wasm
            }
        };
        let plugin = self.catalog.runtime().load(&wasm).await.map_err(|e| e.to_string())?;
        self.loaded.lock().unwrap_or_else(|p| p.into_inner()).insert(sha256.to_string(), plugin.clone());
        Ok(plugin)
    }
}

impl PluginSource for NodePlugins {
    fn plugin<'a>(&'a self, check: &'a AssignedCheck) -> BoxFuture<'a, Result<Plugin, String>> {
        Box::pin(async move {
            match &check.sha256 {
                Some(sha) => self.uploaded(sha).await,
                None => self.catalog.builtin(&check.plugin).ok_or_else(|| {
                    format!("this node has no built-in plugin {:?} (is it older than the controller?)", check.plugin)
                }),
            }
        })
    }
}
