// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface IERC20 {
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @notice The v2 checkout: its PremiumPaid also names token, treasury,
/// chain id and time. emitRaw lets tests forge any destination. Like the
/// deployed CheckoutUSDC 1.1.0, its owner may move the treasury at any time
/// (updateTreasury, TreasuryUpdated with the same signature).
contract CheckoutV2 {
    IERC20 public immutable usdc;
    address public treasury;
    address public immutable owner;

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
    event Unrelated(bytes32 indexed x);
    event TreasuryUpdated(address indexed oldTreasury, address indexed newTreasury);

    constructor(address usdc_, address treasury_) {
        usdc = IERC20(usdc_);
        treasury = treasury_;
        owner = msg.sender;
    }

    function updateTreasury(address newTreasury) external {
        require(msg.sender == owner, "owner");
        require(newTreasury != address(0), "zero addr");
        address old = treasury;
        treasury = newTreasury;
        emit TreasuryUpdated(old, newTreasury);
    }

    function pay(bytes32 orderId, uint256 amount, bytes32 quoteHash) external {
        require(usdc.transferFrom(msg.sender, treasury, amount), "transfer");
        emit PremiumPaid(orderId, msg.sender, amount, quoteHash, address(usdc), treasury, block.chainid, block.timestamp);
    }

    function payMany(bytes32[] calldata orderIds, uint256[] calldata amounts, bytes32 quoteHash) external {
        require(orderIds.length == amounts.length, "lengths");
        uint256 total;
        for (uint256 i = 0; i < amounts.length; i++) {
            total += amounts[i];
        }
        require(usdc.transferFrom(msg.sender, treasury, total), "transfer");
        for (uint256 i = 0; i < orderIds.length; i++) {
            emit PremiumPaid(orderIds[i], msg.sender, amounts[i], quoteHash, address(usdc), treasury, block.chainid, block.timestamp);
        }
    }

    function emitRaw(
        bytes32 orderId,
        address buyer,
        uint256 amount,
        bytes32 quoteHash,
        address token,
        address treasury_,
        uint256 chainId
    ) external {
        emit PremiumPaid(orderId, buyer, amount, quoteHash, token, treasury_, chainId, block.timestamp);
    }

    function emitMany(bytes32 firstOrderId, uint256 count, address buyer, uint256 amount) external {
        uint256 first = uint256(firstOrderId);
        for (uint256 i = 0; i < count; i++) {
            emit PremiumPaid(bytes32(first + i), buyer, amount, bytes32(0), address(usdc), treasury, block.chainid, block.timestamp);
        }
    }

    function emitOther(bytes32 x) external {
        emit Unrelated(x);
    }
}
