//! Deep ranges in flight: far behind the head, up to
//! `chain.max_concurrent_requests` `eth_getLogs` ranges are asked for at
//! once, and committed strictly in block order. A range that fails is
//! retried inside its request (`Fetcher::rpc`); one that is refused goes
//! back to waiting, is asked again at the size the refusal left (cut into
//! pieces if need be) before any new range, and nothing after it commits
//! first. Ranges planned ahead take the sizer's size of the moment; the
//! learned cap applies to every range launched after it.
//!
//! The answered ranges at the front are merged into one batch and committed
//! with one header request for its last block (none when a log of that block
//! carries its hash), every `COMMIT_EVERY` or once they hold the density
//! target's logs, whichever comes first, or at once when a log of the last
//! block gives the checkpoint's hash for free; block times come from the logs'
//! `blockTimestamp` (headers only for blocks whose logs lack it).
//!
//! The window runs in a task of its own (the fetch stage far behind), which
//! parses the answers, decodes each merged front and gives it its
//! checkpoint hash and block times, and hands the batches over the bounded
//! channel to the writer (`indexer::hand_over`): no answer is parsed while
//! a write transaction is open, and the next ranges fly while a batch
//! commits.
//!
//! Memory is bounded by the window: at most `max_concurrent_requests`
//! ranges in flight or answered out of order (a refused range's pieces
//! aside, asked again first), plus the merged front, to which no range is
//! added once it holds [`TARGET_LOGS`] logs until the writer takes it, one
//! batch waiting in the channel and the one the writer commits; the sizer
//! sizes each range to about that many logs (2,000), so at most about N + 3
//! ranges of 2,000 logs each are held (a range denser than the one before it can exceed its share once,
//! up to what the provider answers at most).
//!
//! It must not let the checkpoint pass a block whose range is not written:
//! the checkpoint is the last block of the merged front, committed in the
//! same transaction as its logs (`writer`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::rpc::types::Log;
use futures::future::{AbortHandle, Abortable, Aborted, BoxFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::batch::{decode_all, Batch, Fetched};
use super::fetch::{Fetcher, Refused};
use crate::chain::range::TARGET_LOGS;
use crate::domain::BlockRef;
use crate::retry::Cancelled;

/// Longest time answered ranges wait at the front before they commit: the
/// work a crash can lose, and the spacing of header requests on a sparse
/// chain (one per commit at most). Shorter when the head refresh interval
/// is (a short `stall_after_s`): a commit is what shows progress.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// One range of the window.
#[derive(Debug)]
struct Slot {
    from: u64,
    to: u64,
    state: State,
    /// The most blocks it may be asked for in one range: after a refusal,
    /// the size the refusal left (the sizer may grow past it meanwhile, on
    /// other ranges' answers; a refused range is never sent again whole).
    max: u64,
}

#[derive(Debug)]
enum State {
    /// To be asked for (refused, or the rest of a range cut to size).
    Waiting,
    Flying,
    Answered(Vec<Log>),
}

/// The ranges between the checkpoint and the next block to plan, in block
/// order (pure: no I/O).
#[derive(Debug)]
pub struct RangeWindow {
    slots: VecDeque<Slot>,
    /// The first block no slot covers yet.
    next: u64,
    limit: u64,
    /// Ranges held at once, the merged front aside.
    width: usize,
}

impl RangeWindow {
    /// Ranges from `from` to `limit`, at most `width` of them held at once.
    pub fn new(from: u64, limit: u64, width: usize) -> Self {
        Self {
            slots: VecDeque::new(),
            next: from,
            limit,
            width: width.max(1),
        }
    }

    /// The next range to ask for, at most `size` blocks, when the window
    /// has room: the first waiting range (cut to `size`) while fewer than
    /// `width` fly, else a new one while fewer than `width` are flying or
    /// answered behind a gap and the front holds fewer than [`TARGET_LOGS`]
    /// logs. A waiting range is never kept waiting by the ranges answered
    /// after it.
    pub fn launch(&mut self, size: u64) -> Option<(u64, u64)> {
        let size = size.max(1);
        let flying = self.count(|s| matches!(s, State::Flying));
        if flying >= self.width {
            return None;
        }
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| matches!(s.state, State::Waiting))
        {
            let slot = &mut self.slots[i];
            let (from, whole, max) = (slot.from, slot.to, slot.max);
            let to = whole.min(from.saturating_add(size.min(max) - 1));
            slot.to = to;
            slot.state = State::Flying;
            if to < whole {
                let rest = Slot {
                    from: to + 1,
                    to: whole,
                    state: State::Waiting,
                    max,
                };
                self.slots.insert(i + 1, rest);
            }
            return Some((from, to));
        }
        // The front merges the answered ranges at it until the writer takes
        // it; once it holds a batch's worth of logs, new ranges wait with
        // it (a writer slower than the node would let it grow without
        // bound), while empty and sparse ranges still merge into one batch.
        let (front, front_logs) = self.front();
        let behind = self.count(|s| matches!(s, State::Answered(_))) - front;
        let front_full = front_logs as u64 >= TARGET_LOGS;
        if flying + behind >= self.width || front_full || self.next > self.limit {
            return None;
        }
        let (from, to) = (
            self.next,
            self.limit.min(self.next.saturating_add(size - 1)),
        );
        self.slots.push_back(Slot {
            from,
            to,
            state: State::Flying,
            max: u64::MAX,
        });
        self.next = to + 1;
        Some((from, to))
    }

    fn count(&self, f: impl Fn(&State) -> bool) -> usize {
        self.slots.iter().filter(|s| f(&s.state)).count()
    }

    /// The flying range `from..=to` came back with `logs`.
    pub fn answered(&mut self, from: u64, to: u64, logs: Vec<Log>) {
        self.slot(from, to).state = State::Answered(logs);
    }

    /// The flying range `from..=to` was refused: it waits to be asked
    /// again, in ranges of at most `max` blocks (fewer than it had).
    pub fn refused(&mut self, from: u64, to: u64, max: u64) {
        let slot = self.slot(from, to);
        slot.state = State::Waiting;
        slot.max = max.clamp(1, (to - from).max(1));
    }

    /// A block limit of `cap` was learned: the flying ranges wider than it
    /// wait again (to be cut to size), and are given back to be called off.
    pub fn recut(&mut self, cap: u64) -> Vec<(u64, u64)> {
        let mut off = Vec::new();
        for s in &mut self.slots {
            if matches!(s.state, State::Flying) && s.to - s.from + 1 > cap {
                s.state = State::Waiting;
                off.push((s.from, s.to));
            }
        }
        off
    }

    fn slot(&mut self, from: u64, to: u64) -> &mut Slot {
        self.slots
            .iter_mut()
            .find(|s| s.from == from && s.to == to && matches!(s.state, State::Flying))
            .expect("only a flying range is answered or refused")
    }

    /// Answered ranges at the front: how many, and the logs they hold.
    fn front(&self) -> (usize, usize) {
        let mut logs = 0;
        let mut n = 0;
        for s in &self.slots {
            let State::Answered(l) = &s.state else { break };
            logs += l.len();
            n += 1;
        }
        (n, logs)
    }

    /// Logs held by the answered ranges at the front.
    pub fn front_logs(&self) -> Option<usize> {
        let (n, logs) = self.front();
        (n > 0).then_some(logs)
    }

    /// True when a log of the front's last block carries that block's hash:
    /// its checkpoint costs no header request, so it may commit at once.
    pub fn front_ends_on_a_log(&self) -> bool {
        let (n, _) = self.front();
        let Some(last) = n.checked_sub(1).map(|i| &self.slots[i]) else {
            return false;
        };
        let State::Answered(logs) = &last.state else {
            return false;
        };
        logs.last()
            .is_some_and(|l| l.block_number == Some(last.to) && l.block_hash.is_some())
    }

    /// True when no range is flying.
    pub fn idle(&self) -> bool {
        !self.slots.iter().any(|s| matches!(s.state, State::Flying))
    }

    /// True when every block up to the limit is taken out.
    #[cfg(test)]
    pub fn finished(&self) -> bool {
        self.slots.is_empty() && self.next > self.limit
    }

    /// Takes the answered ranges at the front: their first and last
    /// blocks, and their logs in block order.
    pub fn take_front(&mut self) -> Option<(u64, u64, Vec<Log>)> {
        let (n, count) = self.front();
        if n == 0 {
            return None;
        }
        let mut logs = Vec::with_capacity(count);
        let first = self.slots[0].from;
        let mut last = first;
        for slot in self.slots.drain(..n) {
            last = slot.to;
            if let State::Answered(l) = slot.state {
                logs.extend(l);
            }
        }
        Some((first, last, logs))
    }
}

/// A deep phase: where it runs, and what it commits against.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub from: u64,
    pub limit: u64,
    pub head: u64,
    pub final_block: u64,
    pub width: usize,
    /// How often the head is re-read (`fetch::head_refresh_interval`), and
    /// the front committed at least.
    pub refresh_every: Duration,
}

type Answer = Result<Result<Vec<Log>, Refused>, Cancelled>;
type Flying = BoxFuture<'static, (u64, u64, Result<Answer, Aborted>)>;

/// The answered ranges at the front of the window, merged: blocks
/// `from..=to` and their logs in block order.
#[derive(Debug)]
struct Front {
    from: u64,
    to: u64,
    logs: Vec<Log>,
}

/// The fetch stage of a deep phase: the window, the ranges in flight and
/// what they are for. It runs as its own task, so that the answers are
/// parsed there and never while the writer's transaction is open.
struct Flight {
    fetcher: Arc<Fetcher>,
    window: RangeWindow,
    flying: FuturesUnordered<Flying>,
    /// To call off a flying range that a learned limit cuts (`recut`).
    handles: HashMap<(u64, u64), AbortHandle>,
}

impl Flight {
    /// Launches ranges while the window has room, each at the sizer's size
    /// of the moment (within the endpoint's learned limit).
    fn fill(&mut self) {
        loop {
            let size = {
                let mut sizer = self.fetcher.sizer();
                sizer.set_cap(self.fetcher.pool.range_cap());
                sizer.size()
            };
            let Some((from, to)) = self.window.launch(size) else {
                return;
            };
            let (handle, registration) = AbortHandle::new_pair();
            self.handles.insert((from, to), handle);
            let fetcher = self.fetcher.clone();
            let logs = Abortable::new(async move { fetcher.logs(from, to).await }, registration);
            self.flying
                .push(Box::pin(async move { (from, to, logs.await) }));
        }
    }

    /// Takes the answer to `from..=to`: its logs, or a refusal that shrinks
    /// it (and cuts the wider ranges in flight to a limit it taught). A
    /// cancelled one is dropped: the stage sees the token and stops.
    async fn answered(&mut self, from: u64, to: u64, answer: Answer) {
        self.handles.remove(&(from, to));
        let Ok(answer) = answer else { return };
        match answer {
            Ok(logs) => {
                let (len, count) = (to - from + 1, logs.len() as u64);
                self.fetcher.sizer().accepted(len, count);
                self.window.answered(from, to, logs);
            }
            Err(why) => {
                if self.fetcher.refused(from, to, why).await.is_err() {
                    return;
                }
                let max = self.fetcher.sizer().size();
                self.window.refused(from, to, max);
                let cap = self.fetcher.pool.range_cap().unwrap_or(u64::MAX);
                for range in self.window.recut(cap) {
                    if let Some(h) = self.handles.remove(&range) {
                        h.abort();
                    }
                }
            }
        }
    }

    /// Runs the window over `plan`, handing merged fronts to `fronts` in
    /// block order, until every block up to the limit is handed over, or
    /// `stop` fires (the writer ended, or the daemon stops), or a stall
    /// begins (the caller rebuilds the connection). Ranges still flying
    /// then are dropped.
    async fn run(mut self, plan: Plan, fronts: mpsc::Sender<Fetched>, stop: CancellationToken) {
        // None: nothing handed over yet; the first front goes at once (the
        // checkpoint shows the catch-up started).
        let mut last_sent: Option<Instant> = None;
        let every = COMMIT_EVERY.min(plan.refresh_every);
        let stalled_before = self.fetcher.health.stalled();
        loop {
            let stopping = stop.is_cancelled()
                || self.fetcher.cancel.is_cancelled()
                || (!stalled_before && self.fetcher.health.stalled());
            if stopping {
                return;
            }
            self.fill();
            let window = &self.window;
            let due = window.front_logs().is_some_and(|logs| {
                logs as u64 >= TARGET_LOGS
                    || window.idle()
                    || window.front_ends_on_a_log()
                    || last_sent.is_none_or(|t| t.elapsed() >= every)
            });
            if !due && self.flying.is_empty() {
                // Nothing flying and nothing to hand over: every block is.
                return;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                Some((from, to, answer)) = self.flying.next(), if !self.flying.is_empty() => {
                    // Called off (`RangeWindow::recut`): the range waits again.
                    if let Ok(answer) = answer {
                        self.answered(from, to, answer).await;
                    }
                }
                permit = fronts.reserve(), if due => {
                    let Ok(permit) = permit else { return };
                    let (from, to, logs) = self.window.take_front().expect("due only with a front");
                    let Ok(batch) = prepare(&self.fetcher, plan, Front { from, to, logs }).await else {
                        return;
                    };
                    permit.send(Fetched::Batch {
                        batch,
                        head: plan.head,
                        final_block: plan.final_block,
                    });
                    last_sent = Some(Instant::now());
                }
                // The interval may make a waiting front due.
                _ = tokio::time::sleep(every), if !due => {}
            }
        }
    }
}

/// The fetch stage far behind, run as a task of its own: `plan`'s ranges
/// in flight, their answers parsed, decoded and timed here, handed to the
/// writer over `out` in block order. Ends when every block up to the
/// limit is handed over, when `stop` fires or the writer is gone, or when
/// a stall begins (the caller rebuilds the connection).
pub(super) async fn deep_ranges(
    fetcher: Arc<Fetcher>,
    plan: Plan,
    out: mpsc::Sender<Fetched>,
    stop: CancellationToken,
) {
    let flight = Flight {
        window: RangeWindow::new(plan.from, plan.limit, plan.width),
        fetcher,
        flying: FuturesUnordered::new(),
        handles: HashMap::new(),
    };
    flight.run(plan, out, stop).await
}

/// The merged front `from..=to` as a decoded batch: the checkpoint's hash
/// from a log of block `to` when one has it, else from its header; block
/// times from the logs, else from headers; the head re-read when due.
async fn prepare(fetcher: &Fetcher, plan: Plan, front: Front) -> Result<Batch, Cancelled> {
    let Front { from, to, logs } = front;
    fetcher.refresh_head(plan.refresh_every).await?;
    let known = logs
        .iter()
        .rev()
        .find(|l| l.block_number == Some(to) && !l.removed)
        .and_then(|l| l.block_hash);
    let (last, headers) = match known {
        Some(hash) => (BlockRef { number: to, hash }, vec![]),
        None => {
            let header = fetcher.header(to).await?;
            (header.block_ref(), vec![header])
        }
    };
    let mut batch = decode_all(from, last, headers, &logs);
    drop(logs);
    fetcher.fill_timestamps(&mut batch.payments).await?;
    Ok(batch)
}

#[cfg(test)]
#[path = "flight_tests.rs"]
mod tests;
