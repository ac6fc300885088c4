//! Standard Webhooks signing, both schemes: symmetric `whsec_` secrets signing
//! `v1,<base64 HMAC-SHA256>`, and asymmetric Ed25519 `whsk_` secret keys signing
//! `v1a,<base64 signature>` that receivers check with the `whpk_` public key. Both sign
//! `{id}.{timestamp}.{body}`; several signatures are space-separated while a rotated key is
//! still valid. [`verify`] checks a request against a secret or a public key.

use crate::CoreError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, Verifier};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Prefix of HMAC secrets as shown to users (the part after it is standard base64).
pub const SECRET_PREFIX: &str = "whsec_";
/// Prefix of Ed25519 secret keys (base64 of the 32-byte seed, or of seed and public key).
pub const SECRET_KEY_PREFIX: &str = "whsk_";
/// Prefix of Ed25519 public keys (base64 of the 32-byte key).
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";
/// How far a request's timestamp may be from now and still verify.
pub const TOLERANCE_S: i64 = 5 * 60;

/// How an endpoint's requests are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `v1`: HMAC-SHA256 with a secret the receiver also holds.
    Hmac,
    /// `v1a`: Ed25519; the receiver holds only the public key.
    Ed25519,
}

impl Scheme {
    pub fn parse(s: &str) -> Option<Scheme> {
        match s {
            "hmac" => Some(Scheme::Hmac),
            "ed25519" => Some(Scheme::Ed25519),
            _ => None,
        }
    }

    /// The `signing` setting of an endpoint or a rotation.
    pub fn parse_setting(s: &str) -> Result<Scheme, CoreError> {
        Scheme::parse(s).ok_or_else(|| CoreError::invalid("`signing` must be `hmac` or `ed25519`"))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Hmac => "hmac",
            Scheme::Ed25519 => "ed25519",
        }
    }
}

/// A signing key of either scheme.
#[derive(Clone)]
pub enum SigningSecret {
    Hmac(Vec<u8>),
    Ed25519(ed25519_dalek::SigningKey),
}

impl PartialEq for SigningSecret {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SigningSecret::Hmac(a), SigningSecret::Hmac(b)) => a == b,
            (SigningSecret::Ed25519(a), SigningSecret::Ed25519(b)) => a.to_bytes() == b.to_bytes(),
            _ => false,
        }
    }
}

impl Eq for SigningSecret {}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(…)")
    }
}

impl SigningSecret {
    /// A fresh random 24-byte HMAC secret, as Svix and the Standard Webhooks libraries generate.
    pub fn generate() -> Self {
        let mut key = vec![0u8; 24];
        rand::rng().fill_bytes(&mut key);
        SigningSecret::Hmac(key)
    }

    /// A fresh Ed25519 key pair.
    pub fn generate_ed25519() -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        SigningSecret::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// A fresh key of `scheme`.
    pub fn generate_for(scheme: Scheme) -> Self {
        match scheme {
            Scheme::Hmac => Self::generate(),
            Scheme::Ed25519 => Self::generate_ed25519(),
        }
    }

    /// Parses `whsec_<base64>` (24–64 bytes) or `whsk_<base64>` (a 32-byte Ed25519 seed, or the
    /// 64 bytes of seed and public key, which must match).
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        if let Some(b64) = s.strip_prefix(SECRET_KEY_PREFIX) {
            let raw = B64.decode(b64).map_err(|_| {
                CoreError::invalid("an Ed25519 secret key is `whsk_` followed by base64")
            })?;
            let seed: [u8; 32] = raw
                .get(..32)
                .and_then(|s| s.try_into().ok())
                .filter(|_| raw.len() == 32 || raw.len() == 64)
                .ok_or_else(|| CoreError::invalid("an Ed25519 secret key holds 32 or 64 bytes"))?;
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            if raw.len() == 64 && raw[32..] != key.verifying_key().to_bytes() {
                return Err(CoreError::invalid(
                    "the public half of this Ed25519 secret key does not match its seed",
                ));
            }
            return Ok(SigningSecret::Ed25519(key));
        }
        let b64 = s.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            CoreError::invalid(format!(
                "a signing secret starts with `{SECRET_PREFIX}` (HMAC) or `{SECRET_KEY_PREFIX}` (Ed25519)"
            ))
        })?;
        let key = B64
            .decode(b64)
            .map_err(|_| CoreError::invalid("a signing secret is `whsec_` followed by base64"))?;
        if !(24..=64).contains(&key.len()) {
            return Err(CoreError::invalid("a signing secret holds 24 to 64 bytes"));
        }
        Ok(SigningSecret::Hmac(key))
    }

    pub fn scheme(&self) -> Scheme {
        match self {
            SigningSecret::Hmac(_) => Scheme::Hmac,
            SigningSecret::Ed25519(_) => Scheme::Ed25519,
        }
    }

    /// The `whsec_…` or `whsk_…` form (shown to the user once for HMAC; stored encrypted).
    pub fn expose(&self) -> String {
        match self {
            SigningSecret::Hmac(k) => format!("{SECRET_PREFIX}{}", B64.encode(k)),
            SigningSecret::Ed25519(k) => format!("{SECRET_KEY_PREFIX}{}", B64.encode(k.to_bytes())),
        }
    }

    /// The `whpk_…` public key of an Ed25519 key; `None` for HMAC.
    pub fn public_key(&self) -> Option<String> {
        match self {
            SigningSecret::Hmac(_) => None,
            SigningSecret::Ed25519(k) => Some(format!(
                "{PUBLIC_KEY_PREFIX}{}",
                B64.encode(k.verifying_key().to_bytes())
            )),
        }
    }

    /// `v1,<base64>` or `v1a,<base64>` for one message.
    pub fn sign(&self, msg_id: &str, timestamp_s: i64, body: &[u8]) -> String {
        match self {
            SigningSecret::Hmac(k) => {
                // Streamed: the body is not copied.
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(k).expect("HMAC takes keys of any size");
                mac.update(msg_id.as_bytes());
                mac.update(b".");
                mac.update(timestamp_s.to_string().as_bytes());
                mac.update(b".");
                mac.update(body);
                format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
            }
            SigningSecret::Ed25519(k) => {
                let content = signed_content(msg_id, timestamp_s, body);
                format!("v1a,{}", B64.encode(k.sign(&content).to_bytes()))
            }
        }
    }
}

fn signed_content(msg_id: &str, timestamp_s: i64, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(msg_id.len() + body.len() + 24);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp_s.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
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

/// Why a request does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the key is not a `whsec_` secret, a `whsk_` secret key or a `whpk_` public key: {0}")]
    BadKey(String),
    #[error("the `webhook-timestamp` is not a number of seconds")]
    BadTimestamp,
    #[error(
        "the request is {0} s away from now, more than the {TOLERANCE_S} s allowed (a replay?)"
    )]
    TooOld(i64),
    #[error("no `{0}` signature in `webhook-signature`")]
    NoSignature(&'static str),
    #[error("no `{0}` signature matches this key and body")]
    Mismatch(&'static str),
}

/// Checks a request against `key` (a `whsec_` secret, a `whsk_` secret key or a `whpk_` public
/// key): the timestamp within [`TOLERANCE_S`] of `now_s`, and one signature of the key's scheme
/// in `signature_header` matching.
pub fn verify(
    key: &str,
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now_s: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if (now_s - ts).abs() > TOLERANCE_S {
        return Err(VerifyError::TooOld(now_s - ts));
    }
    let vk = if let Some(b64) = key.strip_prefix(PUBLIC_KEY_PREFIX) {
        let raw: [u8; 32] = B64
            .decode(b64)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| VerifyError::BadKey("a public key holds 32 bytes".into()))?;
        ed25519_dalek::VerifyingKey::from_bytes(&raw)
            .map_err(|e| VerifyError::BadKey(e.to_string()))?
    } else {
        match SigningSecret::parse(key).map_err(|e| VerifyError::BadKey(e.to_string()))? {
            SigningSecret::Ed25519(k) => k.verifying_key(),
            hmac @ SigningSecret::Hmac(_) => {
                return verify_hmac(&hmac, msg_id, ts, signature_header, body);
            }
        }
    };
    let content = signed_content(msg_id, ts, body);
    let found: Vec<&str> = signature_header
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1a,"))
        .collect();
    if found.is_empty() {
        return Err(VerifyError::NoSignature("v1a"));
    }
    let ok = found.iter().any(|b64| {
        B64.decode(b64)
            .ok()
            .and_then(|raw| <[u8; 64]>::try_from(raw).ok())
            .is_some_and(|raw| {
                vk.verify(&content, &ed25519_dalek::Signature::from_bytes(&raw))
                    .is_ok()
            })
    });
    if ok {
        Ok(())
    } else {
        Err(VerifyError::Mismatch("v1a"))
    }
}

/// One `v1` signature in the header matching `secret`'s, compared in constant time.
fn verify_hmac(
    secret: &SigningSecret,
    msg_id: &str,
    ts: i64,
    signature_header: &str,
    body: &[u8],
) -> Result<(), VerifyError> {
    let expected = secret.sign(msg_id, ts, body);
    let want = B64.decode(&expected[3..]).unwrap_or_default();
    let found: Vec<&str> = signature_header
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .collect();
    if found.is_empty() {
        return Err(VerifyError::NoSignature("v1"));
    }
    let matches = |b64: &&str| {
        B64.decode(b64).is_ok_and(|got| {
            got.len() == want.len()
                && got.iter().zip(&want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        })
    };
    if found.iter().any(matches) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch("v1"))
    }
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

    #[test]
    fn ed25519_signs_v1a_and_verifies_with_the_public_key_only() {
        let k = SigningSecret::generate_ed25519();
        assert_eq!(k.scheme(), Scheme::Ed25519);
        assert_eq!(SigningSecret::parse(&k.expose()).expect("valid"), k);
        let public = k.public_key().expect("a public key");
        assert!(public.starts_with("whpk_"));
        let sig = k.sign("msg_1", 1000, b"{}");
        assert!(sig.starts_with("v1a,"));
        verify(&public, "msg_1", "1000", &sig, b"{}", 1010).expect("valid");
        verify(&k.expose(), "msg_1", "1000", &sig, b"{}", 1010).expect("valid with the secret key");
        assert_eq!(
            verify(&public, "msg_1", "1000", &sig, b"{ }", 1010),
            Err(VerifyError::Mismatch("v1a"))
        );
        assert_eq!(
            verify(
                &public,
                "msg_1",
                "1000",
                &sig,
                b"{}",
                1000 + TOLERANCE_S + 1
            ),
            Err(VerifyError::TooOld(TOLERANCE_S + 1))
        );
        let other = SigningSecret::generate_ed25519().public_key().expect("pk");
        assert_eq!(
            verify(&other, "msg_1", "1000", &sig, b"{}", 1010),
            Err(VerifyError::Mismatch("v1a"))
        );
        // Both schemes side by side during a change of scheme: each key finds its own.
        let h = SigningSecret::generate();
        let header = signature_header(&[k.clone(), h.clone()], "m", 5, b"x");
        verify(&public, "m", "5", &header, b"x", 5).expect("v1a found");
        verify(&h.expose(), "m", "5", &header, b"x", 5).expect("v1 found");
        assert!(SigningSecret::parse("whsk_AAAA").is_err());
    }

    #[test]
    fn hmac_verification_rejects_tampering() {
        let h = SigningSecret::generate();
        let sig = h.sign("m", 7, b"body");
        verify(&h.expose(), "m", "7", &sig, b"body", 7).expect("valid");
        assert_eq!(
            verify(&h.expose(), "m", "7", &sig, b"bodY", 7),
            Err(VerifyError::Mismatch("v1"))
        );
        assert_eq!(
            verify(&h.expose(), "m", "x", &sig, b"body", 7),
            Err(VerifyError::BadTimestamp)
        );
    }
}
