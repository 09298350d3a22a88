//! Arguments and results as msgpack (`rmp-serde`). Arguments are a tuple, encoded as a msgpack
//! array of the positional arguments; structs are encoded as maps (field names on the wire), so
//! other languages read them without knowing the Rust field order.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes a value as msgpack, structs as maps.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, String> {
    rmp_serde::to_vec_named(value)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

/// Decodes msgpack into `T`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples_are_arrays_and_mistyped_input_is_an_error() {
        let b = encode(&(1i64, 2i64)).unwrap();
        assert_eq!(&b[..], &[0x92, 0x01, 0x02]);
        assert_eq!(decode::<(i64, i64)>(&b).unwrap(), (1, 2));
        assert!(decode::<(String,)>(&b).is_err());
        assert!(
            decode::<(i64, i64)>(&[0xc1]).is_err(),
            "0xc1 is never valid msgpack"
        );
    }
}
