use super::redact_url_str;

#[test]
fn a_password_with_url_delimiters_never_shows_when_the_url_does_not_parse() {
    for (url, secret, shown) in [
        (
            "postgres://user:pa/ss@127.0.0.1:1/db",
            "pa",
            "postgres://<redacted>",
        ),
        (
            "postgres://user:se#cret@db:5432/x",
            "se",
            "postgres://<redacted>",
        ),
        ("postgres://u:p?w@db/x", "p?w", "postgres://<redacted>"),
        ("postgres://u:sec@ret@db/x", "sec", "postgres://<redacted>"),
        ("https://host/path?k=a@b", "a@b", "https://<redacted>"),
        ("no scheme at all:secret", "secret", "<redacted>"),
    ] {
        let out = redact_url_str(url);
        assert!(!out.contains(secret), "{url} -> {out}");
        assert_eq!(out, shown, "{url}");
    }
}

#[test]
fn an_rpc_urls_secrets_are_redacted_in_any_form_and_the_text_cut_short() {
    let url = super::SecretUrl::parse(
        "https://user1234:pass%2Fword99@rpc.example.com/v2/KeY0123456789abc?token=T0k3nValue42&x=1",
    )
    .expect("url");
    for text in [
        "error sending request for url (https://user1234:pass%2Fword99@rpc.example.com/v2/KeY0123456789abc?token=T0k3nValue42&x=1)",
        r#"{"error":"bad key \/v2\/KeY0123456789abc"}"#,
        "see https:\\/\\/rpc.example.com\\/v2\\/KeY0123456789abc",
        "token T0k3nValue42 and T0k3n%56alue42, password pass/word99",
        "user1234 KeY%30123456789abc",
    ] {
        let shown = url.sanitise(text, 300);
        for secret in ["KeY0123456789abc", "T0k3nValue42", "pass/word99", "pass%2Fword99", "user1234"] {
            assert!(!shown.contains(secret), "{secret} in {shown:?} (from {text:?})");
        }
        assert!(shown.contains("<redacted>"), "{shown}");
    }
    let long = format!("{}\n{}", "a".repeat(400), "b");
    let shown = url.sanitise(&long, 300);
    assert_eq!(shown.chars().count(), 301, "300 characters and an ellipsis");
    assert!(shown.ends_with('…'));
    assert!(!url.sanitise("one\ntwo\rthree", 300).contains(['\n', '\r']));
    // Short parts (v2, a port) are not secrets: the words stay readable.
    assert_eq!(url.sanitise("v2 of the API", 300), "v2 of the API");
}

#[test]
fn short_credentials_their_basic_header_plus_signs_bare_query_keys_and_a_cut_secret_are_redacted() {
    use base64::Engine as _;
    let url = super::SecretUrl::parse(
        "wss://bob:hunter2@rpc.example.com/ws?Zm9vYmFy+K3y/0123456&ABCDEFGHIJKLMN",
    )
    .expect("url");
    let basic = base64::engine::general_purpose::STANDARD.encode("bob:hunter2");
    for (text, secret) in [
        ("password hunter2 refused", "hunter2"),
        (&*format!("Authorization: Basic {basic}"), basic.as_str()),
        ("key Zm9vYmFy+K3y/0123456 refused", "Zm9vYmFy+K3y"),
        ("key Zm9vYmFy K3y/0123456 refused", "Zm9vYmFy K3y"),
        ("bare ABCDEFGHIJKLMN token", "ABCDEFGHIJKLMN"),
        ("escaped \\u002fws?ABCDEFGHIJKLMN", "ABCDEFGHIJKLMN"),
        ("100%ABCDEFGHIJKLMN", "ABCDEFGHIJKLMN"),
        ("a body cut in the middle of ABCDEFG", "ABCDEFG"),
    ] {
        let shown = url.sanitise(text, 300);
        assert!(!shown.contains(secret), "{secret} in {shown:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
