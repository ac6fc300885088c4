//! Secrets at rest: AES-256-GCM under the instance master key, and hashing of API keys.
//!
//! Every ciphertext is bound to where it is stored (associated data such as
//! `endpoint:ep_…:secrets`), so copying a ciphertext into another row or organization does not
//! decrypt there.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key must be 32 bytes of standard base64")]
    BadKey,
    #[error("ciphertext does not decrypt under this master key (wrong key or tampered data)")]
    Decrypt,
}

/// The instance master key. Never logged (its `Debug` hides it).
#[derive(Clone)]
pub struct MasterKey(Aes256Gcm);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

const NONCE_LEN: usize = 12;

impl MasterKey {
    /// A new random key, returned with its base64 form (to be written to the key file).
    pub fn generate() -> (MasterKey, String) {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let b64 = B64.encode(raw);
        (MasterKey(Aes256Gcm::new(&raw.into())), b64)
    }

    /// Parses the base64 form (surrounding whitespace ignored).
    pub fn from_base64(s: &str) -> Result<MasterKey, CryptoError> {
        let raw = B64.decode(s.trim()).map_err(|_| CryptoError::BadKey)?;
        let raw: [u8; 32] = raw.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(MasterKey(Aes256Gcm::new(&raw.into())))
    }

    /// `nonce || ciphertext+tag`, bound to `context`.
    pub fn encrypt(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn decrypt(&self, context: &str, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if blob.len() < NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        self.0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// API keys are 32 random bytes, so a plain SHA-256 is a sound one-way hash for lookup.
pub fn hash_api_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The part of a key that may be shown again after creation (listing keys): `sy_` and four
/// characters, far too few to guess the rest from.
pub fn api_key_prefix(key: &str) -> String {
    key.chars().take(7).collect()
}

/// A new API key: `sy_` + 43 characters of URL-safe base64.
pub fn generate_api_key() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    format!(
        "sy_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_round_trip_bound_to_context() {
        let (k, b64) = MasterKey::generate();
        let blob = k.encrypt("endpoint:ep_1:token", b"s3cret");
        assert!(!blob.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(
            k.decrypt("endpoint:ep_1:token", &blob).expect("decrypts"),
            b"s3cret"
        );
        assert!(
            k.decrypt("endpoint:ep_2:token", &blob).is_err(),
            "context is bound"
        );
        let again = MasterKey::from_base64(&b64).expect("parses");
        assert_eq!(
            again
                .decrypt("endpoint:ep_1:token", &blob)
                .expect("decrypts"),
            b"s3cret"
        );
        let (other, _) = MasterKey::generate();
        assert!(other.decrypt("endpoint:ep_1:token", &blob).is_err());
        let mut tampered = blob.clone();
        tampered[15] ^= 1;
        assert!(k.decrypt("endpoint:ep_1:token", &tampered).is_err());
        assert!(MasterKey::from_base64("short").is_err());
    }

    #[test]
    fn api_keys() {
        let a = generate_api_key();
        assert!(a.starts_with("sy_") && a.len() == 46);
        assert_eq!(hash_api_key(&a), hash_api_key(&a));
        assert_ne!(hash_api_key(&a), hash_api_key(&generate_api_key()));
    }
}
