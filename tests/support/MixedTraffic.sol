// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

// Drives real ERC-20, WETH9, Uniswap V2 and Uniswap V3 contracts many times per transaction, so
// that a benchmark chain of DeFi-like traffic (every log emitted by the real contracts) is made
// in a few hundred transactions. Each op of `run` is one uint256:
//   kind (bits 0-7) | a (8-15) | b (16-23) | c (24-31) | amount (32-255)
// The contract holds the tokens, WETH, LP tokens and V3 positions it trades with.

interface IERC20 {
    function transfer(address to, uint256 value) external returns (bool);
    function approve(address spender, uint256 value) external returns (bool);
    function balanceOf(address who) external view returns (uint256);
}

interface IWETH is IERC20 {
    function deposit() external payable;
    function withdraw(uint256 wad) external;
}

interface IV2Factory {
    function createPair(address a, address b) external returns (address);
}

interface IV2Pair is IERC20 {
    function getReserves() external view returns (uint112, uint112, uint32);
    function mint(address to) external returns (uint256);
    function burn(address to) external returns (uint256, uint256);
    function swap(uint256 out0, uint256 out1, address to, bytes calldata data) external;
}

interface IV3Factory {
    function createPool(address a, address b, uint24 fee) external returns (address);
}

interface IV3Pool {
    function initialize(uint160 sqrtPriceX96) external;
    function mint(address to, int24 lower, int24 upper, uint128 amount, bytes calldata data)
        external returns (uint256, uint256);
    function burn(int24 lower, int24 upper, uint128 amount) external returns (uint256, uint256);
    function collect(address to, int24 lower, int24 upper, uint128 max0, uint128 max1)
        external returns (uint128, uint128);
    function swap(address to, bool zeroForOne, int256 amount, uint160 limit, bytes calldata data)
        external returns (int256, int256);
    function flash(address to, uint256 amount0, uint256 amount1, bytes calldata data) external;
}

contract MixedTraffic {
    uint8 constant TRANSFER = 0;     // tokens[a].transfer(recipient b, amount)
    uint8 constant APPROVE = 1;      // tokens[a].approve(recipient b, amount)
    uint8 constant DEPOSIT = 2;      // weth.deposit{value: amount}()
    uint8 constant WITHDRAW = 3;     // weth.withdraw(amount)
    uint8 constant V2_SWAP = 4;      // pairs[a]: amount of token0 in (b even) or token1 in
    uint8 constant V2_MINT = 5;      // pairs[a]: amount of token0 and the matching token1
    uint8 constant V2_BURN = 6;      // pairs[a]: a thousandth of the LP tokens held
    uint8 constant V2_APPROVE = 7;   // pairs[a].approve(recipient b, amount)
    uint8 constant V2_CREATE = 8;    // new pair of tokens[a], tokens[b], first mint of amount each
    uint8 constant V3_CREATE = 9;    // new pool of tokens[a], tokens[b], fee tier c, price 1,
                                     // full-range position of liquidity amount
    uint8 constant V3_SWAP = 10;     // pools[a]: exact input amount, zeroForOne when b is even
    uint8 constant V3_MINT = 11;     // pools[a]: add liquidity amount to the full range
    uint8 constant V3_BURN = 12;     // pools[a]: burn a thousandth of the position
    uint8 constant V3_COLLECT = 13;  // pools[a]: collect what is owed
    uint8 constant V3_FLASH = 14;    // pools[a]: flash amount of both tokens, repaid with the fee

    uint160 constant MIN_SQRT_RATIO = 4295128739;
    uint160 constant MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342;
    int24 constant MAX_TICK = 887272;

    struct Pair {
        address pair;
        address token0;
        address token1;
    }

    struct Pool {
        address pool;
        address token0;
        address token1;
        int24 upper;  // full range: [-upper, upper]
        uint128 liquidity;
    }

    address public immutable owner;
    IWETH public immutable weth;
    IV2Factory public immutable v2;
    IV3Factory public immutable v3;
    address[] public tokens;
    Pair[] public pairs;
    Pool[] public pools;
    mapping(address => uint256) public poolIndex;  // pool address -> index + 1

    constructor(address[] memory tokens_, IWETH weth_, IV2Factory v2_, IV3Factory v3_) {
        owner = msg.sender;
        tokens = tokens_;
        weth = weth_;
        v2 = v2_;
        v3 = v3_;
    }

    receive() external payable {}

    function pairCount() external view returns (uint256) {
        return pairs.length;
    }

    function poolCount() external view returns (uint256) {
        return pools.length;
    }

    function recipient(uint256 i) public pure returns (address) {
        return address(uint160(0xB0000 + i));
    }

    function run(uint256[] calldata ops) external payable {
        require(msg.sender == owner, "owner only");
        for (uint256 i = 0; i < ops.length; ++i) {
            uint256 op = ops[i];
            uint8 kind = uint8(op);
            uint256 a = (op >> 8) & 0xff;
            uint256 b = (op >> 16) & 0xff;
            uint256 c = (op >> 24) & 0xff;
            uint256 amount = op >> 32;
            if (kind == TRANSFER) {
                IERC20(tokens[a]).transfer(recipient(b), amount);
            } else if (kind == APPROVE) {
                IERC20(tokens[a]).approve(recipient(b), amount);
            } else if (kind == DEPOSIT) {
                weth.deposit{value: amount}();
            } else if (kind == WITHDRAW) {
                weth.withdraw(amount);
            } else if (kind == V2_SWAP) {
                _v2Swap(pairs[a], b % 2 == 0, amount);
            } else if (kind == V2_MINT) {
                _v2Mint(pairs[a], amount);
            } else if (kind == V2_BURN) {
                Pair memory p = pairs[a];
                uint256 lp = IV2Pair(p.pair).balanceOf(address(this)) / 1000;
                IV2Pair(p.pair).transfer(p.pair, lp);
                IV2Pair(p.pair).burn(address(this));
            } else if (kind == V2_APPROVE) {
                IV2Pair(pairs[a].pair).approve(recipient(b), amount);
            } else if (kind == V2_CREATE) {
                _v2Create(tokens[a], tokens[b], amount);
            } else if (kind == V3_CREATE) {
                _v3Create(tokens[a], tokens[b], c, uint128(amount));
            } else if (kind == V3_SWAP) {
                Pool memory p = pools[a];
                bool zeroForOne = b % 2 == 0;
                IV3Pool(p.pool).swap(address(this), zeroForOne, int256(amount),
                    zeroForOne ? MIN_SQRT_RATIO + 1 : MAX_SQRT_RATIO - 1, "");
            } else if (kind == V3_MINT) {
                _v3Mint(a, uint128(amount));
            } else if (kind == V3_BURN) {
                Pool storage p = pools[a];
                uint128 l = p.liquidity / 1000;
                p.liquidity -= l;
                IV3Pool(p.pool).burn(-p.upper, p.upper, l);
            } else if (kind == V3_COLLECT) {
                Pool memory p = pools[a];
                IV3Pool(p.pool).collect(address(this), -p.upper, p.upper, type(uint128).max,
                    type(uint128).max);
            } else if (kind == V3_FLASH) {
                IV3Pool(pools[a].pool).flash(address(this), amount, amount, abi.encode(amount));
            } else {
                revert("unknown op");
            }
        }
    }

    function _v2Swap(Pair memory p, bool zeroIn, uint256 amountIn) internal {
        (uint112 r0, uint112 r1,) = IV2Pair(p.pair).getReserves();
        (uint256 rIn, uint256 rOut) = zeroIn ? (uint256(r0), uint256(r1)) : (uint256(r1), uint256(r0));
        uint256 withFee = amountIn * 997;
        uint256 out = withFee * rOut / (rIn * 1000 + withFee);
        IERC20(zeroIn ? p.token0 : p.token1).transfer(p.pair, amountIn);
        IV2Pair(p.pair).swap(zeroIn ? 0 : out, zeroIn ? out : 0, address(this), "");
    }

    function _v2Mint(Pair memory p, uint256 amount0) internal {
        (uint112 r0, uint112 r1,) = IV2Pair(p.pair).getReserves();
        uint256 amount1 = r0 == 0 ? amount0 : amount0 * r1 / r0 + 1;
        IERC20(p.token0).transfer(p.pair, amount0);
        IERC20(p.token1).transfer(p.pair, amount1);
        IV2Pair(p.pair).mint(address(this));
    }

    function _v2Create(address ta, address tb, uint256 amount) internal {
        address pair = v2.createPair(ta, tb);
        (address t0, address t1) = ta < tb ? (ta, tb) : (tb, ta);
        Pair memory p = Pair(pair, t0, t1);
        pairs.push(p);
        _v2Mint(p, amount);
    }

    function _v3Create(address ta, address tb, uint256 tier, uint128 liquidity) internal {
        uint24[3] memory fees = [uint24(500), 3000, 10000];
        int24[3] memory spacing = [int24(10), 60, 200];
        address pool = v3.createPool(ta, tb, fees[tier]);
        (address t0, address t1) = ta < tb ? (ta, tb) : (tb, ta);
        int24 upper = MAX_TICK / spacing[tier] * spacing[tier];
        pools.push(Pool(pool, t0, t1, upper, 0));
        poolIndex[pool] = pools.length;
        IV3Pool(pool).initialize(uint160(1) << 96);
        _v3Mint(pools.length - 1, liquidity);
    }

    function _v3Mint(uint256 index, uint128 liquidity) internal {
        Pool storage p = pools[index];
        p.liquidity += liquidity;
        IV3Pool(p.pool).mint(address(this), -p.upper, p.upper, liquidity, "");
    }

    function _pool() internal view returns (Pool storage) {
        uint256 i = poolIndex[msg.sender];
        require(i != 0, "not a pool of ours");
        return pools[i - 1];
    }

    function uniswapV3MintCallback(uint256 owed0, uint256 owed1, bytes calldata) external {
        Pool storage p = _pool();
        if (owed0 > 0) IERC20(p.token0).transfer(msg.sender, owed0);
        if (owed1 > 0) IERC20(p.token1).transfer(msg.sender, owed1);
    }

    function uniswapV3SwapCallback(int256 delta0, int256 delta1, bytes calldata) external {
        Pool storage p = _pool();
        if (delta0 > 0) IERC20(p.token0).transfer(msg.sender, uint256(delta0));
        if (delta1 > 0) IERC20(p.token1).transfer(msg.sender, uint256(delta1));
    }

    function uniswapV3FlashCallback(uint256 fee0, uint256 fee1, bytes calldata data) external {
        Pool storage p = _pool();
        uint256 amount = abi.decode(data, (uint256));
        IERC20(p.token0).transfer(msg.sender, amount + fee0);
        IERC20(p.token1).transfer(msg.sender, amount + fee1);
    }
}
