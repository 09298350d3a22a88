//! SCRAM-SHA-256 and SCRAM-SHA-512, client side (RFC 5802, RFC 7677), as Kafka uses them: no
//! channel binding (`n,,`), no authorization identity.
//!
//! The server's signature in its final message is verified: a broker that does not know the
//! password (or a man in the middle) is refused even if it says "ok".

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::Step;

/// Fewest PBKDF2 iterations accepted from a server (RFC 7677 and Kafka's client: 4096); fewer
/// would let a man in the middle collect a cheaply crackable proof.
pub const MIN_ITERATIONS: u32 = 4096;
/// Most PBKDF2 iterations accepted, so a hostile server cannot make us burn seconds of CPU.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// The hash function of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SHA-256 (SCRAM-SHA-256).
    Sha256,
    /// SHA-512 (SCRAM-SHA-512).
    Sha512,
}

impl ScramHash {
    /// HMAC(key, concatenation of `parts`).
    pub fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        macro_rules! mac {
            ($d:ty) => {{
                let mut m = <Hmac<$d> as Mac>::new_from_slice(key).expect("HMAC takes any key");
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }};
        }
        match self {
            ScramHash::Sha256 => mac!(Sha256),
            ScramHash::Sha512 => mac!(Sha512),
        }
    }

    /// H(data).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i): PBKDF2 with HMAC of this hash.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                let mut out = vec![0; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            ScramHash::Sha512 => {
                let mut out = vec![0; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// Escapes a user name for `n=` (RFC 5802 saslname): `=` as `=3D`, `,` as `=2C`.
pub fn escape_username(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// Constant-time equality of two byte strings.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `k=value` attributes of a SCRAM message, in order.
pub fn attributes(msg: &str) -> Vec<(char, &str)> {
    msg.split(',')
        .filter_map(|a| {
            let mut chars = a.chars();
            let key = chars.next()?;
            a[key.len_utf8()..].strip_prefix('=').map(|v| (key, v))
        })
        .collect()
}

enum State {
    Initial,
    SentFirst { client_first_bare: String },
    SentFinal { server_signature: Vec<u8> },
    Done,
}

/// The client side of one SCRAM exchange.
pub struct ScramClient {
    hash: ScramHash,
    username: String,
    password: String,
    nonce: String,
    state: State,
}

impl ScramClient {
    /// A client with a fresh random nonce.
    pub fn new(hash: ScramHash, username: &str, password: &str) -> Self {
        let mut raw = [0u8; 24];
        rand::Rng::fill(&mut rand::rng(), &mut raw[..]);
        Self::with_nonce(hash, username, password, &B64.encode(raw))
    }

    /// A client with a given nonce (tests; the nonce must be printable and have no `,`).
    pub fn with_nonce(hash: ScramHash, username: &str, password: &str, nonce: &str) -> Self {
        Self {
            hash,
            username: username.to_string(),
            password: password.to_string(),
            nonce: nonce.to_string(),
            state: State::Initial,
        }
    }

    /// client-first-message: `n,,n=USER,r=NONCE`.
    pub fn client_first(&mut self) -> Vec<u8> {
        let bare = format!("n={},r={}", escape_username(&self.username), self.nonce);
        let msg = format!("n,,{bare}");
        self.state = State::SentFirst {
            client_first_bare: bare,
        };
        msg.into_bytes()
    }

    /// client-final-message for the server-first-message `server_first`.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let State::SentFirst { client_first_bare } = &self.state else {
            return Err("SCRAM: server-first-message out of order".into());
        };
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| "SCRAM: server-first-message is not UTF-8".to_string())?;
        let attrs = attributes(server_first);
        if let Some((_, e)) = attrs.iter().find(|(k, _)| *k == 'e') {
            return Err(format!("the broker refused the client-first-message: {e}"));
        }
        if attrs.first().map(|(k, _)| *k) == Some('m') {
            return Err("SCRAM: the broker requires an extension this client does not know".into());
        }
        let get = |key: char| {
            attrs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    format!("SCRAM: server-first-message has no {key}= ({server_first:?})")
                })
        };
        let nonce = get('r')?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("SCRAM: the broker's nonce does not extend ours".into());
        }
        let salt = B64
            .decode(get('s')?)
            .map_err(|e| format!("SCRAM: salt is not base64: {e}"))?;
        let iterations: u32 = get('i')?
            .parse()
            .map_err(|_| format!("SCRAM: bad iteration count in {server_first:?}"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "SCRAM: the broker asks for {iterations} iterations, outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
            ));
        }
        let h = self.hash;
        let salted = h.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = h.hmac(&salted, &[b"Client Key"]);
        let stored_key = h.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = h.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = h.hmac(&salted, &[b"Server Key"]);
        let server_signature = h.hmac(&server_key, &[auth_message.as_bytes()]);
        self.state = State::SentFinal { server_signature };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final-message: `v=` must carry the server signature we expect.
    pub fn verify_server_final(&mut self, server_final: &[u8]) -> Result<(), String> {
        let State::SentFinal { server_signature } = &self.state else {
            return Err("SCRAM: server-final-message out of order".into());
        };
        let msg = std::str::from_utf8(server_final)
            .map_err(|_| "SCRAM: server-final-message is not UTF-8".to_string())?;
        let attrs = attributes(msg);
        if let Some((_, e)) = attrs.iter().find(|(k, _)| *k == 'e') {
            return Err(format!(
                "the broker refused the credentials (wrong password or unknown user): {e}"
            ));
        }
        let Some((_, v)) = attrs.iter().find(|(k, _)| *k == 'v') else {
            return Err(format!("SCRAM: server-final-message has no v= ({msg:?})"));
        };
        let got = B64
            .decode(v)
            .map_err(|e| format!("SCRAM: server signature is not base64: {e}"))?;
        if !ct_eq(&got, server_signature) {
            return Err(
                "the broker's SCRAM server signature is wrong: it does not know this user's \
                 password (misconfigured broker or man in the middle)"
                    .into(),
            );
        }
        self.state = State::Done;
        Ok(())
    }

    /// Whether the exchange completed with a verified server signature.
    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The next step after the server sent `server`.
    pub(crate) fn step(&mut self, server: &[u8]) -> Result<Step, String> {
        match self.state {
            State::SentFirst { .. } => self.client_final(server).map(Step::Send),
            State::SentFinal { .. } => self.verify_server_final(server).map(|()| Step::Done),
            State::Initial | State::Done => Err("SCRAM: unexpected server message".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: SCRAM-SHA-256, user "user", password "pencil".
    #[test]
    fn rfc_7677_sha256_test_vector() {
        let mut c =
            ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(
            c.client_first(),
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO".to_vec()
        );
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = c.client_final(server_first).unwrap();
        assert_eq!(
            String::from_utf8(client_final).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(!c.is_done());
        c.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(c.is_done());
    }

    #[test]
    fn a_wrong_server_signature_is_refused() {
        let mut c =
            ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        c.client_first();
        c.client_final(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap();
        let err = c
            .verify_server_final(b"v=AAAiTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap_err();
        assert!(err.contains("server signature is wrong"), "{err}");
        assert!(!c.is_done());
    }

    #[test]
    fn bad_server_first_messages_are_refused() {
        let first = |server: &[u8]| {
            let mut c = ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", "abc");
            c.client_first();
            c.client_final(server).unwrap_err()
        };
        assert!(first(b"r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096").contains("nonce"));
        assert!(first(b"r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096").contains("nonce"));
        assert!(first(b"r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1").contains("iterations"));
        assert!(first(b"r=abcdef,i=4096").contains("s="));
        assert!(first(b"e=unknown-user").contains("unknown-user"));
    }

    #[test]
    fn user_names_are_escaped() {
        let mut c = ScramClient::with_nonce(ScramHash::Sha512, "a=b,c", "pw", "n0");
        assert_eq!(c.client_first(), b"n,,n=a=3Db=2Cc,r=n0".to_vec());
    }

    /// A tiny SCRAM server (RFC 5802 section 3, server side) holding one user's stored
    /// credentials, to run the client against.
    struct TinyServer {
        hash: ScramHash,
        user: String,
        salt: Vec<u8>,
        iterations: u32,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
        auth_prefix: String,
    }

    impl TinyServer {
        fn new(hash: ScramHash, user: &str, password: &str) -> Self {
            let salt = b"tiny-server-salt".to_vec();
            let iterations = 4096;
            let salted = hash.salted_password(password.as_bytes(), &salt, iterations);
            Self {
                hash,
                user: user.into(),
                stored_key: hash.hash(&hash.hmac(&salted, &[b"Client Key"])),
                server_key: hash.hmac(&salted, &[b"Server Key"]),
                salt,
                iterations,
                auth_prefix: String::new(),
            }
        }

        fn first(&mut self, client_first: &[u8]) -> Vec<u8> {
            let msg = std::str::from_utf8(client_first).unwrap();
            let bare = msg.strip_prefix("n,,").expect("gs2 header without binding");
            let attrs = attributes(bare);
            assert_eq!(attrs[0], ('n', self.user.as_str()));
            let nonce = format!("{}server-part", attrs[1].1);
            let server_first = format!(
                "r={nonce},s={},i={}",
                B64.encode(&self.salt),
                self.iterations
            );
            self.auth_prefix = format!("{bare},{server_first}");
            server_first.into_bytes()
        }

        fn last(&mut self, client_final: &[u8]) -> Vec<u8> {
            let msg = std::str::from_utf8(client_final).unwrap();
            let (without_proof, proof) = msg.rsplit_once(",p=").unwrap();
            let auth_message = format!("{},{without_proof}", self.auth_prefix);
            let signature = self.hash.hmac(&self.stored_key, &[auth_message.as_bytes()]);
            let client_key: Vec<u8> = B64
                .decode(proof)
                .unwrap()
                .iter()
                .zip(&signature)
                .map(|(a, b)| a ^ b)
                .collect();
            if self.hash.hash(&client_key) != self.stored_key {
                return b"e=invalid-proof".to_vec();
            }
            let v = self.hash.hmac(&self.server_key, &[auth_message.as_bytes()]);
            format!("v={}", B64.encode(v)).into_bytes()
        }
    }

    fn run(server: &mut TinyServer, client: &mut ScramClient) -> Result<(), String> {
        let s1 = server.first(&client.client_first());
        let c2 = match client.step(&s1)? {
            Step::Send(b) => b,
            Step::Done => unreachable!(),
        };
        let s2 = server.last(&c2);
        match client.step(&s2)? {
            Step::Done => Ok(()),
            Step::Send(_) => unreachable!(),
        }
    }

    #[test]
    fn sha512_round_trip_against_a_tiny_server() {
        let mut server = TinyServer::new(ScramHash::Sha512, "alice", "s3cret");
        let mut client = ScramClient::new(ScramHash::Sha512, "alice", "s3cret");
        run(&mut server, &mut client).unwrap();
        assert!(client.is_done());

        let mut client = ScramClient::new(ScramHash::Sha512, "alice", "wrong");
        let err = run(&mut server, &mut client).unwrap_err();
        assert!(err.contains("invalid-proof"), "{err}");

        // A server that holds other credentials cannot produce our server signature.
        let mut impostor = TinyServer::new(ScramHash::Sha512, "alice", "other");
        let mut client = ScramClient::new(ScramHash::Sha512, "alice", "s3cret");
        let s1 = impostor.first(&client.client_first());
        let Step::Send(_) = client.step(&s1).unwrap() else {
            unreachable!()
        };
        let forged = format!(
            "v={}",
            B64.encode(impostor.hash.hmac(&impostor.server_key, &[b"x"]))
        );
        let err = client.verify_server_final(forged.as_bytes()).unwrap_err();
        assert!(err.contains("server signature is wrong"), "{err}");
    }

    #[test]
    fn sha256_round_trip_against_a_tiny_server() {
        let mut server = TinyServer::new(ScramHash::Sha256, "bob", "pw");
        let mut client = ScramClient::new(ScramHash::Sha256, "bob", "pw");
        run(&mut server, &mut client).unwrap();
    }
}
