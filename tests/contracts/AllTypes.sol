// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

// Test contracts for the decoder: every function emits one event with the values passed in.
//
// AllTypes events:
//   Ints(uint8 u8, uint64 u64, uint256 u256, int8 i8, int256 i256)
//   Scalars(address indexed who, address account, bool flag, bytes1 b1, bytes32 b32)
//   Dynamic(bytes data, string text)                    -- empty and unicode values included
//   Arrays(uint256[3] fixedNums, address[] accounts, string[] labels)
//   Structs(Point point, Order order, Point[] points)    -- Order nests Point and has a string
//   IndexedDynamic(string indexed name, bytes indexed blob, uint256[] indexed ids, uint256 seq)
//   Topics(uint256 indexed u, int8 indexed i, bool indexed flag, bytes32 data)
//   Secret(address indexed who, uint256 amount)  anonymous
//   Value(uint256 value)                                -- overloaded name ...
//   Value(string value, address indexed by)             -- ... with another signature
//   Transfer(address indexed from, address indexed to, uint256 value)   ERC-20 layout
//
// NftLike events:
//   Transfer(address indexed from, address indexed to, uint256 indexed tokenId)   ERC-721 layout:
//   the same topic0 as the ERC-20 Transfer, one more topic and no data, so an ERC-20 ABI
//   configured on this contract's address must count its logs as decode failures.

contract AllTypes {
    struct Point {
        uint64 x;
        int64 y;
    }

    struct Order {
        address maker;
        Point at;
        string memo;
    }

    event Ints(uint8 u8, uint64 u64, uint256 u256, int8 i8, int256 i256);
    event Scalars(address indexed who, address account, bool flag, bytes1 b1, bytes32 b32);
    event Dynamic(bytes data, string text);
    event Arrays(uint256[3] fixedNums, address[] accounts, string[] labels);
    event Structs(Point point, Order order, Point[] points);
    event IndexedDynamic(string indexed name, bytes indexed blob, uint256[] indexed ids, uint256 seq);
    event Topics(uint256 indexed u, int8 indexed i, bool indexed flag, bytes32 data);
    event Secret(address indexed who, uint256 amount) anonymous;
    event Value(uint256 value);
    event Value(string value, address indexed by);
    event Transfer(address indexed from, address indexed to, uint256 value);

    function emitInts(uint8 u8, uint64 u64, uint256 u256, int8 i8, int256 i256) external {
        emit Ints(u8, u64, u256, i8, i256);
    }

    function emitScalars(address account, bool flag, bytes1 b1, bytes32 b32) external {
        emit Scalars(msg.sender, account, flag, b1, b32);
    }

    function emitDynamic(bytes calldata data, string calldata text) external {
        emit Dynamic(data, text);
    }

    function emitArrays(
        uint256[3] calldata fixedNums,
        address[] calldata accounts,
        string[] calldata labels
    ) external {
        emit Arrays(fixedNums, accounts, labels);
    }

    function emitStructs(Point calldata point, Order calldata order, Point[] calldata points)
        external
    {
        emit Structs(point, order, points);
    }

    function emitIndexedDynamic(
        string calldata name,
        bytes calldata blob,
        uint256[] calldata ids,
        uint256 seq
    ) external {
        emit IndexedDynamic(name, blob, ids, seq);
    }

    function emitTopics(uint256 u, int8 i, bool flag, bytes32 data) external {
        emit Topics(u, i, flag, data);
    }

    function emitSecret(address who, uint256 amount) external {
        emit Secret(who, amount);
    }

    function emitValue(uint256 value) external {
        emit Value(value);
    }

    function emitValueText(string calldata value) external {
        emit Value(value, msg.sender);
    }

    function emitTransfer(address from, address to, uint256 value) external {
        emit Transfer(from, to, value);
    }
}

contract NftLike {
    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);

    function emitTransfer(address from, address to, uint256 tokenId) external {
        emit Transfer(from, to, tokenId);
    }
}
