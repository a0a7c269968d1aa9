//! The effective settings as TOML (`check-config`), secrets redacted, by
//! the key table ([`KEYS`]): each key that has a value after the layers
//! (defaults, environment file, `--config`, variables), printed as its
//! [`Kind`] says. Taken when the settings are read, so a secret is never
//! kept whole here.

use config::{Config, Value, ValueKind};

use super::{Kind, Settings, KEYS};
use crate::secret::{display_db_url, SecretUrl};

/// `key` = value for every key of [`KEYS`] with a value in `cfg`, redacted.
pub(super) fn effective(cfg: &Config) -> Vec<(&'static str, toml::Value)> {
    let mut shown = Vec::new();
    for (key, kind) in KEYS {
        let Ok(value) = cfg.get::<Value>(key) else {
            continue;
        };
        if let Some(v) = printable(value, *kind) {
            shown.push((*key, v));
        }
    }
    shown
}

fn printable(value: Value, kind: Kind) -> Option<toml::Value> {
    let text = |v: &Value| match &v.kind {
        ValueKind::String(s) => Some(s.clone()),
        ValueKind::Nil => None,
        other => Some(other.to_string()),
    };
    let url = |t: String| match SecretUrl::parse(&t) {
        Ok(u) => u.redacted(),
        // Invalid settings never get this far: `check-config` fails first.
        Err(_) => "<redacted>".to_owned(),
    };
    Some(match kind {
        Kind::Int(..) => {
            let t = text(&value)?;
            match t.trim().parse::<i64>() {
                Ok(n) => toml::Value::Integer(n),
                Err(_) => toml::Value::String(t),
            }
        }
        Kind::Text | Kind::Choice(_) => toml::Value::String(text(&value)?),
        Kind::Address => toml::Value::String(text(&value)?.to_ascii_lowercase()),
        Kind::DatabaseUrl => toml::Value::String(display_db_url(&text(&value)?)),
        Kind::SecretUrl => {
            let t = text(&value)?;
            if t.is_empty() {
                toml::Value::String(t)
            } else {
                toml::Value::String(url(t))
            }
        }
        Kind::SecretUrls => {
            let items: Vec<String> = match value.kind {
                ValueKind::Array(items) => items.iter().filter_map(text).collect(),
                ValueKind::String(s) if s.is_empty() => Vec::new(),
                ValueKind::String(s) => s.split(',').map(|p| p.trim().to_owned()).collect(),
                _ => Vec::new(),
            };
            toml::Value::Array(
                items
                    .into_iter()
                    .filter(|t| !t.is_empty())
                    .map(|t| toml::Value::String(url(t)))
                    .collect(),
            )
        }
        Kind::Secret => {
            let t = text(&value)?;
            let keys = t.split_whitespace().count();
            toml::Value::String(match keys {
                0 => String::new(),
                1 => "<redacted>".into(),
                n => format!("<redacted: {n} keys>"),
            })
        }
    })
}

impl Settings {
    /// The effective settings as TOML, in the layout of `default.toml`,
    /// secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut out = String::new();
        for section in super::sections() {
            let mut table = toml::Table::new();
            for (key, value) in &self.shown {
                if let Some(name) = key.strip_prefix(section).and_then(|k| k.strip_prefix('.')) {
                    table.insert(name.to_owned(), value.clone());
                }
            }
            if !table.is_empty() {
                out.push_str(&format!("[{section}]\n"));
                out.push_str(&toml::to_string(&table).expect("a table of plain values serialises"));
                out.push('\n');
            }
        }
        out
    }
}
