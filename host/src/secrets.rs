//! Secrets at rest: the credentials in plugin configs (gateways, checks)
//! and the link-signing keys are stored sealed, under a key kept outside
//! the database, so a copy of the database alone (the SQLite file, a
//! PostgreSQL dump, a backup site's feed) holds no usable secret.
//!
//! The key comes from `TOCSIN_SECRETS_KEY` or a key file (default
//! `<data-dir>/secrets-key`, mode 0600, made at the first start): 256 bits
//! as 64 hex digits or base64, one per line. The first key seals; every
//! key opens, so a new key is introduced by putting it first and keeping
//! the old one below it until the start-up pass ([`crate::store::sealing`])
//! has sealed everything again under the new one.
//!
//! A sealed value is `enc:v1:<key id>:<base64 of nonce and ciphertext>`:
//! XChaCha20-Poly1305 with a fresh random 192-bit nonce per value (random
//! nonces of that size never collide in practice), the header as associated
//! data. The key id is a fingerprint of the key (an HMAC of a fixed text,
//! which tells nothing about the key), so a controller given the wrong key
//! can say which key the stored values need.
//!
//! Which strings of a config are secret is decided by `redact` (secret
//! names, `headers` values, URLs with more than a destination); sealing
//! follows it, opening opens every sealed string wherever it is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// What every sealed value starts with (the format's version included).
pub const PREFIX: &str = "enc:v1:";
/// The environment variable that holds the key(s), comma-separated.
pub const KEY_ENV: &str = "TOCSIN_SECRETS_KEY";
/// The key file's name in the data directory, when no path is configured.
pub const KEY_FILE: &str = "secrets-key";
const NONCE_LEN: usize = 24;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets key: {0}")]
    BadKey(String),
    #[error(
        "a secret is sealed with key {needed}, which this controller does not have (it has {have}): give every \
         controller and site the same secrets key ({KEY_ENV} or the key file); nothing was changed"
    )]
    UnknownKey { needed: String, have: String },
    #[error("a secret sealed with key {0} does not open: it was altered or cut")]
    Tampered(String),
    #[error("a sealed secret is malformed: {0}")]
    Malformed(String),
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The secrets keys of this process: the first seals, all open.
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<Vec<Key>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({})", self.ids().join(", "))
    }
}

/// A key's fingerprint: tells which key sealed a value, and nothing of it.
fn fingerprint(key: &[u8; 32]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(b"tocsin secrets key id");
    hex::encode(&mac.finalize().into_bytes()[..6])
}

fn parse_key(text: &str) -> Result<[u8; 32], SecretsError> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()
    } else {
        STANDARD.decode(text).ok()
    };
    bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(|| {
        SecretsError::BadKey("a key is 256 bits, written as 64 hex digits or in base64 (44 characters)".into())
    })
}

impl Keyring {
    /// Keys from their text (hex or base64), the sealing one first.
    pub fn from_keys<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Keyring, SecretsError> {
        let mut keys = Vec::new();
        for text in texts {
            let key = parse_key(text)?;
            keys.push(Key { id: fingerprint(&key), cipher: XChaCha20Poly1305::new(&key.into()) });
        }
        if keys.is_empty() {
            return Err(SecretsError::BadKey("no key given".into()));
        }
        Ok(Keyring { keys: Arc::new(keys) })
    }

    /// A fresh random key, in the text form the key file holds.
    pub fn generate() -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    /// The keys of a controller: `TOCSIN_SECRETS_KEY` when set (`env`),
    /// else the key file at `file` (default `<data_dir>/secrets-key`), made
    /// with a fresh key when it does not exist.
    pub fn load(env: Option<&str>, file: Option<&Path>, data_dir: &Path) -> Result<Keyring, SecretsError> {
        if let Some(env) = env.filter(|e| !e.trim().is_empty()) {
            return Keyring::from_keys(env.split(',')).map_err(|e| SecretsError::BadKey(format!("{KEY_ENV}: {e}")));
        }
        let path: PathBuf = file.map(Path::to_path_buf).unwrap_or_else(|| data_dir.join(KEY_FILE));
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => {
                tighten(&path).map_err(|e| SecretsError::BadKey(format!("{shown}: {e}")))?;
                text
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| SecretsError::BadKey(format!("{shown}: {e}")))?;
                }
                let key = Keyring::generate();
                crate::config::save_secret(&path, &key).map_err(|e| SecretsError::BadKey(format!("{shown}: {e}")))?;
                tracing::warn!(path = %shown, "created a new secrets key: back it up (the secrets in the database \
                    cannot be read without it) and give every controller and site of this cluster the same key");
                key
            }
            Err(e) => return Err(SecretsError::BadKey(format!("{shown}: {e}"))),
        };
        let lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        Keyring::from_keys(lines).map_err(|e| SecretsError::BadKey(format!("{shown}: {e}")))
    }

    /// The sealing key's id.
    pub fn current(&self) -> &str {
        &self.keys[0].id
    }

    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// `text` sealed under the first key.
    pub fn seal(&self, text: &str) -> String {
        let key = &self.keys[0];
        let header = format!("{PREFIX}{}:", key.id);
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = key
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: text.as_bytes(), aad: header.as_bytes() })
            .expect("XChaCha20-Poly1305 seals any message of this size");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{header}{}", STANDARD_NO_PAD.encode(bytes))
    }

    /// The text a sealed value stands for.
    pub fn open(&self, sealed: &str) -> Result<String, SecretsError> {
        let (id, body) = sealed_parts(sealed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SecretsError::UnknownKey { needed: id.to_string(), have: self.ids().join(", ") })?;
        let bytes = STANDARD_NO_PAD.decode(body).map_err(|e| SecretsError::Malformed(e.to_string()))?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretsError::Malformed("too short".into()));
        }
        let header = &sealed[..sealed.len() - body.len()];
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let clear = key
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: header.as_bytes() })
            .map_err(|_| SecretsError::Tampered(id.to_string()))?;
        String::from_utf8(clear).map_err(|_| SecretsError::Malformed("not text".into()))
    }

    /// The config with every secret string sealed (sealed ones stay).
    pub fn seal_config(&self, config: &Value) -> Value {
        let mut sealed = config.clone();
        crate::redact::for_each_secret(&mut sealed, &mut |text, _| {
            if !text.is_empty() && !is_sealed(text) {
                *text = self.seal(text);
            }
        });
        sealed
    }

    /// The config with every sealed string opened.
    pub fn open_config(&self, config: &Value) -> Result<Value, SecretsError> {
        let mut clear = config.clone();
        let mut failed = None;
        for_each_sealed(&mut clear, &mut |text| match self.open(text) {
            Ok(open) => *text = open,
            Err(e) => {
                failed.get_or_insert(e);
            }
        });
        failed.map_or(Ok(clear), Err)
    }

    /// Whether `config` holds a secret in clear or one sealed under an
    /// older key (what the start-up pass rewrites).
    pub fn needs_reseal(&self, config: &Value) -> Result<bool, SecretsError> {
        let mut stale = false;
        let mut failed = None;
        let mut probe = config.clone();
        for_each_sealed(&mut probe, &mut |text| match sealed_parts(text) {
            Ok((id, _)) if id == self.current() => {}
            Ok(_) => stale = true,
            Err(e) => {
                failed.get_or_insert(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(stale || Keyring::holds_clear_secret(config))
    }

    /// Whether `config` holds a secret in clear.
    pub fn holds_clear_secret(config: &Value) -> bool {
        let mut clear = false;
        let mut probe = config.clone();
        crate::redact::for_each_secret(&mut probe, &mut |text, _| clear |= !text.is_empty() && !is_sealed(text));
        clear
    }

    /// Fails naming the first sealed string of `value` this keyring cannot
    /// open (what a backup site checks before it stores what it was sent).
    pub fn check_opens(&self, value: &Value) -> Result<(), SecretsError> {
        self.open_config(value).map(|_| ())
    }
}

/// Whether `text` is a sealed value.
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(PREFIX)
}

fn sealed_parts(sealed: &str) -> Result<(&str, &str), SecretsError> {
    let rest = sealed.strip_prefix(PREFIX).ok_or_else(|| SecretsError::Malformed(format!("no `{PREFIX}`")))?;
    rest.split_once(':').ok_or_else(|| SecretsError::Malformed("no key id".into()))
}

/// Visits every sealed string in `value`, at any depth.
fn for_each_sealed(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match value {
        Value::Object(map) => map.values_mut().for_each(|v| for_each_sealed(v, f)),
        Value::Array(items) => items.iter_mut().for_each(|v| for_each_sealed(v, f)),
        Value::String(text) if is_sealed(text) => f(text),
        _ => {}
    }
}

/// Makes a key file readable by its owner only (an older or hand-made one
/// may be open to others).
fn tighten(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the secrets key file was readable by others: tightened to 0600");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ring(keys: &[&str]) -> Keyring {
        Keyring::from_keys(keys.iter().copied()).unwrap()
    }

    const A: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const B: &str = "0202020202020202020202020202020202020202020202020202020202020202";

    #[test]
    fn configs_seal_their_secrets_and_open_again() {
        let keys = ring(&[A]);
        let config = json!({
            "url": "https://hooks.slack.com/services/T000/B000/XXXX", "auth_token": "s3cret",
            "headers": {"Authorization": "Bearer abc"}, "channel": "#ops", "empty_token": "",
        });
        let sealed = keys.seal_config(&config);
        let text = sealed.to_string();
        for secret in ["XXXX", "s3cret", "Bearer abc"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(sealed["channel"], "#ops", "what is not secret stays readable");
        assert_eq!(sealed["empty_token"], "", "nothing to hide in an empty string");
        assert!(sealed["auth_token"].as_str().unwrap().starts_with(&format!("{PREFIX}{}:", keys.current())));
        assert_ne!(keys.seal("x"), keys.seal("x"), "a fresh nonce per value");
        assert_eq!(keys.open_config(&sealed).unwrap(), config);
        assert_eq!(keys.seal_config(&sealed), sealed, "sealing twice changes nothing");
        assert!(!keys.needs_reseal(&sealed).unwrap());
        assert!(keys.needs_reseal(&config).unwrap());
    }

    #[test]
    fn a_wrong_key_or_an_altered_value_does_not_open() {
        let sealed = ring(&[A]).seal("s3cret");
        let other = ring(&[B]);
        let err = other.open(&sealed).unwrap_err();
        assert!(matches!(&err, SecretsError::UnknownKey { needed, .. } if needed == ring(&[A]).current()), "{err}");
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap();
        assert!(matches!(ring(&[A]).open(&altered), Err(SecretsError::Tampered(_))));
        assert!(matches!(ring(&[A]).open("enc:v1:nokey"), Err(SecretsError::Malformed(_))));
    }

    #[test]
    fn a_new_key_first_opens_the_old_and_seals_anew() {
        let old = ring(&[A]).seal_config(&json!({"token": "t"}));
        let rotated = ring(&[B, A]);
        assert!(rotated.needs_reseal(&old).unwrap());
        let again = rotated.seal_config(&rotated.open_config(&old).unwrap());
        assert!(!rotated.needs_reseal(&again).unwrap());
        assert_eq!(ring(&[B]).open_config(&again).unwrap(), json!({"token": "t"}));
    }

    #[test]
    fn keys_are_256_bits_in_hex_or_base64() {
        assert!(Keyring::from_keys([STANDARD.encode([7u8; 32]).as_str()]).is_ok());
        for bad in ["", "abcd", &A[..62]] {
            assert!(matches!(Keyring::from_keys([bad]), Err(SecretsError::BadKey(_))), "{bad}");
        }
    }

    #[test]
    fn a_missing_key_file_is_made_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = Keyring::load(None, None, dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(Keyring::load(None, None, dir.path()).unwrap().current(), first.current());
        assert_eq!(Keyring::load(Some(A), None, dir.path()).unwrap().current(), ring(&[A]).current());
    }
}
