//! The `[webhooks]` section: the dispatcher's receiver, secret and retry
//! schedule, all validated, the secret never quoted in an error.

use std::time::Duration;

use super::super::{SecretUrl, WebhookSecret, WebhookSettings};
use super::Reader;

impl Reader {
    /// `webhooks`: `None` when `webhooks.url` is empty (then a secret is a
    /// mistake); else every key, the URL http(s), the secret valid.
    pub(in crate::config) fn webhooks(&mut self) -> Option<Option<WebhookSettings>> {
        let url = self.string("webhooks.url", false).unwrap_or_default();
        let secret = self.string("webhooks.secret", false).unwrap_or_default();
        let timeout = self.millis("webhooks.request_timeout_ms");
        let give_up = self.int("webhooks.give_up_after_s");
        let initial = self.millis("webhooks.retry_initial_ms");
        let max = self.millis("webhooks.retry_max_ms");
        let in_flight = self.int("webhooks.max_in_flight");
        if url.trim().is_empty() {
            if !secret.trim().is_empty() {
                self.bad(
                    "webhooks.secret",
                    "is set but webhooks.url is empty: set the receiver's URL, or unset the secret",
                );
            }
            return Some(None);
        }
        let url = match SecretUrl::parse(url.trim()) {
            Ok(u) if !u.is_ws() => Some(u),
            Ok(u) => {
                self.bad("webhooks.url", format!("{u} is not http or https"));
                None
            }
            Err(e) => {
                self.bad("webhooks.url", e);
                None
            }
        };
        let secret = match WebhookSecret::parse(&secret) {
            Ok(s) => Some(s),
            Err(e) => {
                self.bad("webhooks.secret", e);
                None
            }
        };
        if let (Some(initial), Some(max)) = (initial, max) {
            if initial > max {
                self.bad(
                    "webhooks.retry_initial_ms",
                    format!(
                        "{} ms is more than webhooks.retry_max_ms ({} ms)",
                        initial.as_millis(),
                        max.as_millis()
                    ),
                );
                return None;
            }
        }
        Some(Some(WebhookSettings {
            url: url?,
            secret: secret?,
            request_timeout: timeout?,
            give_up_after: Duration::from_secs(give_up?),
            retry_initial: initial?,
            retry_max: max?,
            max_in_flight: in_flight? as usize,
        }))
    }
}
