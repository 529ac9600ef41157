//! Compiled plugins on disk, keyed by the sha256 of the `.wasm` and by the
//! engine's compatibility hash (wasmtime version and settings), so a
//! plugin is compiled once per host build and configuration.
//!
//! Architecture invariant: only artifacts this host wrote are ever
//! deserialized. Deserializing is `unsafe`: it trusts the bytes to be
//! machine code wasmtime produced, so whoever can write a file here could
//! otherwise run code in the host. Each file is therefore an HMAC-SHA-256
//! tag followed by the artifact; the tag covers the plugin's sha256 and
//! the artifact, under a key of 256 random bits kept in `cache-key` (mode
//! 0600) in the cache's directory and made on first use. A file whose tag
//! does not verify (flipped bits, another plugin's artifact, a file from
//! elsewhere) is deleted, logged, counted and compiled again; it is never
//! deserialized. The tag sits in the same file as what it covers, so the
//! write (to a temporary name, then renamed) replaces both at once and a
//! reader never pairs one artifact with another's tag.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

type Tag = Hmac<Sha256>;
const TAG_BYTES: usize = 32;
const KEY_FILE: &str = "cache-key";

pub(crate) struct ArtifactCache {
    dir: PathBuf,
    key: [u8; 32],
    rejected: AtomicU64,
}

impl ArtifactCache {
    pub fn open(root: &Path, engine: &Engine) -> Result<Self, crate::Error> {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = root.join(format!("{:016x}", hasher.finish()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| crate::Error::Config(format!("plugin cache {}: {e}", dir.display())))?;
        let key = key(&root.join(KEY_FILE))?;
        Ok(Self { dir, key, rejected: AtomicU64::new(0) })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.cwasm"))
    }

    fn tag(&self, sha256: &str) -> Tag {
        let mut tag = Tag::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        // The name is covered too: one plugin's artifact under another's
        // name does not verify.
        tag.update(sha256.as_bytes());
        tag.update(&[0]);
        tag
    }

    /// Cached files that failed their authentication, since start.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// The cached component, if there is an authentic, usable one.
    pub fn get(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a cached plugin; compiling it again");
                return None;
            }
        };
        let authentic = bytes.len() > TAG_BYTES && {
            let (tag, artifact) = bytes.split_at(TAG_BYTES);
            let mut expected = self.tag(sha256);
            expected.update(artifact);
            // Constant time: the comparison says nothing about the tag.
            expected.verify_slice(tag).is_ok()
        };
        if !authentic {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                path = %path.display(), sha256, bytes = bytes.len(),
                "discarding a cached plugin that fails its authentication (altered, or not written by this host); \
                 compiling it again"
            );
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // SAFETY: the tag proves the bytes were written by `put`, which
        // stores only what `Engine::precompile_component` of an engine with
        // this compatibility hash produced.
        match unsafe { Component::deserialize(engine, &bytes[TAG_BYTES..]) } {
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
        let mut tag = self.tag(sha256);
        tag.update(artifact);
        let tag = tag.finalize().into_bytes();
        let written = std::fs::File::create(&tmp)
            .and_then(|mut file| {
                file.write_all(&tag)?;
                file.write_all(artifact)
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            // The plugin still works; it will be compiled again next time.
            tracing::warn!(path = %path.display(), error = %e, "could not cache a compiled plugin");
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// The cache's key: read from `path`, or made (256 random bits, hex, mode
/// 0600) when there is none. Several processes may share a cache and start
/// at once: the key is written under a temporary name and hard-linked into
/// place, which fails if another process got there first; then theirs is
/// read, so all agree on one key.
fn key(path: &Path) -> Result<[u8; 32], crate::Error> {
    let problem = |what: String| crate::Error::Config(format!("plugin cache key {}: {what}", path.display()));
    if !path.exists() {
        let fresh: [u8; 32] = rand::random();
        let tmp = path.with_extension(format!("{}.{:x}.tmp", std::process::id(), rand::random::<u64>()));
        let made = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(hex::encode(fresh).as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| match std::fs::hard_link(&tmp, path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            });
        let _ = std::fs::remove_file(&tmp);
        made.map_err(|e| problem(format!("cannot create it: {e}")))?;
        tracing::info!(path = %path.display(), "made a key to authenticate compiled plugins");
    }
    let text = std::fs::read_to_string(path).map_err(|e| problem(format!("cannot read it: {e}")))?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key)
        .map_err(|e| problem(format!("not 64 hexadecimal digits ({e}); delete it to make a new one")))?;
    Ok(key)
}
