//! Standard Webhooks signing: `whsec_` secrets and `v1,<base64 HMAC-SHA256>` signatures over
//! `{id}.{timestamp}.{body}`, several space-separated while a rotated secret is still valid.

use crate::CoreError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Prefix of secrets as shown to users (the part after it is standard base64).
pub const SECRET_PREFIX: &str = "whsec_";

/// A signing secret: the raw key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(…)")
    }
}

impl SigningSecret {
    /// A fresh random 24-byte secret, as Svix and the Standard Webhooks libraries generate.
    pub fn generate() -> Self {
        let mut key = vec![0u8; 24];
        rand::rng().fill_bytes(&mut key);
        SigningSecret(key)
    }

    /// Parses `whsec_<base64>`; the key must be 24–64 bytes.
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let b64 = s.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            CoreError::invalid(format!("a signing secret starts with `{SECRET_PREFIX}`"))
        })?;
        let key = B64
            .decode(b64)
            .map_err(|_| CoreError::invalid("a signing secret is `whsec_` followed by base64"))?;
        if !(24..=64).contains(&key.len()) {
            return Err(CoreError::invalid("a signing secret holds 24 to 64 bytes"));
        }
        Ok(SigningSecret(key))
    }

    /// The `whsec_…` form shown to the user once.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(&self.0))
    }

    /// `v1,<base64 signature>` for one message.
    pub fn sign(&self, msg_id: &str, timestamp_s: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any size");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_s.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header value: one signature per active secret, space-separated.
pub fn signature_header(
    secrets: &[SigningSecret],
    msg_id: &str,
    timestamp_s: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| s.sign(msg_id, timestamp_s, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // The test vector published with the Standard Webhooks reference libraries.
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let sig = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn round_trip_and_rotation() {
        let a = SigningSecret::generate();
        assert_eq!(SigningSecret::parse(&a.expose()).expect("valid"), a);
        let b = SigningSecret::generate();
        let h = signature_header(&[b.clone(), a.clone()], "m", 1, b"{}");
        let parts: Vec<_> = h.split(' ').collect();
        assert_eq!(parts, vec![b.sign("m", 1, b"{}"), a.sign("m", 1, b"{}")]);
        assert!(SigningSecret::parse("nope").is_err());
        assert!(SigningSecret::parse("whsec_AAAA").is_err());
    }
}
