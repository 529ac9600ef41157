//! Proof that a key-press callback comes from Twilio: the
//! `X-Twilio-Signature` header, Base64 of HMAC-SHA1 keyed by the account's
//! auth token over the URL Twilio was given followed by every form field,
//! sorted by name, as name and value with no separator (Twilio's "Webhooks
//! security"). The link in the URL already proves which notification is
//! answered; the signature proves that Twilio, not whoever learned the
//! link, reports the key press.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The signature Twilio sends for a POST of `form` to `url`.
pub fn signature(auth_token: &str, url: &str, form: &[(String, String)]) -> String {
    let mut fields: Vec<&(String, String)> = form.iter().collect();
    fields.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in fields {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `header` is Twilio's signature of this callback (constant time).
pub fn verify(auth_token: &str, url: &str, form: &[(String, String)], header: &str) -> bool {
    signature(auth_token, url, form).as_bytes().ct_eq(header.trim().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twilio's own example (api-snippets, security/signature_validation).
    #[test]
    fn twilios_example_verifies() {
        let form: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]
        .iter()
        .rev()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert!(verify("12345", url, &form, "GvWf1cFY/Q7PnoempGyD5oXAezc="));
        assert!(!verify("12346", url, &form, "GvWf1cFY/Q7PnoempGyD5oXAezc="), "another token");
        assert!(!verify("12345", "https://mycompany.com/other", &form, "GvWf1cFY/Q7PnoempGyD5oXAezc="));
        let mut pressed = form.clone();
        pressed[2].1 = "1".into();
        assert!(!verify("12345", url, &pressed, "GvWf1cFY/Q7PnoempGyD5oXAezc="), "another key press");
    }
}
