//! OpenPGP encryption of finished files to a user's public key (`.gpg`), as the
//! dataset-export product offers: only the key's owner can read the exported data.

use std::fmt;
use std::sync::Arc;

use pgp::composed::{Deserializable, MessageBuilder, SignedPublicKey};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::KeyDetails;

use crate::EncodeError;

/// The recipient of encrypted files: an ASCII-armored public key with an encryption key.
#[derive(Clone)]
pub struct PgpRecipient {
    key: Arc<SignedPublicKey>,
    fingerprint: String,
}

impl PgpRecipient {
    /// Parses an armored public key (`-----BEGIN PGP PUBLIC KEY BLOCK-----`).
    pub fn from_armored(text: &str) -> Result<Self, String> {
        let (key, _) = SignedPublicKey::from_string(text)
            .map_err(|e| format!("not an ASCII-armored OpenPGP public key: {e}"))?;
        let can_encrypt = key.primary_key.algorithm().can_encrypt()
            || key
                .public_subkeys
                .iter()
                .any(|s| s.algorithm().can_encrypt());
        if !can_encrypt {
            return Err("the key has no encryption (sub)key".into());
        }
        let fingerprint = format!("{:?}", key.primary_key.fingerprint());
        Ok(Self {
            key: Arc::new(key),
            fingerprint,
        })
    }

    /// Encrypts `body` (SEIPD v1, AES-256) to the key's first encryption-capable subkey, or
    /// to the primary key when it can encrypt and no subkey can.
    pub fn encrypt(&self, body: Vec<u8>) -> Result<Vec<u8>, EncodeError> {
        let err = |e: pgp::errors::Error| EncodeError::Writer {
            format: "pgp",
            detail: e.to_string(),
        };
        let mut builder = MessageBuilder::from_bytes("", body)
            .seipd_v1(rand::thread_rng(), SymmetricKeyAlgorithm::AES256);
        match self
            .key
            .public_subkeys
            .iter()
            .find(|s| s.algorithm().can_encrypt())
        {
            Some(sub) => builder
                .encrypt_to_key(rand::thread_rng(), sub)
                .map_err(err)?,
            None => builder
                .encrypt_to_key(rand::thread_rng(), &self.key.primary_key)
                .map_err(err)?,
        };
        builder.to_vec(rand::thread_rng()).map_err(err)
    }
}

impl fmt::Debug for PgpRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgpRecipient({})", self.fingerprint)
    }
}

impl PartialEq for PgpRecipient {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}
