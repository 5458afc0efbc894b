// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// ERC20 for tests, benchmarks and the demo, with ways to emit many Transfer events per tx.
contract TestToken is ERC20 {
    constructor(string memory name_, string memory symbol_, uint256 initialSupply)
        ERC20(name_, symbol_)
    {
        _mint(msg.sender, initialSupply);
    }

    /// Real transfers from the caller to each recipient: one Transfer event per recipient.
    function spray(address[] calldata to, uint256 amount) external {
        for (uint256 i = 0; i < to.length; ++i) {
            _transfer(msg.sender, to[i], amount);
        }
    }

    /// Mints `amount` to `n` addresses derived from a per-call seed: one Transfer(0, to, amount)
    /// per mint, with balances and supply kept consistent (about 25k gas per event).
    function sprayMint(uint256 n, uint256 amount) external {
        uint256 seed = uint256(keccak256(abi.encode(msg.sender, block.number, totalSupply())));
        for (uint256 i = 0; i < n; ++i) {
            _mint(address(uint160(seed + i)), amount);
        }
    }

    /// Emits `n` Transfer(caller, derived address, amount) events and writes no storage: the
    /// cheapest way to produce logs (about 2k gas per event). Balances do not follow these
    /// events; use it only where event volume matters, not token accounting.
    function emitTransfers(uint256 n, uint256 amount) external {
        uint256 seed = uint256(keccak256(abi.encode(msg.sender, block.number, gasleft())));
        for (uint256 i = 0; i < n; ++i) {
            emit Transfer(msg.sender, address(uint160(seed + i)), amount);
        }
    }
}
