//! What a provider means when it refuses an `eth_getLogs`: which limit was
//! hit (blocks per range, or logs per answer), the number it states, and the
//! range it suggests instead. Pure: one error text in, one [`Refusal`] out.
//! It must not decide what to do next (that is `range::RangeSizer`), and it
//! must not mistake a rate limit ("daily request limit exceeded") for a
//! range refusal: those are retried unchanged, refusals never are.

/// Which of the provider's limits a refusal names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Blocks per request: a property of the provider, so it is remembered.
    Blocks,
    /// Logs (or bytes) per answer: a property of the range's density, so the
    /// next range shrinks but the provider's block ceiling is not lowered.
    Results,
}

/// A provider's refusal of a getLogs range, parsed from its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub limit: Limit,
    /// The number the message states: blocks for [`Limit::Blocks`], logs
    /// for [`Limit::Results`].
    pub max: Option<u64>,
    /// `[from, to]` the provider suggests (Infura, Alchemy, reth).
    pub suggested: Option<(u64, u64)>,
}

/// Phrases stating a block limit, each followed by the number (digits with
/// `,`/`.` separators, optional `k`), lower-case. Sources: Coinbase (CDP),
/// QuickNode, 1RPC, BlastAPI, BlockPI, Alchemy, Infura, Tenderly, reth and
/// Base's public endpoint, geth/BSC and PublicNode, Morph, Moonbeam, Ankr,
/// Cloudflare, thirdweb, Avalanche, dRPC, Swell, Somnia, merkle.io.
const BLOCK_CAPS: &[&str] = &[
    "please limit the query to at most ",
    "is limited to a ",
    "limited to ",
    "requests with up to a ",
    "exceeds limit of ",
    "bigger than range limit ",
    "query exceeds max block range ",
    "maximum block range: ",
    "max block range = ",
    "block range is too wide (maximum ",
    "blocks distance: ",
    "max range: ",
    "maximum allowed number of requested blocks is ",
    "maximum is set to ",
    "ranges over ",
    "block range greater than ",
    "block range exceeds ",
    "range is too large, max is ",
];

/// Phrases of a block-range refusal that states no number: the range halves.
/// Ankr, Chainstack, Base, OP Stack, scroll/l2geth, Candle.
const BLOCK_WORDS: &[&str] = &[
    "block range is too wide",
    "block range limit exceeded",
    "block range too large",
    "block range is too large",
    "block range too high",
    "block range is bigger than",
    "block range is larger than",
    "exceed maximum block range",
    "exceeds max block range",
    "range too large",
    "too many blocks",
];

/// Phrases stating a result limit, each followed by the number of logs.
const RESULT_CAPS: &[&str] = &[
    "query returned more than ",
    "exceeds max results ",
    "logs matched by query exceeds limit of ",
];

/// Phrases of a result-size refusal that states no number.
const RESULT_WORDS: &[&str] = &[
    "log response size exceeded",
    "response size should not",
    "response size exceeded",
    "backend response too large",
    "too many results",
    // Infura's -32005 for a query that ran too long: a smaller range runs faster.
    "query timeout exceeded",
];

/// Parses a provider's error text (message and data). `None` when it is
/// not a refusal of the range's size.
pub fn parse(text: &str) -> Option<Refusal> {
    let lower = text.to_ascii_lowercase();
    // A rate limit ("exceeds limit of 100 req/s") names neither blocks nor
    // ranges; every block refusal does.
    let about_ranges = ["block", "range", "getlogs"]
        .iter()
        .any(|w| lower.contains(w));
    let any_range = suggested_range(&lower);
    // Result caps first: Arbitrum's "logs matched by query exceeds limit of
    // N" is about logs, though "exceeds limit of" is also Infura's block cap.
    if let Some(max) = RESULT_CAPS
        .iter()
        .find_map(|p| number_after(&lower, p, false))
    {
        return Some(Refusal {
            limit: Limit::Results,
            max: Some(max),
            suggested: any_range,
        });
    }
    let suggested = any_range.filter(|_| about_ranges);
    let block_cap = BLOCK_CAPS
        .iter()
        .filter(|_| about_ranges)
        .find_map(|p| number_after(&lower, p, true));
    if let Some(max) = block_cap {
        return Some(Refusal {
            limit: Limit::Blocks,
            max: Some(max),
            suggested,
        });
    }
    let limit = if about_ranges && BLOCK_WORDS.iter().any(|w| lower.contains(w)) {
        Limit::Blocks
    } else if RESULT_WORDS.iter().any(|w| lower.contains(w)) || suggested.is_some() {
        Limit::Results
    } else {
        return None;
    };
    Some(Refusal {
        limit,
        max: None,
        suggested,
    })
}

/// The number right after `phrase`: `10,000`, `2K`, `1000`. With `blocks`,
/// a number followed by "logs"/"results" is not taken (Alchemy's "cap of
/// 10K logs" must not read as a block limit), and "limited to" needs
/// "block"/"range" after it (QuickNode's and BlockPI's wording; a plan
/// "limited to 100 requests" is a rate limit).
fn number_after(text: &str, phrase: &str, blocks: bool) -> Option<u64> {
    text.match_indices(phrase).find_map(|(at, _)| {
        let rest = &text[at + phrase.len()..];
        let (n, tail) = number(rest).filter(|(n, _)| *n > 0)?;
        let tail = tail.trim_start();
        let next_word = tail.split(|c: char| !c.is_ascii_alphabetic()).next()?;
        if blocks && matches!(next_word, "logs" | "results" | "requests" | "calls") {
            return None;
        }
        if blocks && phrase == "limited to " && !matches!(next_word, "block" | "blocks" | "range") {
            return None;
        }
        Some(n)
    })
}

/// A leading decimal number with thousands separators and an optional `k`.
fn number(s: &str) -> Option<(u64, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.'))
        .unwrap_or(s.len());
    let digits: String = s[..end]
        .trim_end_matches(['.', ','])
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let consumed = s[..end].trim_end_matches(['.', ',']).len();
    let mut n: u64 = digits.parse().ok()?;
    let mut rest = &s[consumed..];
    if let Some(after_k) = rest.strip_prefix('k') {
        n = n.checked_mul(1000)?;
        rest = after_k;
    }
    Some((n, rest))
}

/// `[0xa, 0xb]` (Infura, Alchemy, zkSync), "retry with the range a-b"
/// (reth), or Infura's `data: {"from": "0x..", "to": "0x.."}`.
fn suggested_range(text: &str) -> Option<(u64, u64)> {
    let bracket = text.match_indices('[').find_map(|(at, _)| {
        let inner = text[at + 1..].split(']').next()?;
        let (a, b) = inner.split_once(',')?;
        Some((hex(a)?, hex(b)?))
    });
    let reth = || {
        let rest = text.split_once("retry with the range ")?.1;
        let (a, rest) = number(rest)?;
        let (b, _) = number(rest.strip_prefix('-')?)?;
        Some((a, b))
    };
    let data = || {
        let field = |name: &str| {
            let rest = text.split_once(&format!("\"{name}\":"))?.1;
            hex(rest
                .trim_start()
                .trim_start_matches('"')
                .split('"')
                .next()?)
        };
        Some((field("from")?, field("to")?))
    };
    bracket
        .or_else(reth)
        .or_else(data)
        .filter(|(from, to)| from <= to)
}

fn hex(s: &str) -> Option<u64> {
    let s = s.trim().strip_prefix("0x")?;
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
#[path = "refusal_tests.rs"]
mod tests;
