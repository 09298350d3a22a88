//! The Python kafka-rpc 1.0.8's message protection, reproduced so we interoperate with it, not
//! because it protects anything: a crc32 "checksum" header (no key: anyone can recompute it) and
//! AES-128-CBC whose key is the password padded with '0' or cut to 16 bytes, whose IV is the key,
//! with zero padding and hex output. Use the native format's payload security where you can.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

type Encryptor = cbc::Encryptor<aes::Aes128>;
type Decryptor = cbc::Decryptor<aes::Aes128>;

const BLOCK: usize = 16;

/// The `checksum` header value: `hex(zlib.crc32(value))` as Python prints it (`0x1f3a...`).
pub fn checksum(value: &[u8]) -> Vec<u8> {
    format!("{:#x}", crc32fast::hash(value)).into_bytes()
}

/// The Python package's AES mode for one password.
#[derive(Clone)]
pub struct LegacyCipher {
    key: [u8; BLOCK],
}

impl std::fmt::Debug for LegacyCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LegacyCipher(..)")
    }
}

impl LegacyCipher {
    /// The cipher for `password` (Python: pad with '0' to 16 bytes, or keep the first 16).
    pub fn new(password: &str) -> Self {
        let mut key = [b'0'; BLOCK];
        let bytes = password.as_bytes();
        let n = bytes.len().min(BLOCK);
        key[..n].copy_from_slice(&bytes[..n]);
        Self { key }
    }

    /// Encrypts as the Python package does: zero padding (always at least one byte, a whole
    /// block when the length is a multiple of 16), AES-128-CBC with IV = key, lowercase hex.
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let pad = BLOCK - plain.len() % BLOCK;
        let mut buf = Vec::with_capacity(plain.len() + pad);
        buf.extend_from_slice(plain);
        buf.resize(plain.len() + pad, 0);
        let len = buf.len();
        Encryptor::new(&self.key.into(), &self.key.into())
            .encrypt_padded_mut::<cbc::cipher::block_padding::NoPadding>(&mut buf, len)
            .expect("the buffer is a whole number of blocks");
        hex::encode(buf).into_bytes()
    }

    /// Decrypts hex ciphertext; the plaintext keeps its zero padding (the msgpack reader stops
    /// at the end of the value, so a value that itself ends in zero bytes survives, which the
    /// Python package's `rstrip(b'\0')` does not guarantee).
    pub fn decrypt(&self, hex_cipher: &[u8]) -> Result<Vec<u8>, String> {
        let mut buf =
            hex::decode(hex_cipher).map_err(|e| format!("the encrypted value is not hex: {e}"))?;
        if buf.is_empty() || buf.len() % BLOCK != 0 {
            return Err(format!(
                "the encrypted value is {} bytes, not a positive multiple of {BLOCK}",
                buf.len()
            ));
        }
        Decryptor::new(&self.key.into(), &self.key.into())
            .decrypt_padded_mut::<cbc::cipher::block_padding::NoPadding>(&mut buf)
            .map_err(|e| format!("decryption failed: {e}"))?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_pythons_hex_of_crc32() {
        // python3 -c "import zlib; print(hex(zlib.crc32(b'hello')))"
        assert_eq!(checksum(b"hello"), b"0x3610a686");
        assert_eq!(checksum(b""), b"0x0");
    }

    #[test]
    fn ciphertext_matches_pycryptodome() {
        // from kafka_rpc.aes import AESEncryption
        // AESEncryption('123avx').encrypt(b'sdjfokdsdas129u`1.')
        let c = LegacyCipher::new("123avx");
        let e = c.encrypt(b"sdjfokdsdas129u`1.");
        assert_eq!(
            String::from_utf8(e.clone()).unwrap(),
            "30da7658231737a134238ed9e5e347f195352b2e11af2d13ebec7a8d7ddc7071"
        );
        let d = c.decrypt(&e).unwrap();
        assert_eq!(&d[..18], b"sdjfokdsdas129u`1.");
        assert!(d[18..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_whole_block_gets_a_whole_block_of_padding() {
        let c = LegacyCipher::new("a-password-longer-than-sixteen");
        assert_eq!(c.encrypt(&[7u8; 16]).len(), 2 * 32);
        assert_eq!(c.decrypt(&c.encrypt(&[7u8; 16])).unwrap()[..16], [7u8; 16]);
    }

    #[test]
    fn bad_ciphertext_is_an_error() {
        let c = LegacyCipher::new("k");
        assert!(c.decrypt(b"zz").is_err());
        assert!(c.decrypt(b"00ff").is_err());
        assert!(c.decrypt(b"").is_err());
    }
}
