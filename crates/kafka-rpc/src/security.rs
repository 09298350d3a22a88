//! Payload security: requests and replies sealed with XChaCha20-Poly1305 under a key derived
//! from a configured secret by Argon2id, a random 24-byte nonce per record, a key id header for
//! rotation, and the routing headers bound as associated data (so moving a payload to another
//! request, method, reply address, deadline or status is detected, not just tampering with it).

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::error::RpcError;

const NONCE_LEN: usize = 24;

/// Keys to seal with (the current one) and to open with (the current one and older ones).
#[derive(Clone)]
pub struct PayloadSecurity {
    current: u16,
    keys: HashMap<u16, XChaCha20Poly1305>,
}

impl std::fmt::Debug for PayloadSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<_> = self.keys.keys().collect();
        ids.sort();
        write!(
            f,
            "PayloadSecurity {{ current key {}, keys {ids:?} }}",
            self.current
        )
    }
}

/// Why a sealed payload could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// No key with this id is configured.
    #[error("no key with id {0} is configured")]
    UnknownKey(u16),
    /// The payload is shorter than a nonce and a tag.
    #[error("the sealed payload is too short ({0} bytes)")]
    TooShort(usize),
    /// The tag did not verify: wrong key, or the payload or a bound header was changed.
    #[error(
        "authentication failed (wrong key, or the payload or its routing headers were changed)"
    )]
    Forged,
}

/// Derives the key `key_id` from `secret` with Argon2id (salt bound to the key id, so the same
/// secret under two ids gives two keys).
fn derive(key_id: u16, secret: &str) -> Result<XChaCha20Poly1305, RpcError> {
    if secret.len() < 8 {
        return Err(RpcError::InvalidArgument(
            "a payload secret needs at least 8 bytes".into(),
        ));
    }
    let salt = format!("kafka-rpc payload key v1/{key_id}");
    let mut key = [0u8; 32];
    argon2::Argon2::default()
        .hash_password_into(secret.as_bytes(), salt.as_bytes(), &mut key)
        .map_err(|e| RpcError::InvalidArgument(format!("deriving payload key {key_id}: {e}")))?;
    Ok(XChaCha20Poly1305::new((&key).into()))
}

impl PayloadSecurity {
    /// Seals with key `key_id` derived from `secret` (and opens with it).
    pub fn new(key_id: u16, secret: &str) -> Result<Self, RpcError> {
        let mut keys = HashMap::new();
        keys.insert(key_id, derive(key_id, secret)?);
        Ok(Self {
            current: key_id,
            keys,
        })
    }

    /// Also opens payloads sealed with an older key `key_id` (for rotation).
    pub fn accept(mut self, key_id: u16, secret: &str) -> Result<Self, RpcError> {
        self.keys.insert(key_id, derive(key_id, secret)?);
        Ok(self)
    }

    /// Seals `plaintext` with the current key, binding `aad`; returns the key id and
    /// `nonce || ciphertext || tag`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> (u16, Bytes) {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let cipher = &self.keys[&self.current];
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any input");
        let mut out = BytesMut::with_capacity(NONCE_LEN + sealed.len());
        out.put_slice(&nonce);
        out.put_slice(&sealed);
        (self.current, out.freeze())
    }

    /// Opens a payload sealed with key `key_id`, checking `aad`.
    pub fn open(&self, key_id: u16, aad: &[u8], sealed: &[u8]) -> Result<Bytes, OpenError> {
        let cipher = self
            .keys
            .get(&key_id)
            .ok_or(OpenError::UnknownKey(key_id))?;
        if sealed.len() < NONCE_LEN + 16 {
            return Err(OpenError::TooShort(sealed.len()));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
            .map(Bytes::from)
            .map_err(|_| OpenError::Forged)
    }
}

/// Builds associated data: a label, then length-prefixed fields.
pub struct Aad(BytesMut);

impl Aad {
    /// Associated data starting with `label` (which says what kind of record it binds).
    pub fn new(label: &str) -> Self {
        let mut b = BytesMut::new();
        b.put_slice(label.as_bytes());
        Self(b)
    }

    /// Appends a field (length-prefixed, so fields cannot run into each other).
    pub fn field(mut self, bytes: &[u8]) -> Self {
        self.0.put_u32(bytes.len() as u32);
        self.0.put_slice(bytes);
        self
    }

    /// The bytes.
    pub fn finish(self) -> Bytes {
        self.0.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_every_kind_of_forgery() {
        let a = PayloadSecurity::new(1, "correct horse battery").unwrap();
        let (id, sealed) = a.seal(b"aad", b"hello");
        assert_eq!(
            a.open(id, b"aad", &sealed).unwrap(),
            Bytes::from_static(b"hello")
        );
        assert_eq!(a.open(id, b"other aad", &sealed), Err(OpenError::Forged));
        let mut flipped = sealed.to_vec();
        flipped[30] ^= 1;
        assert_eq!(a.open(id, b"aad", &flipped), Err(OpenError::Forged));
        assert_eq!(a.open(9, b"aad", &sealed), Err(OpenError::UnknownKey(9)));
        assert_eq!(
            a.open(id, b"aad", &sealed[..10]),
            Err(OpenError::TooShort(10))
        );
        let wrong = PayloadSecurity::new(1, "another secret").unwrap();
        assert_eq!(wrong.open(id, b"aad", &sealed), Err(OpenError::Forged));
        // Rotation: a server accepting key 1 opens what a client on key 1 sealed, under key 2.
        let rotated = PayloadSecurity::new(2, "the new secret")
            .unwrap()
            .accept(1, "correct horse battery")
            .unwrap();
        assert_eq!(
            rotated.open(1, b"aad", &sealed).unwrap(),
            Bytes::from_static(b"hello")
        );
        assert!(PayloadSecurity::new(1, "short").is_err());
    }
}
