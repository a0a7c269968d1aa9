//! Secrets in settings, printed only redacted: an RPC URL carries an API
//! key, so it prints as scheme, host and port ([`SecretUrl::expose`] is the one
//! way to the rest); a database URL without its password
//! ([`display_db_url`]); a webhook secret not at all. A leaf: it imports
//! nothing of the crate, and anyone may import it.

use std::fmt;

use url::Url;

/// A URL that carries a secret (an RPC endpoint's API key in its path or
/// query, a webhook receiver's token). `Display` and `Debug` show only
/// scheme, host and port; [`SecretUrl::expose`] is the one way to the full
/// URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Url);

impl SecretUrl {
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

/// Parts of a URL shorter than this are not taken for secrets (`v2`,
/// `base`, a port): an API key or token is longer.
const SECRET_MIN_LEN: usize = 8;

impl SecretUrl {
    /// `text` (an error about this URL, or its server's words) as it may be
    /// printed: every part of this URL that may be a secret (user, password,
    /// each path segment, query value and fragment of 8 characters or more)
    /// replaced by `<redacted>` in whatever form it appears (as given,
    /// percent-encoded or decoded, JSON-escaped), control characters made
    /// spaces, and the result cut to `max` characters.
    pub fn sanitise(&self, text: &str, max: usize) -> String {
        // Unescaped first, so that an escaped copy of a secret matches.
        let mut out = text.replace("\\/", "/");
        if out.contains('%') {
            out = percent_encoding::percent_decode_str(&out)
                .decode_utf8_lossy()
                .into_owned();
        }
        for secret in self.secret_parts() {
            out = out.replace(&secret, "<redacted>");
        }
        let mut shown: String = out
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(max)
            .collect();
        if out.chars().nth(max).is_some() {
            shown.push('…');
        }
        shown
    }

    /// The parts of the URL that may carry a secret, decoded, longest first.
    fn secret_parts(&self) -> Vec<String> {
        let u = &self.0;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut parts = vec![decode(u.as_str())];
        parts.push(decode(&u[url::Position::BeforePath..]));
        parts.push(decode(u.username()));
        parts.extend(u.password().map(decode));
        parts.extend(u.path_segments().into_iter().flatten().map(decode));
        parts.extend(u.query_pairs().map(|(_, v)| v.into_owned()));
        parts.extend(u.fragment().map(decode));
        parts.retain(|p| p.len() >= SECRET_MIN_LEN);
        parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
        parts.dedup();
        parts
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
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

/// The webhook signing secret: one key, or two separated by a space while
/// keys rotate (a delivery carries a signature by each). Each is
/// `whsec_` and the base64 of 24 to 64 random bytes, as Standard Webhooks
/// gives them out. `Display` and `Debug` never show a key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<Vec<u8>>);

impl WebhookSecret {
    /// Parses one or two `whsec_…` keys; the error never quotes them.
    pub fn parse(text: &str) -> Result<Self, String> {
        use base64::Engine as _;
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.is_empty() {
            return Err(
                "missing: webhooks.url is set, so the signing secret is needed \
                 (set LIQPASS__WEBHOOKS__SECRET to whsec_ and the base64 of 24 to 64 random bytes)"
                    .into(),
            );
        }
        if parts.len() > 2 {
            return Err(format!(
                "{} values given; one key, or two separated by a space while keys rotate",
                parts.len()
            ));
        }
        let mut keys = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let which = if parts.len() == 1 {
                "the key".to_owned()
            } else {
                format!("key {}", i + 1)
            };
            let Some(b64) = part.strip_prefix("whsec_") else {
                return Err(format!(
                    "{which} does not start with whsec_ (value not shown)"
                ));
            };
            let key = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| format!("{which} is not whsec_ and base64 (value not shown)"))?;
            if !(24..=64).contains(&key.len()) {
                return Err(format!(
                    "{which} holds {} bytes; it must hold 24 to 64 (value not shown)",
                    key.len()
                ));
            }
            keys.push(key);
        }
        Ok(Self(keys))
    }

    /// The keys, in the order given. Only for signing.
    pub fn expose(&self) -> &[Vec<u8>] {
        &self.0
    }
}

impl fmt::Display for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.len() {
            1 => f.write_str("<redacted>"),
            n => write!(f, "<redacted: {n} keys>"),
        }
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecret({self})")
    }
}

/// True for a PostgreSQL URL (`postgres://`, `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `database.url` as it may be printed: a PostgreSQL URL without its
/// password (in the authority or a `password` parameter), an SQLite URL as
/// given (a file name, no secret), anything unparsable reduced to its
/// scheme and host.
pub fn display_db_url(url: &str) -> String {
    if !is_postgres_url(url) {
        return if url.contains('@') {
            redact_url_str(url)
        } else {
            url.to_owned()
        };
    }
    let Ok(mut parsed) = url::Url::parse(url) else {
        return redact_url_str(url);
    };
    // A stand-in the URL crate leaves unencoded, replaced by the marker
    // RPC URLs use.
    const HIDDEN: &str = "REDACTEDXPASSWORD";
    if parsed.password().is_some() {
        // Cannot fail: the URL has a host, since it has a password.
        let _ = parsed.set_password(Some(HIDDEN));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let secret = k.to_ascii_lowercase().contains("password");
                (
                    k.into_owned(),
                    if secret {
                        "<redacted>".into()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string().replace(HIDDEN, "<redacted>")
}

#[cfg(test)]
#[path = "secret_tests.rs"]
mod tests;
