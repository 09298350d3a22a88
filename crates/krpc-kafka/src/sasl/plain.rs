//! SASL PLAIN (RFC 4616).

/// The PLAIN message: `authzid NUL authcid NUL passwd` (UTF-8, none of them containing NUL).
pub fn initial_response(authzid: &str, username: &str, password: &str) -> Result<Vec<u8>, String> {
    if username.is_empty() {
        return Err("PLAIN needs a non-empty user name".into());
    }
    for (what, s) in [
        ("authorization id", authzid),
        ("user name", username),
        ("password", password),
    ] {
        if s.contains('\0') {
            return Err(format!(
                "the {what} contains a NUL character, which PLAIN cannot carry"
            ));
        }
    }
    let mut msg = Vec::with_capacity(authzid.len() + username.len() + password.len() + 2);
    msg.extend_from_slice(authzid.as_bytes());
    msg.push(0);
    msg.extend_from_slice(username.as_bytes());
    msg.push(0);
    msg.extend_from_slice(password.as_bytes());
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message_bytes_per_rfc_4616() {
        // RFC 4616 section 4: "\0tim\0tanstaaftanstaaf" (no authorization identity).
        assert_eq!(
            initial_response("", "tim", "tanstaaftanstaaf").unwrap(),
            b"\0tim\0tanstaaftanstaaf".to_vec()
        );
        // With an authorization identity: "Ursel\0Kurt\0xipj3plmq".
        assert_eq!(
            initial_response("Ursel", "Kurt", "xipj3plmq").unwrap(),
            b"Ursel\0Kurt\0xipj3plmq".to_vec()
        );
        // UTF-8 is carried as is.
        assert_eq!(
            initial_response("", "jürgen", "pw").unwrap(),
            "\0jürgen\0pw".as_bytes().to_vec()
        );
    }

    #[test]
    fn nul_or_empty_user_is_refused() {
        assert!(initial_response("", "a\0b", "pw")
            .unwrap_err()
            .contains("user name"));
        assert!(initial_response("", "a", "p\0w")
            .unwrap_err()
            .contains("password"));
        assert!(initial_response("", "", "pw").is_err());
    }
}
