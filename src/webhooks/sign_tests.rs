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
