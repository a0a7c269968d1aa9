#[test]
fn no_directive_turns_a_silenced_crate_on() {
    assert_eq!(
        super::silence("trace,alloy_transport_http::reqwest_transport=debug, liqpass_indexer=debug,hyper_util=trace"),
        "trace,liqpass_indexer=debug,alloy=off,reqwest=off,hyper=off,h2=off,tungstenite=off,tokio_tungstenite=off,rustls=off"
    );
}

#[test]
fn span_directives_are_dropped_they_would_enable_any_target_inside_the_span() {
    assert_eq!(
        super::silence("info,[connect_within]=trace,liqpass_indexer[{endpoint}]=debug"),
        "info,alloy=off,reqwest=off,hyper=off,h2=off,tungstenite=off,tokio_tungstenite=off,rustls=off"
    );
}
