//! Writing (never reading) the pickle of a Python built-in exception: the Python client
//! unpickles the `exception` field of a reply and logs it, so a Rust server answering a Python
//! client sends one. Hand-written because no maintained Rust crate writes a pickle that calls a
//! class (serde-pickle writes plain data only); the five opcodes below are the whole of it.

/// The Python built-in exception a status becomes for a Python caller.
pub fn exception_class(code: crate::StatusCode) -> &'static str {
    use crate::StatusCode as S;
    match code {
        S::Unimplemented => "AttributeError",
        S::InvalidArgument => "TypeError",
        S::DeadlineExceeded => "TimeoutError",
        S::Unauthenticated => "PermissionError",
        _ => "RuntimeError",
    }
}

/// Pickle (protocol 2) of `builtins.<class>(message)`.
pub fn exception(class: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + class.len() + message.len());
    out.extend_from_slice(b"\x80\x02"); // PROTO 2
    out.push(b'c'); // GLOBAL module\nname\n
    out.extend_from_slice(b"builtins\n");
    out.extend_from_slice(class.as_bytes());
    out.push(b'\n');
    out.push(b'X'); // BINUNICODE: u32 little-endian length, UTF-8
    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
    out.extend_from_slice(message.as_bytes());
    out.push(0x85); // TUPLE1
    out.push(b'R'); // REDUCE: class(*tuple)
    out.push(b'.'); // STOP
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_opcodes_are_in_place() {
        let p = super::exception("TypeError", "bad");
        assert_eq!(
            p,
            b"\x80\x02cbuiltins\nTypeError\nX\x03\x00\x00\x00bad\x85R.".to_vec()
        );
    }
}
