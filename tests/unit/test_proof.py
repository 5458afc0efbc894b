"""Consensus encodings and block proofs against known vectors: headers of every fork since
Frontier (mainnet genesis; hive test chain blocks recorded from geth at London, Shanghai,
Cancun and Prague), receipts roots recorded from geth and from anvil (one receipt of each type:
legacy, 2930, 1559, 4844, 7702), and go-ethereum's receipt encoding vectors. Then what a proof
refuses: each kind of rewrite of a header, a receipt or a log."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import rlp

from indexer.rpc import bloom
from indexer.verify.encoding import header_hash, receipt_bytes, receipts_root
from indexer.verify.proof import ProofError, matching, prove_header, prove_receipts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "proof"


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return doc


HEADERS = load("hive-headers")["blocks"]
WITH_RECEIPTS = ["hive-cancun-block-1", "hive-cancun-block-9", "anvil-block-all-types"]


def _hash(block: dict[str, Any]) -> bytes:
    return bytes.fromhex(block["hash"][2:])


@pytest.mark.parametrize("fork", sorted(HEADERS))
def test_header_hash_is_keccak_of_the_fields_of_its_fork(fork: str):
    block = HEADERS[fork]
    assert header_hash(block) == _hash(block)


@pytest.mark.parametrize("name", WITH_RECEIPTS)
def test_receipts_rebuild_the_recorded_receipts_root(name: str):
    doc = load(name)
    assert header_hash(doc["block"]) == _hash(doc["block"])
    assert receipts_root(doc["receipts"]).hex() == doc["block"]["receiptsRoot"][2:]


def test_the_anvil_vector_holds_every_receipt_type():
    assert [r["type"] for r in load("anvil-block-all-types")["receipts"]] == \
        ["0x0", "0x1", "0x2", "0x3", "0x4"]


def test_an_empty_block_has_the_empty_trie_root():
    assert receipts_root([]).hex() == \
        "56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"


# go-ethereum core/types receipt_test.go: a failed receipt, cumulative gas 1, two logs.
GETH_RECEIPT = (
    "f901c58001b90100000000000000100000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000050000000000000000000000000"
    "0000000000014000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0100000800000000000000000000040000000000000000000000000000400000000000000000000000000008"
    "0000000000000000000000000000000000000000000000000000040000000000000000000000000000000000"
    "0000000000000000000000000010000000000000000000000000000000000000000000000000000000000000"
    "f8bef85d940000000000000000000000000000000000000011f842a000000000000000000000000000000000"
    "0000000000000000000000000000deada0000000000000000000000000000000000000000000000000000000"
    "000000beef830100fff85d940000000000000000000000000000000000000111f842a0000000000000000000"
    "000000000000000000000000000000000000000000deada00000000000000000000000000000000000000000"
    "00000000000000000000beef830100ff"
)


def _geth_receipt(kind: str | None) -> dict[str, Any]:
    logs = [{"address": "0x" + "00" * 19 + "11", "topics": ["0x" + "00" * 30 + "dead",
                                                            "0x" + "00" * 30 + "beef"],
             "data": "0x0100ff"},
            {"address": "0x" + "00" * 18 + "0111", "topics": ["0x" + "00" * 30 + "dead",
                                                              "0x" + "00" * 30 + "beef"],
             "data": "0x0100ff"}]
    b = bytearray(256)
    for lg in logs:
        bloom.add(b, bytes.fromhex(lg["address"][2:]))
        for t in lg["topics"]:
            bloom.add(b, bytes.fromhex(t[2:]))
    rc: dict[str, Any] = {"status": "0x0", "cumulativeGasUsed": "0x1",
                          "logsBloom": "0x" + b.hex(), "logs": logs}
    if kind is not None:
        rc["type"] = kind
    return rc


@pytest.mark.parametrize(("kind", "prefix"), [(None, ""), ("0x0", ""), ("0x1", "01"),
                                              ("0x2", "02")])
def test_receipt_encoding_is_go_ethereums(kind: str | None, prefix: str):
    assert receipt_bytes(_geth_receipt(kind)).hex() == prefix + GETH_RECEIPT


def test_a_receipt_before_byzantium_holds_its_state_root():
    rc = _geth_receipt(None)
    del rc["status"]
    rc["root"] = "0x" + "02" * 32
    assert rlp.decode(receipt_bytes(rc))[0] == b"\x02" * 32


def test_an_op_deposit_receipt_since_canyon_holds_its_nonce_and_version():
    rc = {**_geth_receipt("0x7e"), "depositNonce": "0x9", "depositReceiptVersion": "0x1"}
    encoded = receipt_bytes(rc)
    assert encoded[0] == 0x7E
    assert rlp.decode(encoded[1:])[4:] == [b"\x09", b"\x01"]
    before = {**_geth_receipt("0x7e"), "depositNonce": "0x9"}  # before Canyon: not hashed
    assert len(rlp.decode(receipt_bytes(before)[1:])) == 4


@pytest.mark.parametrize("field", ["stateRoot", "receiptsRoot", "timestamp", "logsBloom",
                                   "extraData", "baseFeePerGas", "requestsHash"])
def test_a_header_with_a_rewritten_field_does_not_hash_to_its_hash(field: str):
    block = dict(HEADERS["prague"])
    value = block[field]
    block[field] = "0x01" if value == "0x" else value[:-1] + ("1" if value[-1] != "1" else "2")
    with pytest.raises(ProofError, match="header fields hash to .*, not to the block's hash"):
        prove_header(0x2D, block, _hash(block))


def test_a_header_of_a_newer_fork_names_the_fields_not_hashed():
    block = dict(HEADERS["prague"])
    block["futureRoot"] = block.pop("requestsHash")
    with pytest.raises(ProofError, match="fields not hashed: futureRoot"):
        prove_header(0x2D, block, _hash(block))


def test_a_header_other_than_the_canonical_one_is_refused():
    block = HEADERS["prague"]
    with pytest.raises(ProofError, match="differs from the canonical header's 0xeeee"):
        prove_header(0x2D, block, b"\xee" * 32)


def test_a_block_the_node_does_not_have_or_another_block_is_refused():
    with pytest.raises(ProofError, match="block 7: the node has no such block"):
        prove_header(7, None, None)
    with pytest.raises(ProofError, match="asked for block 7, the node answered block 45"):
        prove_header(7, HEADERS["prague"], None)


# -- receipts of the anvil block: logs proven, and every rewrite refused ----------------------

ANVIL = load("anvil-block-all-types")
NUMBER = int(ANVIL["block"]["number"], 16)
FIELDS = ("address", "topics", "data", "blockNumber", "blockHash", "transactionHash",
          "transactionIndex", "logIndex")


def _prove(receipts: list[Any], block: dict[str, Any] | None = None) -> list[Any]:
    block = block or ANVIL["block"]
    header = prove_header(NUMBER, block, _hash(block))
    return prove_receipts(header, block, receipts)


def test_proven_logs_are_the_eth_getlogs_answer():
    proven = _prove(ANVIL["receipts"])
    assert len(proven) == 5
    assert [{k: lg[k] for k in FIELDS} for lg in proven] == \
        [{k: lg[k] for k in FIELDS} for lg in ANVIL["logs"]]
    assert {lg["blockTimestamp"] for lg in proven} == {ANVIL["block"]["timestamp"]}


def test_the_block_wide_log_index_is_counted_when_receipts_do_not_carry_it():
    receipts = copy.deepcopy(ANVIL["receipts"])
    for rc in receipts:
        for lg in rc["logs"]:
            for k in ("logIndex", "transactionIndex", "blockHash", "transactionHash"):
                lg.pop(k)
    assert [lg["logIndex"] for lg in _prove(receipts)] == ["0x0", "0x1", "0x2", "0x3", "0x4"]


def _rewritten(change: str) -> list[Any]:
    receipts = copy.deepcopy(ANVIL["receipts"])
    lg = receipts[2]["logs"][0]
    if change == "data":
        lg["data"] = lg["data"][:-1] + "f"
    elif change == "topic":
        lg["topics"][2] = "0x" + "00" * 12 + "ab" * 20
    elif change == "address":
        lg["address"] = "0x" + "de" * 20
    elif change == "dropped log":
        receipts[2]["logs"] = []
    elif change == "status":
        receipts[2]["status"] = "0x0"
    elif change == "swapped":
        receipts[1]["logs"], receipts[2]["logs"] = receipts[2]["logs"], receipts[1]["logs"]
    return receipts


@pytest.mark.parametrize("change", ["data", "topic", "address", "dropped log", "status",
                                    "swapped"])
def test_a_rewritten_receipt_does_not_rebuild_the_receipts_root(change: str):
    with pytest.raises(ProofError, match=f"block {NUMBER}: the receipts root rebuilt from 5 "
                       "receipts is 0x[0-9a-f]+, not the header's receiptsRoot"):
        _prove(_rewritten(change))


def test_a_missing_receipt_or_one_out_of_place_is_refused():
    receipts = ANVIL["receipts"]
    with pytest.raises(ProofError, match="4 receipts for 5 transactions"):
        _prove(receipts[:4])
    with pytest.raises(ProofError, match="receipt 0 says it is of transaction 0x1"):
        _prove([receipts[1], receipts[0], *receipts[2:]])
    with pytest.raises(ProofError, match="the node has no receipt for transaction 3"):
        _prove([*receipts[:3], None, receipts[4]])


def test_a_log_index_that_is_not_the_logs_place_is_refused():
    receipts = copy.deepcopy(ANVIL["receipts"])
    receipts[3]["logs"][0]["logIndex"] = "0x9"
    with pytest.raises(ProofError, match="receipt 3 log 0 says logIndex 0x9; its place in the "
                       "block is 3"):
        _prove(receipts)


def test_a_malformed_receipt_is_refused_with_its_field():
    receipts = copy.deepcopy(ANVIL["receipts"])
    receipts[1]["logs"][0]["data"] = "0xabc"
    with pytest.raises(ProofError, match="receipts: receipt 1 log 0 data is not hex data"):
        _prove(receipts)


def test_matching_selects_as_an_eth_getlogs_filter():
    proven = _prove(ANVIL["receipts"])
    token_a = ANVIL["logs"][1]["address"]
    transfer = ANVIL["logs"][0]["topics"][0]
    assert matching(proven, None, None) == proven
    assert [lg["logIndex"] for lg in matching(proven, frozenset({token_a}), None)] == \
        ["0x1", "0x3"]
    assert matching(proven, None, frozenset({transfer})) == proven
    assert matching(proven, frozenset({token_a}), frozenset({"0x" + "00" * 32})) == []
