//! Standard Webhooks signatures: `v1,` and the base64 of HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, one per key, space-separated.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `webhook-signature` header for `body`, signed by each of `keys`.
pub fn signature(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &str) -> String {
    let signed = format!("{id}.{timestamp}.{body}");
    keys.iter()
        .map(|key| {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
            mac.update(signed.as_bytes());
            let tag = mac.finalize().into_bytes();
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(tag)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::WebhookSecret;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn the_specifications_example_signs_as_published() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let got = signature(
            secret.expose(),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(got, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn two_keys_sign_twice_and_another_body_signs_differently() {
        let one = vec![vec![1u8; 32]];
        let two = vec![vec![1u8; 32], vec![2u8; 32]];
        let a = signature(&one, "id", 1, "{}");
        let both = signature(&two, "id", 1, "{}");
        assert!(both.starts_with(&format!("{a} v1,")), "{both}");
        assert_ne!(a, signature(&one, "id", 1, "{ }"));
        assert_ne!(a, signature(&one, "id", 2, "{}"));
    }
}
