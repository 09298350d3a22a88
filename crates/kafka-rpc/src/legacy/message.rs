//! The msgpack shapes of the Python kafka-rpc 1.0.8: a request is the map
//! `{method_name, args, kwargs}`, a reply the map `{ret, tact_time, server_id, time, exception,
//! traceback}`; the record key is the task id (a uuid in hex) and the one header is `checksum`.

use bytes::Bytes;
use krpc_kafka::Header;
use rmpv::Value;

use super::cipher::{checksum, LegacyCipher};

/// Nesting allowed in values read off the wire (deeper input is refused, not recursed into).
const MAX_DEPTH: usize = 128;

/// How values are protected on the wire: the settings both sides of a legacy service share.
#[derive(Debug, Clone, Default)]
pub struct LegacyFormat {
    /// Send a crc32 `checksum` header and refuse values whose header does not match (`verify`).
    pub verify: bool,
    /// Encrypt values with the Python package's AES mode (`encrypt=PASSWORD`).
    pub cipher: Option<LegacyCipher>,
}

/// Why a value read off the wire was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The `checksum` header is missing or does not match the value.
    #[error("checksum mismatch: header {found:?}, value {expected:?}")]
    Checksum {
        /// The header's value.
        found: Option<String>,
        /// The checksum of the value.
        expected: String,
    },
    /// The value cannot be decrypted or decoded.
    #[error("{0}")]
    Malformed(String),
}

impl LegacyFormat {
    /// Encrypts `plain` if configured; returns the record value and its `checksum` header.
    #[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
    pub(crate) fn seal(&self, plain: &[u8]) -> (Bytes, Header) {
        let value = match &self.cipher {
            Some(c) => c.encrypt(plain),
            None => plain.to_vec(),
        };
        let sum = self.verify.then(|| Bytes::from(checksum(&value)));
        (
            Bytes::from(value),
            Header {
                key: "checksum".into(),
                value: sum,
            },
        )
    }

    /// Checks the `checksum` header (with `verify`) and decrypts (with a cipher). The Python
    /// package reads the first header whatever its name; so do we.
    #[cfg_attr(feature = "unstable-internals", visibility::make(pub))]
    pub(crate) fn open(&self, value: &[u8], headers: &[Header]) -> Result<Vec<u8>, OpenError> {
        if self.verify {
            let found = headers.first().and_then(|h| h.value.as_deref());
            let expected = checksum(value);
            if found != Some(&expected[..]) {
                return Err(OpenError::Checksum {
                    found: found.map(|f| String::from_utf8_lossy(f).into_owned()),
                    expected: String::from_utf8_lossy(&expected).into_owned(),
                });
            }
        }
        match &self.cipher {
            Some(c) => c.decrypt(value).map_err(OpenError::Malformed),
            None => Ok(value.to_vec()),
        }
    }
}

/// Reads one msgpack value; what follows it must be nothing or zero padding (decryption
/// leaves the Python cipher's padding in place).
fn read_one(bytes: &[u8], what: &str) -> Result<Value, String> {
    let mut rd = bytes;
    let value = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)
        .map_err(|e| format!("the {what} is not msgpack: {e}"))?;
    if rd.iter().any(|&b| b != 0) {
        return Err(format!(
            "the {what} has {} bytes after its msgpack value",
            rd.len()
        ));
    }
    Ok(value)
}

fn write(value: &Value) -> Bytes {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    Bytes::from(out)
}

/// Looks `key` up in a msgpack map.
fn field<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// A call as the Python client sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyCall {
    /// `method_name`.
    pub method: String,
    /// `args`: the positional arguments.
    pub args: Vec<Value>,
    /// `kwargs`: the keyword arguments, in the order sent.
    pub kwargs: Vec<(String, Value)>,
}

impl LegacyCall {
    /// Decodes a (decrypted) request value; never panics, whatever it holds.
    pub fn decode(plain: &[u8]) -> Result<Self, String> {
        let Value::Map(map) = read_one(plain, "request")? else {
            return Err("the request is not a msgpack map".into());
        };
        let method = match field(&map, "method_name") {
            Some(Value::String(s)) => s.as_str().ok_or("method_name is not UTF-8")?.to_string(),
            Some(_) => return Err("method_name is not a string".into()),
            None => return Err("the request has no method_name".into()),
        };
        let args = match field(&map, "args") {
            Some(Value::Array(a)) => a.clone(),
            Some(Value::Nil) | None => Vec::new(),
            Some(_) => return Err("args is not an array".into()),
        };
        let kwargs = match field(&map, "kwargs") {
            Some(Value::Map(m)) => m
                .iter()
                .map(|(k, v)| match k.as_str() {
                    Some(name) => Ok((name.to_string(), v.clone())),
                    None => Err("a kwargs key is not a string".to_string()),
                })
                .collect::<Result<_, _>>()?,
            Some(Value::Nil) | None => Vec::new(),
            Some(_) => return Err("kwargs is not a map".into()),
        };
        Ok(Self {
            method,
            args,
            kwargs,
        })
    }

    /// Encodes a call. `args` must be msgpack of an array and `kwargs` of a map. The keys go in
    /// the order kwargs, args, method_name so that the value never ends in a zero byte, which
    /// the Python server's decryption (`rstrip(b'\0')`) would cut off.
    pub fn encode(method: &str, args: &[u8], kwargs: &[u8]) -> Result<Vec<u8>, String> {
        use rmp::Marker as M;
        let marker = |b: &[u8]| b.first().map(|&m| M::from_u8(m));
        let is_array = matches!(marker(args), Some(M::FixArray(_) | M::Array16 | M::Array32));
        let is_map = matches!(marker(kwargs), Some(M::FixMap(_) | M::Map16 | M::Map32));
        if !(is_array && is_map) {
            return Err("args must encode as an array and kwargs as a map".into());
        }
        let mut out = Vec::with_capacity(32 + method.len() + args.len() + kwargs.len());
        rmp::encode::write_map_len(&mut out, 3).expect("Vec");
        rmp::encode::write_str(&mut out, "kwargs").expect("Vec");
        out.extend_from_slice(kwargs);
        rmp::encode::write_str(&mut out, "args").expect("Vec");
        out.extend_from_slice(args);
        rmp::encode::write_str(&mut out, "method_name").expect("Vec");
        rmp::encode::write_str(&mut out, method).expect("Vec");
        Ok(out)
    }

    /// The positional arguments (a msgpack array) with the keyword arguments put in place by
    /// `params`, the method's parameter names; errors read like Python's own `TypeError`s.
    pub fn positional(&self, params: Option<&[String]>) -> Result<Bytes, String> {
        if self.kwargs.is_empty() {
            return Ok(write(&Value::Array(self.args.clone())));
        }
        let Some(params) = params else {
            return Err(format!(
                "{}() got keyword arguments, but the server declares no parameter names for it",
                self.method
            ));
        };
        let mut slots: Vec<Option<Value>> = self.args.iter().cloned().map(Some).collect();
        for (name, value) in &self.kwargs {
            let Some(at) = params.iter().position(|p| p == name) else {
                return Err(format!(
                    "{}() got an unexpected keyword argument '{name}'",
                    self.method
                ));
            };
            if slots.len() <= at {
                slots.resize(at + 1, None);
            }
            if slots[at].is_some() {
                return Err(format!(
                    "{}() got multiple values for argument '{name}'",
                    self.method
                ));
            }
            slots[at] = Some(value.clone());
        }
        let args = slots
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.ok_or_else(|| {
                    format!(
                        "{}() missing required argument '{}'",
                        self.method,
                        params.get(i).map_or("?", String::as_str)
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(write(&Value::Array(args)))
    }
}

/// A reply as the Python server sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyReply {
    /// `ret`: msgpack of the returned value (nil when the call raised).
    pub ret: Bytes,
    /// `tact_time`: seconds from the request's timestamp to the reply.
    pub tact_time: f64,
    /// `server_id`: the server's name.
    pub server_id: String,
    /// `time`: the server's local time as `%Y-%m-%d %H:%M:%S.%f`.
    pub time: String,
    /// `exception`: the pickled exception (never unpickled here), if the call raised.
    pub exception: Option<Bytes>,
    /// `traceback`: the formatted traceback, if the call raised.
    pub traceback: Option<String>,
}

impl LegacyReply {
    /// Encodes the reply map in the Python server's key order.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.ret.len() + self.server_id.len());
        let w = &mut out;
        rmp::encode::write_map_len(w, 6).expect("Vec");
        rmp::encode::write_str(w, "ret").expect("Vec");
        w.extend_from_slice(if self.ret.is_empty() {
            &[0xc0]
        } else {
            &self.ret
        });
        rmp::encode::write_str(w, "tact_time").expect("Vec");
        rmp::encode::write_f64(w, self.tact_time).expect("Vec");
        rmp::encode::write_str(w, "server_id").expect("Vec");
        rmp::encode::write_str(w, &self.server_id).expect("Vec");
        rmp::encode::write_str(w, "time").expect("Vec");
        rmp::encode::write_str(w, &self.time).expect("Vec");
        rmp::encode::write_str(w, "exception").expect("Vec");
        match &self.exception {
            Some(e) => rmp::encode::write_bin(w, e).expect("Vec"),
            None => rmp::encode::write_nil(w).expect("Vec"),
        }
        rmp::encode::write_str(w, "traceback").expect("Vec");
        match &self.traceback {
            Some(t) => rmp::encode::write_str(w, t).expect("Vec"),
            None => rmp::encode::write_nil(w).expect("Vec"),
        }
        out
    }

    /// Decodes a (decrypted) reply value; never panics, whatever it holds.
    pub fn decode(plain: &[u8]) -> Result<Self, String> {
        let Value::Map(map) = read_one(plain, "reply")? else {
            return Err("the reply is not a msgpack map".into());
        };
        let text = |key: &str| match field(&map, key) {
            Some(Value::String(s)) => Ok(Some(
                s.as_str().ok_or(format!("{key} is not UTF-8"))?.to_string(),
            )),
            Some(Value::Nil) | None => Ok(None),
            Some(_) => Err(format!("{key} is not a string")),
        };
        let exception = match field(&map, "exception") {
            Some(Value::Binary(b)) => Some(Bytes::copy_from_slice(b)),
            Some(Value::Nil) | None => None,
            Some(_) => return Err("exception is not bytes".into()),
        };
        let tact_time = match field(&map, "tact_time") {
            Some(v) => v
                .as_f64()
                .or_else(|| v.as_i64().map(|i| i as f64))
                .unwrap_or(0.0),
            None => 0.0,
        };
        Ok(Self {
            ret: write(field(&map, "ret").unwrap_or(&Value::Nil)),
            tact_time,
            server_id: text("server_id")?.unwrap_or_default(),
            time: text("time")?.unwrap_or_default(),
            exception,
            traceback: text("traceback")?,
        })
    }

    /// The exception's last traceback line (`ValueError: bad`), or a placeholder.
    pub fn exception_line(&self) -> String {
        self.traceback
            .as_deref()
            .and_then(|t| t.lines().rev().find(|l| !l.trim().is_empty()))
            .map_or_else(
                || "the remote call raised an exception".to_string(),
                |l| l.trim().to_string(),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(v: &Value) -> Vec<u8> {
        write(v).to_vec()
    }

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    #[test]
    fn a_python_request_decodes_and_kwargs_take_their_places() {
        // msgpack.packb({'method_name': 'add', 'args': (1,), 'kwargs': {'b': 2}}, use_bin_type=True)
        let py =
            hex::decode("83ab6d6574686f645f6e616d65a3616464a4617267739101a66b776172677381a16202")
                .unwrap();
        let call = LegacyCall::decode(&py).unwrap();
        assert_eq!(call.method, "add");
        let params = ["a".to_string(), "b".to_string()];
        let args = call.positional(Some(&params)).unwrap();
        assert_eq!(&args[..], &[0x92, 0x01, 0x02]);
        assert!(call
            .positional(None)
            .unwrap_err()
            .contains("no parameter names"));
        let bad = LegacyCall {
            kwargs: vec![("c".into(), Value::from(1))],
            ..call.clone()
        };
        assert!(bad
            .positional(Some(&params))
            .unwrap_err()
            .contains("unexpected keyword argument 'c'"));
        let twice = LegacyCall {
            kwargs: vec![("a".into(), Value::from(1))],
            ..call.clone()
        };
        assert!(twice
            .positional(Some(&params))
            .unwrap_err()
            .contains("multiple values for argument 'a'"));
        let gap = LegacyCall {
            args: vec![],
            ..call
        };
        assert!(gap
            .positional(Some(&params))
            .unwrap_err()
            .contains("missing required argument 'a'"));
    }

    #[test]
    fn our_request_decodes_and_never_ends_in_zero() {
        let kwargs = pack(&Value::Map(vec![(s("b"), Value::from(0))]));
        let v = LegacyCall::encode("add", &[0x91, 0x00], &kwargs).unwrap();
        assert_ne!(v.last(), Some(&0));
        let call = LegacyCall::decode(&v).unwrap();
        assert_eq!(call.args, vec![Value::from(0)]);
        assert_eq!(call.kwargs, vec![("b".to_string(), Value::from(0))]);
        assert!(LegacyCall::encode("add", &[0xc0], &kwargs).is_err());
    }

    #[test]
    fn replies_round_trip_and_padding_is_tolerated() {
        let r = LegacyReply {
            ret: Bytes::from_static(&[0x03]),
            tact_time: 0.25,
            server_id: "s1".into(),
            time: "2026-11-26 10:00:00.000000".into(),
            exception: Some(Bytes::from_static(b"\x80\x02.")),
            traceback: Some("Traceback...\nValueError: bad\n".into()),
        };
        let mut bytes = r.encode();
        bytes.extend_from_slice(&[0, 0, 0]);
        let back = LegacyReply::decode(&bytes).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.exception_line(), "ValueError: bad");
        bytes.push(7);
        assert!(
            LegacyReply::decode(&bytes).is_err(),
            "garbage after the value"
        );
    }

    #[test]
    fn checksum_and_encryption_are_checked() {
        let f = LegacyFormat {
            verify: true,
            cipher: Some(LegacyCipher::new("pw")),
        };
        let (value, header) = f.seal(b"\x80");
        assert_eq!(
            f.open(&value, std::slice::from_ref(&header)).unwrap()[0],
            0x80
        );
        let wrong = Header {
            key: "checksum".into(),
            value: Some(Bytes::from_static(b"0x1")),
        };
        assert!(matches!(
            f.open(&value, &[wrong]),
            Err(OpenError::Checksum { .. })
        ));
        assert!(matches!(
            f.open(&value, &[]),
            Err(OpenError::Checksum { .. })
        ));
        let plain = LegacyFormat::default();
        let (v, h) = plain.seal(b"abc");
        assert_eq!(
            h.value, None,
            "no checksum without verify: a null header, as Python sends"
        );
        assert_eq!(plain.open(&v, &[]).unwrap(), b"abc");
    }

    #[test]
    fn hostile_values_are_errors() {
        for bad in [
            &b""[..],
            b"\xc1",
            b"\x93\x01",
            b"\xdd\xff\xff\xff\xff",
            b"\x81\xa1a\x01",
        ] {
            assert!(LegacyCall::decode(bad).is_err());
            let _ = LegacyReply::decode(bad);
        }
        let deep = vec![0x91u8; 10_000];
        assert!(LegacyCall::decode(&deep).is_err());
    }
}
