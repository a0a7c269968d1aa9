use super::*;

fn blocks(max: Option<u64>, suggested: Option<(u64, u64)>) -> Option<Refusal> {
    Some(Refusal {
        limit: Limit::Blocks,
        max,
        suggested,
    })
}

fn results(max: Option<u64>, suggested: Option<(u64, u64)>) -> Option<Refusal> {
    Some(Refusal {
        limit: Limit::Results,
        max,
        suggested,
    })
}

#[test]
fn every_documented_provider_wording_is_parsed_into_its_limit() {
    let alchemy_range = Some((0x1a30dfd, 0x1a30ff0));
    let cases = [
        (
            "Coinbase (CDP) Base node",
            "please limit the query to at most 1000 blocks",
            blocks(Some(1000), None),
        ),
        (
            "QuickNode",
            "eth_getLogs is limited to a 10,000 range",
            blocks(Some(10_000), None),
        ),
        (
            "Infura, result cap with a range",
            "query returned more than 10000 results. Try with this block range [0x30D5B0, 0x30D5C5].",
            results(Some(10_000), Some((0x30d5b0, 0x30d5c5))),
        ),
        (
            "Infura, result cap with the range in data",
            r#"error code -32005: query returned more than 10000 results, data: {"from":"0x1","limit":10000,"to":"0x20"}"#,
            results(Some(10_000), Some((1, 32))),
        ),
        (
            "Infura, block cap",
            "range 1000000 exceeds limit of 10000",
            blocks(Some(10_000), None),
        ),
        (
            "Alchemy, response size",
            "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit on the response size, or you can request any block range with a cap of 10K logs in the response. Based on your parameters, this block range should work: [0x1a30dfd, 0x1a30ff0]",
            blocks(Some(2_000), alchemy_range),
        ),
        (
            "Alchemy, block cap",
            "You can make eth_getLogs requests with up to a 500 block range. Based on your parameters, this block range should work: [0x1a30dfd, 0x1a30ff0]",
            blocks(Some(500), alchemy_range),
        ),
        (
            "Alchemy, free tier",
            "Under the Free tier plan, you can make eth_getLogs requests with up to a 10 block range. Based on your parameters, this block range should work: [0x1a30dfd, 0x1a30e06]. Upgrade to PAYG for expanded block range.",
            blocks(Some(10), Some((0x1a30dfd, 0x1a30e06))),
        ),
        ("Ankr", "block range is too wide", blocks(None, None)),
        (
            "Ankr, newer chains",
            "maximum [from, to] blocks distance: 10000",
            blocks(Some(10_000), None),
        ),
        ("Chainstack", "Block range limit exceeded.", blocks(None, None)),
        (
            "dRPC",
            "ranges over 10000 blocks are not supported on freetier",
            blocks(Some(10_000), None),
        ),
        ("Base public endpoint", "block range too large", blocks(None, None)),
        (
            "reth / op-reth",
            "query exceeds max block range 100000",
            blocks(Some(100_000), None),
        ),
        (
            "reth, result cap",
            "query exceeds max results 20000, retry with the range 100-200",
            results(Some(20_000), Some((100, 200))),
        ),
        (
            "geth / BSC / PublicNode",
            "exceed maximum block range: 5000",
            blocks(Some(5_000), None),
        ),
        (
            "geth, result cap",
            "query returned more than 10000 results",
            results(Some(10_000), None),
        ),
        ("OP Stack public", "Block range is too large", blocks(None, None)),
        (
            "Tenderly (number in data)",
            r#"error code -32602: invalid params, data: {"error_id":"4ed9","payload":"range 9009594 is bigger than range limit 2000"}"#,
            blocks(Some(2_000), None),
        ),
        (
            "Morph",
            "block range is larger than max block range, block range = 5120, max block range = 5000",
            blocks(Some(5_000), None),
        ),
        (
            "Moonbeam / Frontier",
            "block range is too wide (maximum 1024)",
            blocks(Some(1_024), None),
        ),
        ("Cloudflare", "Max range: 800", blocks(Some(800), None)),
        (
            "thirdweb",
            "Maximum allowed number of requested blocks is 500",
            blocks(Some(500), None),
        ),
        (
            "Avalanche",
            "requested too many blocks from 0 to 5000, maximum is set to 2048",
            blocks(Some(2_048), None),
        ),
        (
            "merkle.io",
            "eth_getLogs range is too large, max is 10k blocks",
            blocks(Some(10_000), None),
        ),
        (
            "Arbitrum",
            "logs matched by query exceeds limit of 10000",
            results(Some(10_000), None),
        ),
        (
            "1RPC",
            "response size should not greater than 10485760 bytes",
            results(None, None),
        ),
        ("OP Stack, size", "backend response too large", results(None, None)),
        ("Infura, slow query", "query timeout exceeded", results(None, None)),
    ];
    for (provider, message, want) in cases {
        assert_eq!(parse(message), want, "{provider}: {message}");
    }
}

#[test]
fn rate_limits_and_other_errors_are_not_refusals() {
    for message in [
        "connection refused",
        "invalid params",
        "header not found",
        "internal error",
        "limit exceeded",
        "daily request count exceeded, request rate limited",
        "project ID request rate exceeded",
        "rate limited, try again in 4ms",
        "100/second request limit reached - reduce calls per second or upgrade your account at quicknode.com",
        "credits limited to 6000/sec",
        "Your app has exceeded its compute units per second capacity",
        "request exceeds limit of 100 per second",
        "error code -32000: execution reverted, data: [0x1, 0x2]",
        // A load balancer behind the head: retry, the range is fine.
        "block range extends beyond current head block",
        "invalid block range params",
    ] {
        assert_eq!(parse(message), None, "{message}");
    }
}

#[test]
fn numbers_read_with_separators_and_a_k_suffix() {
    assert_eq!(number("10,000 range"), Some((10_000, " range")));
    assert_eq!(number("2k block"), Some((2_000, " block")));
    assert_eq!(number("1.000 blocks."), Some((1_000, " blocks.")));
    assert_eq!(number("5000."), Some((5_000, ".")));
    assert_eq!(number("blocks"), None);
}
