//! Secrets in settings: an RPC URL carries an API key, so it prints as
//! scheme, host and port only; [`RpcUrl::expose`] is the one way to the rest.

use std::fmt;

use url::Url;

/// An RPC URL: a secret. `Display` and `Debug` show only scheme, host and
/// port; [`RpcUrl::expose`] is the one way to the full URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RpcUrl(Url);

impl RpcUrl {
    /// Parses an http(s) or ws(s) URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url =
            Url::parse(text).map_err(|e| format!("not a URL ({e}): {}", redact_url_str(text)))?;
        match url.scheme() {
            "http" | "https" | "ws" | "wss" if url.host_str().is_some() => Ok(Self(url)),
            "http" | "https" | "ws" | "wss" => Err(format!("no host in {}", redact_url_str(text))),
            other => Err(format!("scheme {other:?} is not http, https, ws or wss")),
        }
    }

    /// The full URL, secret included. Only for connecting.
    pub fn expose(&self) -> &Url {
        &self.0
    }

    /// True for ws:// and wss://.
    pub fn is_ws(&self) -> bool {
        matches!(self.0.scheme(), "ws" | "wss")
    }

    /// scheme://host[:port], plus `/<redacted>` when anything else was there.
    pub fn redacted(&self) -> String {
        let u = &self.0;
        let mut out = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
        if let Some(port) = u.port() {
            out.push_str(&format!(":{port}"));
        }
        let hidden = (u.path() != "/" && !u.path().is_empty())
            || u.query().is_some()
            || u.fragment().is_some()
            || !u.username().is_empty()
            || u.password().is_some();
        if hidden {
            out.push_str("/<redacted>");
        }
        out
    }
}

impl fmt::Display for RpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RpcUrl({})", self.redacted())
    }
}

/// A printable stand-in for a URL-ish string that did not parse: its
/// scheme only. Where its host ends cannot be known: a password may hold
/// `/`, `?`, `#` or `@` unencoded, and any guess could print part of it.
pub fn redact_url_str(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            format!("{scheme}://<redacted>")
        }
        _ => "<redacted>".to_owned(),
    }
}

#[cfg(test)]
mod redact_tests {
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
}
