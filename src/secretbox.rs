//! Secrets at rest (contract §11): webhook signing secrets are stored
//! encrypted with `secrets.master_key` (AES-256-GCM, aws-lc-rs, a random
//! nonce per value, the owning row's id as associated data so a value
//! cannot be moved to another row). A database dump alone signs nothing.
//!
//! Stored form: `enc:v1:` + base64(nonce ‖ ciphertext ‖ tag). A value
//! without the prefix is a secret stored before encryption; it is still
//! read, and [`crate::app`] encrypts those rows at start.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The prefix of an encrypted value.
const PREFIX: &str = "enc:v1:";

/// The key payd uses outside production when `secrets.master_key` is not
/// set: public, so development data is never protected by it.
const DEVELOPMENT_KEY: [u8; 32] = *b"payd development key: not secret";

/// Why a stored secret cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// Not base64, too short, or it does not open with this key and row:
    /// another master key, or a value moved between rows.
    #[error("the stored secret does not decrypt with secrets.master_key")]
    Undecryptable,
}

/// The master key, ready to seal and open.
pub struct SecretBox {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// From 32 key bytes.
    pub fn new(key: &[u8; 32]) -> Self {
        Self { key: RandomizedNonceKey::new(&AES_256_GCM, key).expect("AES-256-GCM takes a 32-byte key") }
    }

    /// The development key (see [`DEVELOPMENT_KEY`]).
    pub fn development() -> Self {
        Self::new(&DEVELOPMENT_KEY)
    }

    /// Parses `secrets.master_key`: base64 of 32 bytes.
    pub fn parse(base64: &str) -> Option<Self> {
        let bytes = STANDARD.decode(base64.trim()).ok()?;
        Some(Self::new(&<[u8; 32]>::try_from(bytes.as_slice()).ok()?))
    }

    /// Encrypts `secret` for the row `owner`.
    pub fn seal(&self, owner: &str, secret: &str) -> String {
        let mut data = secret.as_bytes().to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(owner.as_bytes()), &mut data)
            .expect("sealing a short secret cannot fail");
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&data);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// Decrypts a stored value of the row `owner`; a value stored before
    /// encryption is answered as it is.
    pub fn open(&self, owner: &str, stored: &str) -> Result<String, SecretError> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else { return Ok(stored.to_owned()) };
        let bytes = STANDARD.decode(encoded).map_err(|_| SecretError::Undecryptable)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Undecryptable);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Undecryptable)?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(owner.as_bytes()), &mut sealed)
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Undecryptable)
    }

    /// True for a value stored before encryption.
    pub fn is_plain(stored: &str) -> bool {
        !stored.starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_open_only_with_their_key_and_row() {
        let sb = SecretBox::parse(&STANDARD.encode([7u8; 32])).unwrap();
        let sealed = sb.seal("we_1", "whsec_abc");
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("whsec_abc"));
        assert_ne!(sealed, sb.seal("we_1", "whsec_abc"), "a fresh nonce each time");
        assert_eq!(sb.open("we_1", &sealed).as_deref(), Ok("whsec_abc"));
        assert_eq!(sb.open("we_2", &sealed), Err(SecretError::Undecryptable), "moved to another row");
        assert_eq!(SecretBox::development().open("we_1", &sealed), Err(SecretError::Undecryptable));
        assert_eq!(sb.open("we_1", "whsec_plain").as_deref(), Ok("whsec_plain"), "stored before encryption");
        assert_eq!(sb.open("we_1", "enc:v1:!!"), Err(SecretError::Undecryptable));
        assert!(SecretBox::parse("c2hvcnQ=").is_none(), "not 32 bytes");
    }
}
