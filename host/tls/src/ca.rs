//! A throwaway certificate authority, for `tocsin dev` and the tests: a CA
//! made on the spot and the certificates it signs, as PEM text. Nothing
//! here is meant for production; there the operator's own CA (or a public
//! one) signs the certificates.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::Error;

pub struct LocalCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn failed(e: rcgen::Error) -> Error {
    Error::Settings(format!("making a certificate: {e}"))
}

impl LocalCa {
    /// A new CA whose certificate is named `name`.
    pub fn new(name: &str) -> Result<LocalCa, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(failed)?;
        Ok(LocalCa { issuer: CertifiedIssuer::self_signed(params, key).map_err(failed)? })
    }

    /// The CA's certificate: what clients are given to trust (`--ca`).
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (host names or IP addresses), also
    /// good as a client certificate (mutual TLS) named after the first.
    pub fn issue(&self, names: &[&str]) -> Result<Issued, Error> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).map_err(failed)?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().map_err(failed)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(failed)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}
