//! TEMPORARY STUB (replaced by the real config module).
use alloy::primitives::Address;
use std::net::SocketAddr;
use std::time::Duration;
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub chain: ChainSettings,
    pub reconcile: ReconcileSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub shutdown: ShutdownSettings,
}
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub busy_timeout: Duration,
    pub max_connections: u32,
}
#[derive(Debug, Clone)]
pub struct ChainSettings {
    pub rpc_urls: Vec<RpcUrl>,
    pub chain_id: u64,
    pub contract: Address,
    pub token: Address,
    pub treasury: Option<Address>,
    pub start_block: u64,
    pub confirmations: u64,
    pub finality: Finality,
    pub max_block_range: u64,
    pub poll_interval: Duration,
    pub reorg_window: u64,
    pub stall_after: Duration,
    pub request_timeout: Duration,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finality {
    Depth,
    Safe,
    Finalized,
}
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    pub overpayment: OverpaymentPolicy,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverpaymentPolicy {
    Accept,
    Flag,
}
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub max_ready_lag_blocks: u64,
}
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}
#[derive(Debug, Clone)]
pub struct ShutdownSettings {
    pub grace: Duration,
}
#[derive(Clone, Debug)]
pub struct RpcUrl(url::Url);
impl RpcUrl {
    pub fn expose(&self) -> &url::Url {
        &self.0
    }
    pub fn is_ws(&self) -> bool {
        matches!(self.0.scheme(), "ws" | "wss")
    }
    pub fn redacted(&self) -> String {
        format!("{}://{}", self.0.scheme(), self.0.host_str().unwrap_or(""))
    }
}
impl std::fmt::Display for RpcUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}
pub struct Sources {
    pub config_dir: std::path::PathBuf,
    pub environment: Option<String>,
    pub file: Option<std::path::PathBuf>,
    pub env: Vec<(String, String)>,
}
impl Sources {
    pub fn from_process(file: Option<std::path::PathBuf>) -> Self {
        Self {
            config_dir: "config".into(),
            environment: None,
            file,
            env: std::env::vars().collect(),
        }
    }
}
#[derive(Debug)]
pub struct ConfigError;
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stub")
    }
}
pub fn load(_s: &Sources) -> Result<Settings, ConfigError> {
    Err(ConfigError)
}
impl Settings {
    pub fn to_redacted_toml(&self) -> String {
        String::new()
    }
}
