// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface IERC20 {
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @notice The deployed (v1) LiqPass checkout: USDC approve + transferFrom,
/// one PremiumPaid per payment. The emit* functions are test hooks that emit
/// events without moving tokens (malformed amounts, benchmarks); emitLog
/// emits any log at all (shapes no emit of PremiumPaid can produce).
contract CheckoutV1 {
    IERC20 public immutable usdc;
    address public immutable treasury;

    event PremiumPaid(bytes32 indexed orderId, address indexed buyer, uint256 amount, bytes32 indexed quoteHash);
    event Unrelated(bytes32 indexed x);

    constructor(address usdc_, address treasury_) {
        usdc = IERC20(usdc_);
        treasury = treasury_;
    }

    function pay(bytes32 orderId, uint256 amount, bytes32 quoteHash) external {
        require(usdc.transferFrom(msg.sender, treasury, amount), "transfer");
        emit PremiumPaid(orderId, msg.sender, amount, quoteHash);
    }

    function payMany(bytes32[] calldata orderIds, uint256[] calldata amounts, bytes32 quoteHash) external {
        require(orderIds.length == amounts.length, "lengths");
        uint256 total;
        for (uint256 i = 0; i < amounts.length; i++) {
            total += amounts[i];
        }
        require(usdc.transferFrom(msg.sender, treasury, total), "transfer");
        for (uint256 i = 0; i < orderIds.length; i++) {
            emit PremiumPaid(orderIds[i], msg.sender, amounts[i], quoteHash);
        }
    }

    function emitRaw(bytes32 orderId, address buyer, uint256 amount, bytes32 quoteHash) external {
        emit PremiumPaid(orderId, buyer, amount, quoteHash);
    }

    function emitMany(bytes32 firstOrderId, uint256 count, address buyer, uint256 amount) external {
        uint256 first = uint256(firstOrderId);
        for (uint256 i = 0; i < count; i++) {
            emit PremiumPaid(bytes32(first + i), buyer, amount, bytes32(0));
        }
    }

    function emitOther(bytes32 x) external {
        emit Unrelated(x);
    }

    function emitLog(bytes32[] calldata topics, bytes calldata data) external {
        uint256 n = topics.length;
        require(n <= 4, "at most 4 topics");
        bytes32[4] memory t;
        for (uint256 i = 0; i < n; i++) {
            t[i] = topics[i];
        }
        bytes memory d = data;
        assembly {
            let p := add(d, 32)
            let len := mload(d)
            switch n
            case 0 { log0(p, len) }
            case 1 { log1(p, len, mload(t)) }
            case 2 { log2(p, len, mload(t), mload(add(t, 32))) }
            case 3 { log3(p, len, mload(t), mload(add(t, 32)), mload(add(t, 64))) }
            default { log4(p, len, mload(t), mload(add(t, 32)), mload(add(t, 64)), mload(add(t, 96))) }
        }
    }
}
