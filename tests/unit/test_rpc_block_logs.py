"""Blocks eth_getLogs cannot serve whole, against a small JSON-RPC node served by aiohttp
inside the test: a block holding more matching logs than the provider's result cap is read by
halves of the address list, else from its receipts; an answer in which two logs of one block
share a logIndex is counted and that block read from its receipts; receipts that say so too
stop with an error naming the block."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from indexer.rpc import RpcFatal
from indexer.types import BlockRange
from tests.unit.test_rpc_client import (
    ADDR_A,
    ADDR_B,
    ALL_LOGS,
    TOPIC_X,
    TOPIC_Y,
    FakeNode,
    client,
    expected,
    rejected,
    sample,
)

CAPPED = "query returned more than 10000 results"


def tx_of(b: int) -> str:
    return "0x" + f"{b:064x}"  # every log of block b comes from one transaction (make_logs)


class ReceiptNode(FakeNode):
    """``max_logs``: an eth_getLogs answer with more logs is refused, even for one block;
    ``shared_index``: in eth_getLogs answers (and with ``"receipts"`` in ``lies``, in receipts
    too) the second log of a block carries the first one's logIndex; ``block_receipts``:
    whether eth_getBlockReceipts is served (else only eth_getTransactionReceipt)."""

    def __init__(self) -> None:
        super().__init__()
        self.max_logs: int | None = None
        self.shared_index = False
        self.lies: set[str] = set()
        self.block_receipts = True

    def answer(self, method: str, params: list[Any], fault: str | None) -> Any:
        if method == "eth_getBlockByNumber":
            block = super().answer(method, params, fault)
            if block is not None:
                block["transactions"] = [tx_of(int(block["number"], 16))]
            return block
        if method == "eth_getBlockReceipts":
            if not self.block_receipts:
                raise LookupError(-32601, "the method eth_getBlockReceipts does not exist")
            return [self.receipt(int(params[0], 16))]
        if method == "eth_getTransactionReceipt":
            return self.receipt(int(params[0], 16))
        return super().answer(method, params, fault)

    def receipt(self, b: int) -> dict[str, Any]:
        logs = [dict(lg) for lg in ALL_LOGS if int(lg["blockNumber"], 16) == b]
        if "receipts" in self.lies:
            _share(logs)
        return {"transactionHash": tx_of(b), "transactionIndex": "0x0", "blockNumber": hex(b),
                "blockHash": "0x" + f"{b + 1:064x}", "status": "0x1", "logs": logs}

    def logs(self, flt: dict[str, Any], fault: str | None) -> list[dict[str, Any]]:
        found = [dict(lg) for lg in super().logs(flt, fault)]
        if self.max_logs is not None and len(found) > self.max_logs:
            raise LookupError(-32005, CAPPED)
        if self.shared_index:
            _share(found)
        return found

    def asked(self, method: str) -> list[list[Any]]:
        return [p for m, p in self.calls if m == method]


def _share(logs: list[dict[str, Any]]) -> None:
    for i in range(1, len(logs)):
        bn = logs[i]["blockNumber"]
        if logs[i - 1]["blockNumber"] == bn and (i < 2 or logs[i - 2]["blockNumber"] != bn):
            logs[i]["logIndex"] = logs[i - 1]["logIndex"]


@pytest.fixture
async def node() -> AsyncIterator[ReceiptNode]:
    fake = ReceiptNode()
    await fake.start()
    yield fake
    await fake.stop()


async def test_a_block_over_the_result_cap_is_read_by_halves_of_the_address_list(
        node: ReceiptNode) -> None:
    node.max_logs = 1
    async with client(node.url()) as rpc:
        # Block 10 holds logs of A then B (two halves of one log each), block 11 holds three
        # (A, B, A): A's half is still over the cap and has one address left: receipts.
        assert await rpc.get_logs(BlockRange(10, 11), [ADDR_A, ADDR_B], None) == expected(
            10, 11)
    single = {(p[0]["fromBlock"], tuple(p[0]["address"])) for p in node.asked("eth_getLogs")
              if p[0]["fromBlock"] == p[0]["toBlock"]}
    assert single == {("0xa", (ADDR_A, ADDR_B)), ("0xa", (ADDR_A,)), ("0xa", (ADDR_B,)),
                      ("0xb", (ADDR_A, ADDR_B)), ("0xb", (ADDR_A,)), ("0xb", (ADDR_B,))}
    assert [p[0] for p in node.asked("eth_getBlockReceipts")] == ["0xb"]


async def test_a_block_over_the_result_cap_with_a_topic_filter_only_is_read_from_its_receipts(
        node: ReceiptNode) -> None:
    node.max_logs = 1
    async with client(node.url(), chain="capped") as rpc:
        logs = await rpc.get_logs(BlockRange(8, 15), None, [TOPIC_X, TOPIC_Y])
    assert logs == expected(8, 15, None, [TOPIC_X, TOPIC_Y])
    # Every block of 8-15 with more than one log, and no address list to halve.
    assert sorted(int(p[0], 16) for p in node.asked("eth_getBlockReceipts")) == [10, 11, 14, 15]
    assert sample("capped", "0:127.0.0.1", "eth_getBlockReceipts", "ok") == 4


async def test_a_node_that_refuses_even_one_block_is_read_from_receipts(
        node: ReceiptNode) -> None:
    node.max_range = 0  # every eth_getLogs refused, one block too (once fatal: issue item 8)
    async with client(node.url()) as rpc:
        assert await rpc.get_logs(BlockRange(10, 13), None, None) == expected(10, 13)
    assert sorted(int(p[0], 16) for p in node.asked("eth_getBlockReceipts")) == [10, 11, 12, 13]


async def test_without_block_receipts_the_transaction_receipts_are_read(
        node: ReceiptNode) -> None:
    node.max_logs, node.block_receipts = 1, False
    async with client(node.url()) as rpc:
        assert await rpc.get_logs(BlockRange(11, 11), [ADDR_A], None) == expected(
            11, 11, [ADDR_A])
    assert [p[0] for p in node.asked("eth_getTransactionReceipt")] == [tx_of(11)]


async def test_a_block_whose_receipts_cannot_be_read_either_stops_with_a_clear_error(
        node: ReceiptNode) -> None:
    node.max_range = 0  # every eth_getLogs refused, one block too
    node.block_receipts = False

    def no_tx_receipts(method: str, params: list[Any], fault: str | None) -> Any:
        if method == "eth_getTransactionReceipt":
            raise LookupError(-32601, "the method eth_getTransactionReceipt does not exist")
        return ReceiptNode.answer(node, method, params, fault)

    node.answer = no_tx_receipts  # type: ignore[method-assign]
    async with client(node.url()) as rpc:
        with pytest.raises(RpcFatal, match="block 10 holds more matching logs") as info:
            await rpc.get_logs(BlockRange(10, 13), None, None)
    assert "receipts" in str(info.value)


async def test_logs_sharing_a_log_index_are_counted_and_their_block_read_from_receipts(
        node: ReceiptNode, caplog: pytest.LogCaptureFixture) -> None:
    node.shared_index = True
    async with client(node.url(), chain="shared") as rpc:
        assert await rpc.get_logs(BlockRange(0, 99), None, None) == expected(0, 99)
    blocks = sorted(int(p[0], 16) for p in node.asked("eth_getBlockReceipts"))
    assert blocks == [b for b in range(100) if b % 4 >= 2]  # every block with 2 or 3 logs
    assert rejected("shared", "log_index") == 1  # one answer named them all
    asked = node.get_logs_calls()
    assert asked[0] == BlockRange(0, 99)
    # The blocks between them asked once more, each once: no answer is asked again per block.
    assert sorted(n for r in asked[1:] for n in range(r.start, r.end + 1)) == [
        b for b in range(100) if b % 4 < 2]
    said = [r.getMessage() for r in caplog.records if "share logIndex" in r.getMessage()]
    assert len(said) == 1 and "block 2:" in said[0] and "from receipts instead" in said[0]
    assert "2, 3, 6, 7, 10, ... (50 blocks)" in said[0]


async def test_logs_sharing_a_log_index_in_the_receipts_too_stop_with_a_clear_error(
        node: ReceiptNode) -> None:
    node.shared_index = True
    node.lies = {"receipts"}
    async with client(node.url()) as rpc:
        with pytest.raises(RpcFatal) as info:
            await rpc.get_logs(BlockRange(0, 9), None, None)
    text = str(info.value)
    assert "block 2" in text and "logIndex 0" in text and "another" in text, text
