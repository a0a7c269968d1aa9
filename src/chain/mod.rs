//! Everything that talks to the chain: `sol!` bindings, log decoding (pure),
//! the logs-bloom check (pure),
//! the adaptive getLogs range (pure), providers' range refusals (pure) and
//! which failures alloy may retry, the request budget, the reorg window (pure) and the RPC
//! source. It knows `domain`, not the store.

pub mod bindings;
pub mod bloom;
pub mod budget;
pub mod decode;
pub mod http;
pub mod pool;
pub mod range;
pub mod refusal;
pub mod retry_policy;
pub mod source;
pub mod window;
