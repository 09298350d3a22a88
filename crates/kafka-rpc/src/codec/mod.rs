//! Arguments and results as msgpack (`rmp-serde`). Arguments are a tuple, encoded as a msgpack
//! array of the positional arguments (no arguments: the empty array); structs are encoded as
//! maps (field names on the wire), so other languages read them without knowing the Rust
//! field order.

pub(crate) mod record;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// msgpack nil, which `rmp-serde` writes for `()`.
const NIL: u8 = 0xc0;
/// msgpack empty array.
const EMPTY_ARRAY: u8 = 0x90;

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

/// Encodes call arguments: a tuple as an array; `()` (no arguments) as the empty array, as
/// the wire format requires, not as nil.
pub fn encode_args<T: Serialize + ?Sized>(args: &T) -> Result<Bytes, String> {
    let bytes = encode(args)?;
    Ok(if bytes[..] == [NIL] {
        Bytes::from_static(&[EMPTY_ARRAY])
    } else {
        bytes
    })
}

/// Decodes call arguments into `T`; the empty array also decodes into `()`.
pub fn decode_args<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match decode(bytes) {
        Err(e) if bytes == [EMPTY_ARRAY] => decode(&[NIL]).map_err(|_| e),
        other => other,
    }
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

    #[test]
    fn no_arguments_travel_as_the_empty_array() {
        assert_eq!(&encode_args(&()).unwrap()[..], &[0x90]);
        decode_args::<()>(&[0x90]).unwrap();
        decode_args::<()>(&[0xc0]).unwrap();
        assert_eq!(decode_args::<Vec<i64>>(&[0x90]).unwrap(), Vec::<i64>::new());
        assert!(decode_args::<(i64,)>(&[0x90]).is_err());
    }
}
