//! The tracing subscriber: human-readable text or JSON lines on stderr, the
//! level from `log.level` unless `RUST_LOG` is set.
//!
//! The network crates under us are silent, whatever the filter (`log.level`
//! or `RUST_LOG`) says: at debug and trace they print URLs (an RPC URL holds
//! its API key), request and answer bodies, and a websocket handshake's
//! `Authorization` header (a ws URL's user and password, base64-encoded);
//! at error they print a server's words verbatim. Their failures come back
//! to our code as errors, which print through `SecretUrl::sanitise`.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Targets (and every target under them: `alloy` is all of alloy's crates)
/// that no filter can turn on.
pub const SILENCED: &[&str] = &[
    "alloy",
    "reqwest",
    "hyper",
    "h2",
    "tungstenite",
    "tokio_tungstenite",
    "rustls",
];

/// `filter` without its directives for a [`SILENCED`] target (a more
/// specific target, `alloy_transport_http::reqwest_transport=debug`, would
/// beat a cap on its crate) and without span or field directives
/// (`[connect_within]=trace` enables every event inside such a span,
/// whatever its target, before any target's cap is read), and with each
/// silenced target turned off.
fn silence(filter: &str) -> String {
    let kept = filter.split(',').map(str::trim).filter(|d| {
        let target = d.split('=').next().unwrap_or("");
        !d.is_empty() && !d.contains(['[', '{']) && !SILENCED.iter().any(|s| target.starts_with(s))
    });
    let off = SILENCED.iter().map(|s| format!("{s}=off"));
    kept.map(str::to_owned)
        .chain(off)
        .collect::<Vec<_>>()
        .join(",")
}

/// The filter for `settings`, or for `RUST_LOG` when it is set and valid.
pub fn filter(settings: &LogSettings) -> EnvFilter {
    let base = match std::env::var("RUST_LOG") {
        Ok(value) if EnvFilter::try_new(&value).is_ok() => value,
        Ok(value) => {
            eprintln!(
                "RUST_LOG={value:?} is not a valid filter; using log.level {:?}",
                settings.level
            );
            settings.level.clone()
        }
        Err(_) => settings.level.clone(),
    };
    EnvFilter::try_new(silence(&base))
        .expect("log.level was validated with the config, and dropping directives keeps it valid")
}

/// Installs the global subscriber. Call once, early in `main`.
pub fn init(settings: &LogSettings) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(settings))
        .with_writer(std::io::stderr)
        // Colours only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("tracing subscriber already installed: {e}");
    }
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;
