//! The shop chain (`--only shop`): 20,000 payments, 100 a block, each its
//! own transaction with a random order ref (keccak256 of a number), as a
//! busy shop's catch-up would find them; the alone rows (`alone.rs`) and
//! the WAL rows (`wal.rs`) on it, a random order id for each order.
//! `LIQPASS_BENCH_NO_ORDERS=1`: the same without orders.

use std::time::Instant;

use super::support::chain::Chain;
use super::{alone, cache_dir, load, save, wal, Refs};

/// Payments on the shop chain.
const PAYMENTS: u64 = 20_000;
/// Payments a block.
const PER_BLOCK: u64 = 100;
/// The first order ref's number (hashed).
const FIRST_REF: u64 = 3_000_000;

pub async fn rows(table: &mut Vec<(String, String)>) {
    let chain = shop_chain().await;
    let head = chain.head().await;
    let blocks = PAYMENTS / PER_BLOCK;
    alone::rows(&chain, head, FIRST_REF, PAYMENTS, Refs::Hashed, table).await;
    wal::rows(
        &chain,
        head,
        PAYMENTS,
        blocks,
        FIRST_REF,
        Refs::Hashed,
        table,
    )
    .await;
}

/// The shop chain, from the cache when it exists; it ends on its last
/// payment's block.
async fn shop_chain() -> Chain {
    let args = ["--gas-limit", "1000000000", "--prune-history"];
    let cache = cache_dir().join(format!(
        "chain-shop-{PAYMENTS}-{PER_BLOCK}-{FIRST_REF}.json.gz"
    ));
    if cache.exists() {
        eprintln!("chain: loaded {}", cache.display());
        return load(&cache, &args).await;
    }
    let chain = Chain::start_with(&args).await;
    let started = Instant::now();
    let buyer = chain.buyers[0];
    let mut made = 0;
    while made < PAYMENTS {
        let refs: Vec<_> = (made..made + PER_BLOCK)
            .map(|n| Refs::Hashed.order_ref(FIRST_REF + n))
            .collect();
        chain.emit_block(buyer, &refs, 5_000_000).await;
        made += PER_BLOCK;
        if made % (PAYMENTS / 10) == 0 {
            eprintln!(
                "chain: {made}/{PAYMENTS} payments ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "chain: shop chain of {PAYMENTS} payments up to block {} generated in {:.1} s",
        chain.head().await,
        started.elapsed().as_secs_f64()
    );
    save(&chain, &cache).await;
    chain
}
