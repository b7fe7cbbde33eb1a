//! OpenPGP encryption of finished files to a user's public key (`.gpg`), as the
//! dataset-export product offers: only the key's owner can read the exported data.

use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;

use pgp::composed::{Deserializable, MessageBuilder, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::SignatureType;
use pgp::types::{KeyDetails, Timestamp};

use crate::{EncodeError, Sink};

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
        if !key.details.revocation_signatures.is_empty() {
            return Err("the key is revoked".into());
        }
        encryption_key(&key, Timestamp::now().as_secs())?;
        let fingerprint = format!("{:?}", key.primary_key.fingerprint());
        Ok(Self {
            key: Arc::new(key),
            fingerprint,
        })
    }

    /// Runs `write` with a sink whose bytes are encrypted (SEIPD v1, AES-256) to the key's
    /// encryption subkey (see `encryption_key`) as they come: `write` runs here, the encryptor on a second thread, and a bounded
    /// pipe of `PIPE_CHUNK` pieces joins them, so the plaintext never exists whole. Returns
    /// the encrypted file and what `write` returned.
    pub(crate) fn encrypt_streaming<T>(
        &self,
        write: impl FnOnce(Sink) -> Result<T, EncodeError>,
    ) -> Result<(Vec<u8>, T), EncodeError> {
        let err = |e: pgp::errors::Error| EncodeError::Encrypt(e.to_string());
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH);
        std::thread::scope(|scope| {
            let encryptor = scope.spawn(move || {
                let mut builder = MessageBuilder::from_reader("", PipeReader::new(rx))
                    .seipd_v1(rand::thread_rng(), SymmetricKeyAlgorithm::AES256);
                // Chosen per file: a subkey can expire while a worker runs.
                match encryption_key(&self.key, Timestamp::now().as_secs())
                    .map_err(EncodeError::Encrypt)?
                {
                    Some(sub) => builder.encrypt_to_key(rand::thread_rng(), sub),
                    None => builder.encrypt_to_key(rand::thread_rng(), &self.key.primary_key),
                }
                .map_err(err)?;
                let mut out = Vec::new();
                builder
                    .to_writer(rand::thread_rng(), &mut out)
                    .map_err(err)?;
                Ok::<_, EncodeError>(out)
            });
            let mut pipe = std::io::BufWriter::with_capacity(PIPE_CHUNK, PipeWriter(tx));
            let written = write(&mut pipe).and_then(|t| {
                pipe.flush()?;
                Ok(t)
            });
            // Closing the pipe ends the plaintext (or, after an error, cuts it short).
            drop(pipe);
            let encrypted = encryptor
                .join()
                .map_err(|_| EncodeError::Encrypt("the encryption thread panicked".into()))?;
            match (written, encrypted) {
                (Ok(t), Ok(out)) => Ok((out, t)),
                // A failed encryptor closes the pipe, which fails the writer too: its error
                // says why.
                (_, Err(e)) | (Err(e), _) => Err(e),
            }
        })
    }
}

/// The subkey files are encrypted to: the newest one whose binding signature verifies, flags
/// it for encryption, and has not expired by `now` (seconds), and that is not revoked; `None`
/// for the primary key, when no subkey is usable and the primary key can encrypt (old keys).
fn encryption_key(key: &SignedPublicKey, now: u32) -> Result<Option<&SignedPublicSubKey>, String> {
    let usable = |sub: &&SignedPublicSubKey| {
        if !sub.algorithm().can_encrypt() || sub.verify_bindings(&key.primary_key).is_err() {
            return None;
        }
        let typed = |t: SignatureType| sub.signatures.iter().filter(move |s| s.typ() == Some(t));
        if typed(SignatureType::SubkeyRevocation).next().is_some() {
            return None;
        }
        let binding = typed(SignatureType::SubkeyBinding)
            .max_by_key(|s| s.created().map(Timestamp::as_secs))?;
        let flags = binding.key_flags();
        if !(flags.encrypt_comms() || flags.encrypt_storage()) {
            return None;
        }
        let created = sub.created_at().as_secs();
        let expired = binding
            .key_expiration_time()
            .map(|d| d.as_secs())
            .filter(|secs| *secs > 0)
            .is_some_and(|secs| u64::from(created) + u64::from(secs) <= u64::from(now));
        (!expired).then_some(created)
    };
    let newest = key
        .public_subkeys
        .iter()
        .filter_map(|sub| usable(&sub).map(|created| (created, sub)))
        .max_by_key(|(created, _)| *created)
        .map(|(_, sub)| sub);
    match newest {
        Some(sub) => Ok(Some(sub)),
        None if key.public_subkeys.is_empty() && key.primary_key.algorithm().can_encrypt() => {
            Ok(None)
        }
        None => Err(
            "the key has no usable encryption subkey (one flagged for encryption, \
                     validly bound, not revoked and not expired)"
                .into(),
        ),
    }
}

/// Plaintext moves to the encryptor in pieces this large...
const PIPE_CHUNK: usize = 256 * 1024;
/// ...with at most this many in the pipe at once.
const PIPE_DEPTH: usize = 4;

struct PipeWriter(std::sync::mpsc::SyncSender<Vec<u8>>);

impl Write for PipeWriter {
    /// Sends a large write (a whole buffer passed through) piece by piece, so it is never
    /// copied whole; and all of it, since some writers (apache-avro's) ignore short writes.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for piece in buf.chunks(PIPE_CHUNK) {
            self.0.send(piece.to_vec()).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the encryptor stopped")
            })?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct PipeReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    piece: Vec<u8>,
    at: usize,
}

impl PipeReader {
    fn new(rx: std::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        Self {
            rx,
            piece: Vec::new(),
            at: 0,
        }
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.piece.len() {
            match self.rx.recv() {
                Ok(piece) => {
                    self.piece = piece;
                    self.at = 0;
                }
                // The writer closed the pipe: end of the plaintext.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
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
