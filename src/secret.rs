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

/// Parts of a URL's path, query or fragment shorter than this are not
/// taken for secrets (`v2`, `base`, a port): an API key or token is longer.
const SECRET_MIN_LEN: usize = 8;
/// A user name or password is a secret from this length on.
const CREDENTIAL_MIN_LEN: usize = 4;

impl SecretUrl {
    /// `text` (an error about this URL, or its server's words) as it may be
    /// printed: every part of this URL that may be a secret (user and
    /// password, and their base64 as a `Basic` header carries them; each
    /// path segment, query key and value and the fragment of 8 characters
    /// or more) replaced by `<redacted>` in whatever form it appears (as
    /// given, percent- or form-encoded or decoded, JSON-escaped), a text
    /// that ends in the first characters of one (it was cut there) losing
    /// them, control characters made spaces, and the result cut to `max`
    /// characters.
    pub fn sanitise(&self, text: &str, max: usize) -> String {
        let parts = self.secret_parts();
        let redact = |mut t: String| {
            for secret in &parts {
                t = t.replace(secret.as_str(), "<redacted>");
            }
            t
        };
        // As given, then unescaped and decoded (a `%` before a key, decoded,
        // would have eaten its first characters had it gone first).
        let mut out = redact(text.to_owned());
        out = out
            .replace("\\/", "/")
            .replace("\\u002f", "/")
            .replace("\\u002F", "/")
            .replace("\\u0026", "&");
        if out.contains('%') {
            out = percent_encoding::percent_decode_str(&out)
                .decode_utf8_lossy()
                .into_owned();
        }
        out = redact(out);
        // A text cut in the middle of a secret ends in its first characters.
        // (Not the whole URL, whose first characters are its scheme and host.)
        if let Some(cut) = parts
            .iter()
            .filter(|p| !p.contains("://") && !p.starts_with('/'))
            .filter_map(|p| cut_secret_at_end(&out, p))
            .max()
        {
            out.truncate(out.len() - cut);
            out.push_str("<redacted>");
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

    /// The parts of the URL that may carry a secret, in each form they may
    /// be printed in, longest first.
    fn secret_parts(&self) -> Vec<String> {
        use base64::Engine as _;
        let u = &self.0;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut long = vec![
            u.as_str().to_owned(),
            u[url::Position::BeforePath..].to_owned(),
        ];
        long.extend(u.path_segments().into_iter().flatten().map(str::to_owned));
        if let Some(query) = u.query() {
            long.extend(query.split(['&', '=']).map(str::to_owned));
        }
        long.extend(
            u.query_pairs()
                .flat_map(|(k, v)| [k.into_owned(), v.into_owned()]),
        );
        long.extend(u.fragment().map(str::to_owned));
        let mut parts: Vec<String> = long
            .iter()
            .flat_map(|p| [p.clone(), decode(p), decode(&p.replace('+', " "))])
            .filter(|p| p.chars().count() >= SECRET_MIN_LEN)
            .collect();
        let (user, password) = (decode(u.username()), u.password().map(decode));
        parts.extend(
            [Some(user.clone()), password.clone()]
                .into_iter()
                .flatten()
                .filter(|c| c.chars().count() >= CREDENTIAL_MIN_LEN),
        );
        if !user.is_empty() || password.is_some() {
            let basic = format!("{user}:{}", password.unwrap_or_default());
            parts.push(base64::engine::general_purpose::STANDARD.encode(basic));
        }
        parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
        parts.dedup();
        parts
    }
}

/// How many bytes at the end of `text` are the first characters of
/// `secret` (4 or more, fewer than all of it): a secret cut there.
fn cut_secret_at_end(text: &str, secret: &str) -> Option<usize> {
    (CREDENTIAL_MIN_LEN..secret.len())
        .rev()
        .filter(|n| secret.is_char_boundary(*n))
        .find(|n| text.ends_with(&secret[..*n]))
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
