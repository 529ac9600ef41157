//! Compiled plugins on disk, keyed by the sha256 of the `.wasm` and by the
//! engine's compatibility hash (wasmtime version and settings), so a
//! plugin is compiled once per host build and configuration.
//!
//! Architecture invariant: only artifacts this host wrote are ever
//! deserialized (deserializing is `unsafe`: it trusts the bytes to be
//! machine code wasmtime produced). Files are written to a temporary name
//! and renamed, so a crash never leaves a half-written artifact in place.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    pub fn open(root: &Path, engine: &Engine) -> Result<Self, crate::Error> {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = root.join(format!("{:016x}", hasher.finish()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| crate::Error::Config(format!("plugin cache {}: {e}", dir.display())))?;
        Ok(Self { dir })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.cwasm"))
    }

    /// The cached component, if there is a usable one.
    pub fn get(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: files in this directory are written only by `put`, with
        // bytes from `Engine::precompile_component` of a compatible engine.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding an unusable cached plugin");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    pub fn put(&self, sha256: &str, artifact: &[u8]) {
        let path = self.path(sha256);
        let tmp = self.dir.join(format!(".{sha256}.{}.{:x}.tmp", std::process::id(), rand::random::<u64>()));
        let written = std::fs::write(&tmp, artifact).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            // The plugin still works; it will be compiled again next time.
            tracing::warn!(path = %path.display(), error = %e, "could not cache a compiled plugin");
            let _ = std::fs::remove_file(&tmp);
        }
    }
}
