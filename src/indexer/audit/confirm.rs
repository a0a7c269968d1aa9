//! Logs only another endpoint returned (a verifier, as the audit's endpoint
//! or in a verification round) wait here until the primary returns them
//! too, asked for by their block's hash, from a block on its canonical chain
//! (its header at that number has that hash); a log of an orphaned block is
//! forgotten. Each round asks a few blocks, in turn from where the last round
//! stopped, so that a block the primary never answers for cannot keep the
//! others waiting. While a re-asked log waits, the audit's position stays
//! below its block (a restart asks for it again).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use tokio_util::sync::CancellationToken;

use super::{Auditor, Path, Suspect};
use crate::domain::{BlockRef, LogKey};
use crate::indexer::Stop;

/// Logs waiting at most. Beyond, a new finding is not taken: the re-ask
/// stops where it is (and asks again), and a verification round's finding
/// is logged at ERROR for a person to run `audit` over its block.
const MAX_WAITING: usize = 1_000;
/// Blocks asked for in one round.
const BLOCKS_PER_ROUND: usize = 16;
/// Pause after a round that confirmed nothing, doubling to the longest.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(60);

/// The waiting logs, and when they are asked about next.
#[derive(Debug)]
pub(super) struct Waiting {
    logs: Vec<Suspect>,
    at: Instant,
    pause: Duration,
    /// The last block asked about: the next round starts after it.
    after: u64,
}

impl Default for Waiting {
    fn default() -> Self {
        Self {
            logs: Vec::new(),
            at: Instant::now(),
            pause: FIRST_PAUSE,
            after: 0,
        }
    }
}

impl Waiting {
    pub(super) fn due_at(&self) -> Option<Instant> {
        (!self.logs.is_empty()).then_some(self.at)
    }

    /// The block the position may reach when the re-ask has passed
    /// `last`: `last`, or the block before the oldest waiting log (`None`
    /// when that is block 0).
    pub(super) fn audited_below(&self, last: u64) -> Option<u64> {
        match self.logs.iter().map(|s| s.block.number).min() {
            Some(0) => None,
            Some(b) => Some((b - 1).min(last)),
            None => Some(last),
        }
    }

    /// Forgets the logs above `block` (a reorg rolled them back; the
    /// re-ask will ask for the new branch's).
    pub(super) fn forget_above(&mut self, block: u64) {
        self.logs.retain(|s| s.block.number <= block);
    }

    /// Up to [`BLOCKS_PER_ROUND`] blocks of waiting logs, in turn.
    fn next_blocks(&mut self) -> Vec<BlockRef> {
        let mut blocks: BTreeMap<(u64, B256), BlockRef> = BTreeMap::new();
        for s in &self.logs {
            blocks.insert((s.block.number, s.block.hash), s.block);
        }
        let (after, before): (Vec<_>, Vec<_>) =
            blocks.into_values().partition(|b| b.number > self.after);
        let picked: Vec<BlockRef> = after
            .into_iter()
            .chain(before)
            .take(BLOCKS_PER_ROUND)
            .collect();
        if let Some(last) = picked.last() {
            self.after = last.number;
        }
        picked
    }
}

impl Auditor {
    /// Takes logs another endpoint returned that are not stored: they wait
    /// for the primary (asked at once). False, and nothing taken, when too
    /// many wait already.
    pub(super) fn suspect(&mut self, found: Vec<Suspect>) -> bool {
        let known: HashSet<LogKey> = self.confirm.logs.iter().map(|s| s.key).collect();
        let new: Vec<Suspect> = found
            .into_iter()
            .filter(|s| !known.contains(&s.key))
            .collect();
        if new.is_empty() {
            return true;
        }
        if self.confirm.logs.len() + new.len() > MAX_WAITING {
            for s in new.iter().filter(|s| s.path == Path::Verify) {
                tracing::error!(block = s.block.number, tx = %s.key.tx_hash,
                    log_index = s.key.log_index, endpoint = %s.found_by,
                    "a verifier returned a log that is not stored, and too many wait for the primary \
                     already: run `liqpass-indexer audit` over its block");
            }
            return false;
        }
        for s in &new {
            tracing::warn!(
                path = s.path.label(),
                block = s.block.number,
                tx = %s.key.tx_hash,
                log_index = s.key.log_index,
                endpoint = %s.found_by,
                "a log another endpoint returned is not stored; asking the primary for its block"
            );
        }
        self.confirm.logs.extend(new);
        self.confirm.at = Instant::now();
        self.confirm.pause = FIRST_PAUSE;
        true
    }

    /// Asks the primary for a few blocks of waiting logs, by hash: the
    /// unstored logs of its answers are stored; a waiting log of an
    /// orphaned block is forgotten; the others wait for a later round.
    pub(super) async fn confirm(&mut self, cancel: &CancellationToken) -> Result<(), Stop> {
        let final_block = self.final_block(cancel).await?.unwrap_or(0);
        let mut settled: HashSet<LogKey> = HashSet::new();
        for block in self.confirm.next_blocks() {
            let Some(header) = self.primary_header(block.number, cancel).await? else {
                continue;
            };
            let of_block = |s: &Suspect| s.block.hash == block.hash;
            if header.hash != block.hash {
                tracing::info!(
                    block = block.number,
                    "a waiting log's block was orphaned; forgotten"
                );
                settled.extend(
                    self.confirm
                        .logs
                        .iter()
                        .filter(|s| of_block(s))
                        .map(|s| s.key),
                );
                continue;
            }
            self.take_share(cancel).await?;
            let primary = self.primary.clone();
            let hash = block.hash;
            let answer = self
                .call(
                    &primary,
                    "eth_getLogs",
                    |s| async move { s.logs_at(hash).await },
                )
                .await;
            let Ok(logs) = answer else {
                continue;
            };
            let returned: HashSet<LogKey> = logs
                .iter()
                .filter_map(|l| {
                    Some(LogKey {
                        tx_hash: l.transaction_hash?,
                        log_index: l.log_index?,
                    })
                })
                .collect();
            let path = self
                .confirm
                .logs
                .iter()
                .find(|s| of_block(s))
                .map_or(Path::Audit, |s| s.path);
            let span = (block.number, block.number);
            let missing = self.not_stored(&logs, span).await?;
            let endpoint = primary.endpoint();
            let out = self
                .recover(&missing, None, path, span, &endpoint, final_block, cancel)
                .await?;
            let skipped: HashSet<LogKey> = out.skipped.into_iter().collect();
            settled.extend(returned.into_iter().filter(|k| !skipped.contains(k)));
        }
        let before = self.confirm.logs.len();
        self.confirm.logs.retain(|s| !settled.contains(&s.key));
        let w = &mut self.confirm;
        w.pause = if w.logs.len() < before {
            FIRST_PAUSE
        } else {
            (w.pause * 2).min(LONGEST_PAUSE)
        };
        w.at = Instant::now() + w.pause;
        if self.confirm.logs.len() < before && self.settings.audit.interval.is_some() {
            // The position may now pass the blocks of the settled logs.
            let last = self.cursor.checked_sub(1);
            let audited = last.and_then(|l| self.confirm.audited_below(l));
            if audited > self.position {
                let span = (self.cursor, self.cursor);
                self.recover(&[], audited, Path::Audit, span, "", final_block, cancel)
                    .await?;
            }
        }
        Ok(())
    }
}
