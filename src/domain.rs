//! Plain types shared by every stage: blocks, payments, orders, match outcomes
//! and amounts. No I/O, no async, no knowledge of RPC or SQL.

use std::fmt;

use alloy::primitives::{Address, Bloom, B256, U256};

/// A block as the indexer remembers it: enough to detect a reorg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    pub number: u64,
    pub hash: B256,
}

/// The header fields the indexer needs from a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    pub timestamp: u64,
    /// The block's logs bloom: which addresses and topics its logs may
    /// hold (no false negatives; see `chain::bloom`).
    pub logs_bloom: Bloom,
}

impl BlockHeader {
    pub fn block_ref(&self) -> BlockRef {
        BlockRef {
            number: self.number,
            hash: self.hash,
        }
    }
}

/// Which version of the `PremiumPaid` event a log carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventVersion {
    /// `PremiumPaid(bytes32 indexed orderId, address indexed buyer, uint256 amount, bytes32 indexed quoteHash)`.
    V1,
    /// v1 plus `address token, address treasury, uint256 chainId, uint256 timestamp`.
    V2,
}

impl EventVersion {
    pub fn number(self) -> i64 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

/// Where a v2 event says the money went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    pub token: Address,
    pub treasury: Address,
    pub chain_id: U256,
    pub timestamp: U256,
}

/// A token amount in micro-USDC (6 decimals), exact whatever its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(pub U256);

impl Amount {
    /// The amount as a SQLite INTEGER, or `None` when it does not fit in an i64.
    pub fn micro_usdc(self) -> Option<i64> {
        i64::try_from(self.0).ok()
    }

    /// Exact decimal text, for storage and display.
    pub fn decimal(self) -> String {
        self.0.to_string()
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a log sits on chain; its identity is `(chain_id, tx_hash, log_index)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogKey {
    pub tx_hash: B256,
    pub log_index: u64,
}

/// A decoded `PremiumPaid` log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub key: LogKey,
    pub contract: Address,
    pub block: BlockRef,
    /// Unix seconds; `None` only when the node gave no timestamp for the block.
    pub block_timestamp: Option<u64>,
    pub version: EventVersion,
    pub order_ref: B256,
    pub payer: Address,
    pub amount: Amount,
    pub quote_hash: B256,
    /// Present for v2 events only.
    pub destination: Option<Destination>,
}

impl Payment {
    /// The decoded arguments as JSON, stored in `contract_events.args_json`.
    pub fn args_json(&self) -> serde_json::Value {
        let payment = self;
        let mut args = serde_json::json!({
            "orderId": format!("{:#x}", payment.order_ref),
            "buyer": format!("{:#x}", payment.payer),
            "amount": payment.amount.decimal(),
            "quoteHash": format!("{:#x}", payment.quote_hash),
        });
        if let Some(dest) = &payment.destination {
            args["token"] = format!("{:#x}", dest.token).into();
            args["treasury"] = format!("{:#x}", dest.treasury).into();
            args["chainId"] = dest.chain_id.to_string().into();
            args["timestamp"] = dest.timestamp.to_string().into();
        }
        args
    }
}

/// A log of the checkout contract that carries one of the `PremiumPaid`
/// topic0s but that no `emit` of either version can produce (a wrong number
/// of topics, an address that is not clean, data of the wrong length): kept
/// raw, never a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub key: LogKey,
    pub block: BlockRef,
    pub block_timestamp: Option<u64>,
    pub topics: Vec<B256>,
    pub data: Vec<u8>,
    /// Why it is not a payment, in the decoder's words.
    pub reason: String,
}

impl Malformed {
    /// The orderId it would name (its topic1), when it has one.
    pub fn order_ref(&self) -> Option<B256> {
        self.topics.get(1).copied()
    }
}

/// The contract's `TreasuryUpdated(oldTreasury, newTreasury)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreasuryChange {
    pub key: LogKey,
    pub block: BlockRef,
    pub old: Address,
    pub new: Address,
}

/// The treasury a v2 payment must name, log by log: `initial` (the
/// configured `chain.treasury`; `None`: any), then each `TreasuryUpdated`,
/// in force from its own log on (a payment later in the same block sees
/// it, an earlier one does not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Treasuries {
    pub initial: Option<Address>,
    /// `(block, log index, new treasury)`, in chain order.
    pub changes: Vec<(u64, u64, Address)>,
}

impl Treasuries {
    /// The treasury in force at log `log_index` of block `block`.
    pub fn at(&self, block: u64, log_index: u64) -> Option<Address> {
        self.changes
            .iter()
            .take_while(|(b, i, _)| (*b, *i) < (block, log_index))
            .last()
            .map(|(_, _, t)| *t)
            .or(self.initial)
    }
}

/// What an overpayment does to its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverpaymentPolicy {
    Accept,
    Flag,
}

/// The reconciliation outcome stored in `contract_events.match_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchStatus {
    Matched,
    UnknownOrder,
    DuplicatePayment,
    PayerMismatch,
    Underpaid,
    Overpaid,
    LatePayment,
    WrongDestination,
    OrderCancelled,
    OrderExpired,
}

impl MatchStatus {
    pub const ALL: [MatchStatus; 10] = [
        Self::Matched,
        Self::UnknownOrder,
        Self::DuplicatePayment,
        Self::PayerMismatch,
        Self::Underpaid,
        Self::Overpaid,
        Self::LatePayment,
        Self::WrongDestination,
        Self::OrderCancelled,
        Self::OrderExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::UnknownOrder => "unknown_order",
            Self::DuplicatePayment => "duplicate_payment",
            Self::PayerMismatch => "payer_mismatch",
            Self::Underpaid => "underpaid",
            Self::Overpaid => "overpaid",
            Self::LatePayment => "late_payment",
            Self::WrongDestination => "wrong_destination",
            Self::OrderCancelled => "order_cancelled",
            Self::OrderExpired => "order_expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for MatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An order as reconciliation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub order_ref: B256,
    pub wallet: Address,
    pub premium_usdc: i64,
    pub status: String,
    pub payment_status: String,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// The live (not removed) log that already paid this order, if any.
    pub paid_by: Option<LogKey>,
}

/// Lower-case `0x` hex of 32 bytes, the stored form of hashes and order refs.
pub fn hex32(value: &B256) -> String {
    format!("{value:#x}")
}

/// Lower-case `0x` hex of an address, the stored form of wallets and contracts.
pub fn hex_address(value: &Address) -> String {
    format!("{value:#x}")
}

/// The chain and contract one indexer follows; every stored row is scoped by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub chain_id: u64,
    pub contract: Address,
}

/// How every RPC request is bounded (`chain.request_timeout_ms`,
/// `chain.max_answer_mib`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBounds {
    /// A request (its rate-limit retries included) gives up after this.
    pub timeout: std::time::Duration,
    /// The most bytes of one answer read; a larger answer is not read to
    /// its end.
    pub max_answer: usize,
}

/// The cause of a failed write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteFailure {
    /// `SQLITE_FULL` or PostgreSQL's `53100`: the disk (or the database's
    /// size limit) is full.
    DiskFull,
    /// `SQLITE_IOERR`: the operating system failed a read or write.
    Io,
    /// `SQLITE_READONLY`: the file or its filesystem is read-only.
    ReadOnly,
    /// `SQLITE_BUSY`/`SQLITE_LOCKED`, or PostgreSQL's `55P03`: another
    /// session held a lock this transaction waited for, past the wait's
    /// bound (SQLite's busy timeout, PostgreSQL's `lock_timeout`).
    LockWait,
    /// PostgreSQL's `40001`/`40P01`: a serialization failure or a
    /// deadlock; the transaction is simply run again.
    Conflict,
    /// PostgreSQL's `57014`: a statement ran past `statement_timeout` (or
    /// was cancelled).
    StatementTimeout,
    /// PostgreSQL's `25P03` or `57P01`: the server ended the session (idle
    /// in a transaction too long, `pg_terminate_backend`, a shutdown).
    SessionTerminated,
    /// `SQLITE_CORRUPT`/`SQLITE_NOTADB`: a damaged page or file.
    Corrupt,
    /// `SQLITE_CANTOPEN`: the file (or its directory) cannot be opened.
    CantOpen,
    /// No pooled connection became free in time.
    PoolTimeout,
    /// PostgreSQL: the connection failed or the server ended it (SQLSTATE
    /// classes 08 and 57P: a restart, `pg_terminate_backend`, a network cut).
    Unreachable,
    /// Anything else (constraint, driver, stored data).
    Other,
}

impl WriteFailure {
    pub const ALL: [WriteFailure; 12] = [
        Self::DiskFull,
        Self::Io,
        Self::ReadOnly,
        Self::LockWait,
        Self::Conflict,
        Self::StatementTimeout,
        Self::SessionTerminated,
        Self::Corrupt,
        Self::CantOpen,
        Self::PoolTimeout,
        Self::Unreachable,
        Self::Other,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::DiskFull => "disk_full",
            Self::Io => "io_error",
            Self::ReadOnly => "read_only",
            Self::LockWait => "lock_wait",
            Self::Conflict => "conflict",
            Self::StatementTimeout => "statement_timeout",
            Self::SessionTerminated => "session_terminated",
            Self::Corrupt => "corrupt",
            Self::CantOpen => "cannot_open",
            Self::PoolTimeout => "pool_timeout",
            Self::Unreachable => "unreachable",
            Self::Other => "other",
        }
    }
}
