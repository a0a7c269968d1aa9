//! A pinned anvil from the npm registry, with MockUSDC and both checkout
//! contract versions deployed from the committed artifacts.
#![allow(clippy::too_many_arguments)] // sol!-generated calls of emitRaw (v2)

use std::path::PathBuf;
use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::ext::AnvilApi;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolValue;

use super::within;

sol! {
    #[sol(rpc)]
    interface MockUSDC {
        function mint(address to, uint256 amount) external;
        function approve(address spender, uint256 amount) external returns (bool);
        function balanceOf(address who) external view returns (uint256);
    }

    #[sol(rpc)]
    interface CheckoutV1 {
        function pay(bytes32 orderId, uint256 amount, bytes32 quoteHash) external;
        function emitRaw(bytes32 orderId, address buyer, uint256 amount, bytes32 quoteHash) external;
        function payMany(bytes32[] calldata orderIds, uint256[] calldata amounts, bytes32 quoteHash) external;
        function emitMany(bytes32 firstOrderId, uint256 count, address buyer, uint256 amount) external;
        function emitOther(bytes32 x) external;
        function emitLog(bytes32[] calldata topics, bytes calldata data) external;
    }

    #[sol(rpc)]
    interface CheckoutV2 {
        function pay(bytes32 orderId, uint256 amount, bytes32 quoteHash) external;
        function updateTreasury(address newTreasury) external;
        function emitRaw(bytes32 orderId, address buyer, uint256 amount, bytes32 quoteHash, address token, address treasury, uint256 chainId) external;
    }
}

/// Where `tests/chain/install.sh` puts the pinned anvil.
pub fn anvil_path() -> PathBuf {
    if let Ok(p) = std::env::var("LIQPASS_ANVIL") {
        return p.into();
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/chain/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    assert!(
        path.exists(),
        "anvil not found at {}: install the pinned anvil with `make anvil` \
         (runs tests/chain/install.sh, i.e. `npm ci` in tests/chain)",
        path.display()
    );
    path
}

fn artifact(name: &str) -> Bytes {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/chain/artifacts/{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("artifact is JSON");
    json["bytecode"]
        .as_str()
        .expect("artifact has bytecode")
        .parse()
        .expect("bytecode is hex")
}

/// Unless `args` say otherwise, anvil keeps the states of its last 1,024
/// blocks in memory (enough for every reorg a test makes) and writes none
/// to disk: by default it spills older ones to `~/.foundry/anvil/tmp` and,
/// killed at the end of a test, never removes them (tens of GB after a few
/// suite runs).
fn in_memory(args: &[&str]) -> Vec<&'static str> {
    if args.iter().any(|a| a.starts_with("--prune-history")) {
        Vec::new()
    } else {
        vec!["--prune-history", "1024"]
    }
}

/// A running anvil with the contracts deployed.
pub struct Chain {
    pub anvil: AnvilInstance,
    pub provider: DynProvider,
    pub usdc: Address,
    pub checkout: Address,
    pub checkout_v2: Address,
    pub treasury: Address,
    /// Funded buyer accounts (anvil's accounts 2..).
    pub buyers: Vec<Address>,
}

/// How often a sent transaction's receipt is asked for.
const RECEIPT_POLL: Duration = Duration::from_millis(5);

/// Generous bound for one transaction to be mined.
pub const TX_TIMEOUT: Duration = Duration::from_secs(20);

impl Chain {
    /// Starts anvil (instant mining) and deploys MockUSDC and both checkouts.
    pub async fn start() -> Chain {
        Self::start_with(&[]).await
    }

    /// Same, with extra anvil arguments.
    pub async fn start_with(args: &[&str]) -> Chain {
        let anvil = Anvil::at(anvil_path())
            .args(in_memory(args))
            .args(args.iter().copied())
            .try_spawn()
            .expect("anvil starts");
        let deployer = anvil.addresses()[0];
        let provider = connect(&anvil);
        let usdc = deploy(&provider, deployer, artifact("MockUSDC"), Bytes::new()).await;
        let args: Bytes = (usdc, anvil.addresses()[1]).abi_encode_params().into();
        let checkout = deploy(&provider, deployer, artifact("CheckoutV1"), args.clone()).await;
        let checkout_v2 = deploy(&provider, deployer, artifact("CheckoutV2"), args).await;
        let chain = Self::with_contracts(anvil, provider);
        assert_eq!(
            (chain.usdc, chain.checkout, chain.checkout_v2),
            (usdc, checkout, checkout_v2),
            "contracts at the deployer's first three nonces"
        );
        for buyer in chain.buyers.clone() {
            chain.fund(buyer).await;
        }
        chain
    }

    /// Starts anvil on a state file written from a chain that `start_with`
    /// made (`anvil --load-state`: no body-size limit, unlike
    /// `anvil_loadState`), with extra anvil arguments.
    pub async fn load(state: &std::path::Path, args: &[&str]) -> Chain {
        let anvil = Anvil::at(anvil_path())
            .arg("--load-state")
            .arg(state.as_os_str().to_str().expect("UTF-8 path"))
            .args(in_memory(args))
            .args(args.iter().copied())
            .timeout(120_000)
            .try_spawn()
            .expect("anvil starts on the saved state");
        let provider = connect(&anvil);
        Self::with_contracts(anvil, provider)
    }

    /// The chain, with the contracts at the addresses `start_with` deploys
    /// them to (the deployer's first three nonces).
    fn with_contracts(anvil: AnvilInstance, provider: DynProvider) -> Chain {
        let deployer = anvil.addresses()[0];
        Chain {
            usdc: deployer.create(0),
            checkout: deployer.create(1),
            checkout_v2: deployer.create(2),
            treasury: anvil.addresses()[1],
            buyers: anvil.addresses()[2..].to_vec(),
            anvil,
            provider,
        }
    }

    pub fn rpc_url(&self) -> String {
        self.anvil.endpoint()
    }

    pub fn ws_url(&self) -> String {
        self.anvil.ws_endpoint()
    }

    /// anvil's socket address, for a proxy in front of it.
    #[allow(dead_code)] // not every test crate puts a proxy in front
    pub fn socket_addr(&self) -> std::net::SocketAddr {
        (std::net::Ipv4Addr::LOCALHOST, self.anvil.port()).into()
    }

    async fn fund(&self, buyer: Address) {
        let usdc = MockUSDC::new(self.usdc, &self.provider);
        let amount = U256::from(1_000_000_000_000u64);
        send(
            usdc.mint(buyer, amount)
                .from(self.anvil.addresses()[0])
                .into_transaction_request(),
            &self.provider,
        )
        .await;
        for spender in [self.checkout, self.checkout_v2] {
            send(
                usdc.approve(spender, U256::MAX)
                    .from(buyer)
                    .into_transaction_request(),
                &self.provider,
            )
            .await;
        }
    }

    /// `buyer` pays `amount` micro-USDC for `order_ref` through the v1 checkout.
    pub async fn pay(&self, buyer: Address, order_ref: B256, amount: u64) -> TransactionReceipt {
        let c = CheckoutV1::new(self.checkout, &self.provider);
        let tx = c
            .pay(order_ref, U256::from(amount), B256::ZERO)
            .from(buyer)
            .into_transaction_request();
        send(tx, &self.provider).await
    }

    /// Same through the v2 checkout.
    pub async fn pay_v2(&self, buyer: Address, order_ref: B256, amount: u64) -> TransactionReceipt {
        let c = CheckoutV2::new(self.checkout_v2, &self.provider);
        let tx = c
            .pay(order_ref, U256::from(amount), B256::ZERO)
            .from(buyer)
            .into_transaction_request();
        send(tx, &self.provider).await
    }

    /// Emits a v1 `PremiumPaid` with any amount, moving no tokens.
    pub async fn emit_raw(
        &self,
        buyer: Address,
        order_ref: B256,
        amount: U256,
    ) -> TransactionReceipt {
        let c = CheckoutV1::new(self.checkout, &self.provider);
        let tx = c
            .emitRaw(order_ref, buyer, amount, B256::ZERO)
            .from(buyer)
            .into_transaction_request();
        send(tx, &self.provider).await
    }

    /// Emits a v2 `PremiumPaid` naming any destination, moving no tokens.
    pub async fn emit_raw_v2(
        &self,
        buyer: Address,
        order_ref: B256,
        amount: u64,
        treasury: Address,
        chain_id: u64,
    ) -> TransactionReceipt {
        let c = CheckoutV2::new(self.checkout_v2, &self.provider);
        let tx = c
            .emitRaw(
                order_ref,
                buyer,
                U256::from(amount),
                B256::ZERO,
                self.usdc,
                treasury,
                U256::from(chain_id),
            )
            .from(buyer)
            .into_transaction_request();
        send(tx, &self.provider).await
    }

    /// Emits an event the indexer must ignore.
    pub async fn emit_other(&self, from: Address) -> TransactionReceipt {
        let c = CheckoutV1::new(self.checkout, &self.provider);
        send(
            c.emitOther(B256::repeat_byte(7))
                .from(from)
                .into_transaction_request(),
            &self.provider,
        )
        .await
    }

    /// Emits any log from the v1 checkout: `topics` (at most 4) and `data`.
    pub async fn emit_log(
        &self,
        from: Address,
        topics: Vec<B256>,
        data: Vec<u8>,
    ) -> TransactionReceipt {
        let c = CheckoutV1::new(self.checkout, &self.provider);
        let tx = c
            .emitLog(topics, data.into())
            .from(from)
            .into_transaction_request();
        send(tx, &self.provider).await
    }

    /// The v2 checkout's owner (the deployer) moves its treasury.
    pub async fn update_treasury(&self, new: Address) -> TransactionReceipt {
        let c = CheckoutV2::new(self.checkout_v2, &self.provider);
        let tx = c
            .updateTreasury(new)
            .from(self.anvil.addresses()[0])
            .into_transaction_request();
        send(tx, &self.provider).await
    }

    /// Emits `count` v1 payments in one transaction, order refs `first`, `first + 1`, ...
    pub async fn emit_many(
        &self,
        buyer: Address,
        first: B256,
        count: u64,
        amount: u64,
    ) -> TransactionReceipt {
        let c = CheckoutV1::new(self.checkout, &self.provider);
        let tx = c
            .emitMany(first, U256::from(count), buyer, U256::from(amount))
            .from(buyer)
            .into_transaction_request();
        send(tx, &self.provider).await
    }

    /// One block holding a `PremiumPaid` (v1, no tokens moved) for each of
    /// `order_refs`, each its own transaction from `buyer`, as a busy
    /// shop's block would: mining is paused while they are sent, then the
    /// block is mined and every receipt checked.
    pub async fn emit_block(&self, buyer: Address, order_refs: &[B256], amount: u64) {
        let c = CheckoutV1::new(self.checkout, &self.provider);
        let p = &self.provider;
        within("evm_setAutomine", TX_TIMEOUT, p.anvil_set_auto_mine(false))
            .await
            .expect("automine off");
        let nonce = within(
            "nonce",
            TX_TIMEOUT,
            p.get_transaction_count(buyer).pending(),
        )
        .await
        .expect("nonce");
        let mut hashes = Vec::with_capacity(order_refs.len());
        for (i, order_ref) in order_refs.iter().enumerate() {
            let tx = c
                .emitRaw(*order_ref, buyer, U256::from(amount), B256::ZERO)
                .from(buyer)
                .nonce(nonce + i as u64)
                .gas(100_000)
                .into_transaction_request();
            let pending = within("send transaction", TX_TIMEOUT, p.send_transaction(tx))
                .await
                .expect("transaction accepted");
            hashes.push(*pending.tx_hash());
        }
        self.mine(1).await;
        within("evm_setAutomine", TX_TIMEOUT, p.anvil_set_auto_mine(true))
            .await
            .expect("automine on");
        for hash in hashes {
            let receipt = within("receipt", TX_TIMEOUT, p.get_transaction_receipt(hash))
                .await
                .expect("receipt")
                .expect("mined in the block");
            assert!(receipt.status(), "transaction reverted: {receipt:?}");
        }
    }

    /// Mines `n` empty blocks.
    pub async fn mine(&self, n: u64) {
        within(
            "anvil_mine",
            TX_TIMEOUT,
            self.provider.anvil_mine(Some(n), None),
        )
        .await
        .expect("anvil_mine");
    }

    /// Replaces the last `depth` blocks by new ones, re-including the given
    /// raw transactions at the given offsets (0-based, within the new blocks).
    pub async fn reorg(&self, depth: u64, reinclude: Vec<(Bytes, u64)>) {
        use alloy::rpc::types::anvil::{ReorgOptions, TransactionData};
        let tx_block_pairs = reinclude
            .into_iter()
            .map(|(raw, at)| (TransactionData::Raw(raw), at))
            .collect();
        within(
            "anvil_reorg",
            TX_TIMEOUT,
            self.provider.anvil_reorg(ReorgOptions {
                depth,
                tx_block_pairs,
            }),
        )
        .await
        .expect("anvil_reorg");
    }

    /// The signed bytes of a mined transaction, to re-include it after a reorg.
    pub async fn raw_tx(&self, hash: B256) -> Bytes {
        within(
            "raw tx",
            TX_TIMEOUT,
            self.provider
                .raw_request("eth_getRawTransactionByHash".into(), (hash,)),
        )
        .await
        .expect("raw transaction")
    }

    pub async fn snapshot(&self) -> U256 {
        within("evm_snapshot", TX_TIMEOUT, self.provider.anvil_snapshot())
            .await
            .expect("snapshot")
    }

    pub async fn revert(&self, id: U256) {
        let ok = within("evm_revert", TX_TIMEOUT, self.provider.anvil_revert(id))
            .await
            .expect("revert");
        assert!(ok, "evm_revert refused snapshot {id}");
    }

    pub async fn block_hash(&self, number: u64) -> B256 {
        let block = within(
            "block",
            TX_TIMEOUT,
            self.provider.get_block_by_number(number.into()),
        )
        .await
        .expect("block")
        .expect("block exists");
        block.header.hash
    }

    pub async fn head(&self) -> u64 {
        within(
            "eth_blockNumber",
            TX_TIMEOUT,
            self.provider.get_block_number(),
        )
        .await
        .expect("head")
    }
}

/// A provider signing for every anvil account. Uncached nonces: after
/// evm_revert or anvil_reorg a cached nonce is too high.
fn connect(anvil: &AnvilInstance) -> DynProvider {
    let mut wallet = EthereumWallet::default();
    for key in anvil.keys() {
        wallet.register_signer(PrivateKeySigner::from(key.clone()));
    }
    // anvil mines on arrival: poll for receipts every few ms, not alloy's
    // 250 ms for a local node (that made most of a test's waiting).
    let client = RpcClient::new_http(anvil.endpoint_url()).with_poll_interval(RECEIPT_POLL);
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(wallet)
        .connect_client(client)
        .erased()
}

async fn deploy(provider: &DynProvider, from: Address, code: Bytes, args: Bytes) -> Address {
    let mut input = code.to_vec();
    input.extend_from_slice(&args);
    let tx = TransactionRequest::default()
        .from(from)
        .with_deploy_code(input);
    send(tx, provider)
        .await
        .contract_address
        .expect("a deployment has a contract address")
}

/// Sends a transaction and waits (bounded) for its receipt; panics on revert.
pub async fn send(tx: TransactionRequest, provider: &DynProvider) -> TransactionReceipt {
    let pending = within(
        "send transaction",
        TX_TIMEOUT,
        provider.send_transaction(tx),
    )
    .await
    .expect("transaction accepted");
    let receipt = within("receipt", TX_TIMEOUT, pending.get_receipt())
        .await
        .expect("receipt");
    assert!(receipt.status(), "transaction reverted: {receipt:?}");
    receipt
}

/// An order reference from a small number, as tests use them.
pub fn order_ref(n: u64) -> B256 {
    B256::from(U256::from(n))
}
