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
