//! Everything that talks to the chain: `sol!` bindings, log decoding (pure),
//! the adaptive getLogs range (pure), the reorg window (pure) and the RPC
//! source. It knows `domain`, not the store.

pub mod bindings;
pub mod decode;
pub mod pool;
pub mod range;
pub mod source;
pub mod window;
