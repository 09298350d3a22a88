//! Misuse of `#[kafka_rpc::service]` is a compile error with a message that says what to do
//! (tests/ui/*.rs, expected output in tests/ui/*.stderr; regenerate with `TRYBUILD=overwrite`).

#[test]
fn misuse_of_the_service_macro_does_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
