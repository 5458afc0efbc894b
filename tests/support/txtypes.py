"""Transactions of every type anvil mines, signed here with eth-account (blob transactions need
the ``ckzg`` package for their KZG commitments): legacy, EIP-2930 (access list), EIP-1559,
EIP-4844 (one blob) and EIP-7702 (an authorization). Each is a contract call (a token
transfer, a WETH deposit), so that every receipt holds a log.

The dev accounts' keys derive from anvil's default mnemonic.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions import base as _typed
from eth_utils import to_checksum_address
from web3.contract import Contract

from tests.support.contracts import ACCOUNTS, artifact, connect, receipt
from tests.support.rpc import JsonRpc

MNEMONIC = "test test test test test test test test test test test junk"
KINDS = {"legacy": 0, "2930": 1, "1559": 2, "4844": 3, "7702": 4}
# The transaction types each anvil hardfork accepts.
FORK_KINDS = {"berlin": ("legacy", "2930"), "london": ("legacy", "2930", "1559"),
              "shanghai": ("legacy", "2930", "1559"), "cancun": ("legacy", "2930", "1559", "4844"),
              "prague": tuple(KINDS), "osaka": tuple(KINDS)}
BLOB = b"\x00" * 4096 * 32  # one blob (4096 field elements of 32 bytes)

# eth-account loads the KZG trusted setup again for each commitment and proof of a blob (seconds
# each); it is one file, read once here.
_typed.load_trusted_setup = cache(_typed.load_trusted_setup)


@cache
def dev_account(i: int) -> LocalAccount:
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(MNEMONIC,
                                                  account_path=f"m/44'/60'/0'/0/{i}")
    assert account.address == ACCOUNTS[i], "anvil's dev accounts come from another mnemonic"
    return account


def _fields(kind: str, rpc: JsonRpc, chain_id: int, nonce: int) -> dict[str, Any]:
    base = int(rpc.call("eth_getBlockByNumber", "latest", False).get("baseFeePerGas")
               or hex(10**9), 16)
    tx: dict[str, Any] = {"chainId": chain_id, "nonce": nonce, "gas": 200_000, "value": 0}
    if kind in ("legacy", "2930"):
        tx["gasPrice"] = 4 * base + 1
    else:
        tx.update(maxFeePerGas=4 * base + 2, maxPriorityFeePerGas=1)
    if kind != "legacy":
        tx["type"] = KINDS[kind]
    return tx


def signed_transfer(kind: str, rpc: JsonRpc, token: Contract, to: str, amount: int,
                    sender: int = 0, nonce: int | None = None) -> bytes:
    """A raw ``token.transfer(to, amount)`` from dev account ``sender`` of type ``kind``."""
    return signed_call(kind, rpc, token, "transfer", [to_checksum_address(to), amount],
                       sender=sender, nonce=nonce)


def signed_call(kind: str, rpc: JsonRpc, contract: Contract, fn: str, args: list[Any], *,
                value: int = 0, sender: int = 0, nonce: int | None = None) -> bytes:
    """A raw call of ``contract.fn(*args)`` from dev account ``sender`` of type ``kind``."""
    account = dev_account(sender)
    chain_id = int(rpc.call("eth_chainId"), 16)
    if nonce is None:
        nonce = int(rpc.call("eth_getTransactionCount", account.address, "pending"), 16)
    tx = _fields(kind, rpc, chain_id, nonce)
    tx.update(to=to_checksum_address(contract.address), value=value,
              data=contract.encode_abi(fn, args))
    blobs = None
    if kind == "2930":
        tx["accessList"] = [{"address": to_checksum_address(contract.address),
                             "storageKeys": ["0x" + "00" * 32]}]
    elif kind == "4844":
        tx["maxFeePerBlobGas"] = 10**10
        blobs = [BLOB]
    elif kind == "7702":  # dev account 9 delegates to the contract (a harmless authorization)
        authority = dev_account(9)
        a_nonce = int(rpc.call("eth_getTransactionCount", authority.address, "pending"), 16)
        auth = authority.sign_authorization(
            {"chainId": chain_id, "address": to_checksum_address(contract.address),
             "nonce": a_nonce})
        tx["authorizationList"] = [auth]
    raw = Account.sign_transaction(tx, account.key, blobs=blobs) if blobs \
        else Account.sign_transaction(tx, account.key)
    return bytes(raw.raw_transaction)


def send_raw(rpc: JsonRpc, raw: bytes) -> str:
    return str(rpc.call("eth_sendRawTransaction", "0x" + raw.hex()))


def mine_together(rpc: JsonRpc, raws: list[bytes]) -> int:
    """Mine ``raws`` in one block (automine paused meanwhile); its number."""
    rpc.call("evm_setAutomine", False)
    try:
        for raw in raws:
            send_raw(rpc, raw)
        rpc.call("evm_mine")
    finally:
        rpc.call("evm_setAutomine", True)
    return int(rpc.call("eth_blockNumber"), 16)


def deploy_legacy(url: str, name: str, sender: int = 0) -> Contract:
    """Deploy an artifact without constructor arguments with a signed legacy transaction (which
    every hardfork accepts, Berlin's too)."""
    art = artifact(name)
    with JsonRpc(url) as rpc:
        account = dev_account(sender)
        tx = _fields("legacy", rpc, int(rpc.call("eth_chainId"), 16),
                     int(rpc.call("eth_getTransactionCount", account.address, "pending"), 16))
        tx.update(gas=6_000_000, data=art.bytecode)
        raw = bytes(Account.sign_transaction(tx, account.key).raw_transaction)
        got = receipt(rpc, send_raw(rpc, raw))
    return connect(url).eth.contract(address=to_checksum_address(got["contractAddress"]),
                                     abi=art.abi)
