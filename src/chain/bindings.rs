//! `sol!` bindings of the two `PremiumPaid` event versions. They share a name
//! but not a topic0, so each lives in its own interface. The v2 contract
//! (like the deployed CheckoutUSDC 1.1.0) also moves its treasury, with
//! `TreasuryUpdated`.

#![allow(clippy::too_many_arguments)] // generated constructors of the 8-field v2 event

alloy::sol! {
    /// The deployed (v1) checkout contract's event.
    interface CheckoutV1 {
        event PremiumPaid(bytes32 indexed orderId, address indexed buyer, uint256 amount, bytes32 indexed quoteHash);
    }

    /// The v2 event, which also names where the money went.
    interface CheckoutV2 {
        event PremiumPaid(
            bytes32 indexed orderId,
            address indexed buyer,
            uint256 amount,
            bytes32 indexed quoteHash,
            address token,
            address treasury,
            uint256 chainId,
            uint256 timestamp
        );

        /// The owner moved the treasury: payments name `newTreasury` from
        /// this log on.
        event TreasuryUpdated(address indexed oldTreasury, address indexed newTreasury);
    }
}
