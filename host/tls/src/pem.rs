//! Certificates and keys from PEM files, with errors that name the file and
//! say what it lacks (the usual mistakes: a wrong path, the key and the
//! certificate swapped, a DER file).

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::file(what, path, format!("cannot read it: {e}")))
}

/// Every certificate in `path`, in order (a chain: the leaf first).
/// `what` names the file's role in errors ("TLS certificate", "CA").
pub fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::file(what, path, format!("not a PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(Error::file(what, path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

/// The private key in `path` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let bytes = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            Error::file(what, path, "holds no PEM private key (-----BEGIN PRIVATE KEY----- or similar)")
        }
        e => Error::file(what, path, format!("not a PEM file: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_what_it_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = certificates("TLS certificate", &missing).unwrap_err().to_string();
        assert!(err.starts_with(&format!("TLS certificate {}: cannot read it", missing.display())), "{err}");

        let issued = crate::LocalCa::new("test").unwrap().issue(&["localhost"]).unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, &issued.key_pem).unwrap();
        let err = certificates("TLS certificate", &key).unwrap_err().to_string();
        assert!(err.contains("key.pem: holds no PEM certificate"), "{err}");

        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        let err = private_key("TLS key", &cert).unwrap_err().to_string();
        assert!(err.contains("cert.pem: holds no PEM private key"), "{err}");
        assert_eq!(certificates("TLS certificate", &cert).unwrap().len(), 1);
        private_key("TLS key", &key).unwrap();
    }
}
