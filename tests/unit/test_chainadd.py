"""`indexer chain add`: choosing values from a probe and writing a file that loads (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.config import load_chain, shipped_chains_dir
from indexer.ops.chainadd import (
    Probe,
    choose,
    default_finality,
    duration_text,
    partition_span,
    render,
    round_block_time,
    shipped_chain_by_id,
)

URL = "http://127.0.0.1:8545"


def probe(**changes: object) -> Probe:
    p = Probe(chain_id=4242, head=50_000, block_time=2.04, sample_blocks=100, finalized=49_970,
              safe=49_990, logs_range={"0:127.0.0.1": 10_000},
              logs_refusal={"0:127.0.0.1": "20,000 blocks: range too large"},
              batch={"0:127.0.0.1": 50})
    for k, v in changes.items():
        setattr(p, k, v)
    return p


def write(tmp_path: Path, name: str, p: Probe, from_block: int | None = None,
          urls: tuple[str, ...] = (URL,)) -> Path:
    choice = choose(name, p, from_block, shipped_chain_by_id())
    (tmp_path / "abis").mkdir(exist_ok=True)
    for rel in choice.abis:
        (tmp_path / rel).write_bytes((shipped_chains_dir() / rel).read_bytes())
    path = tmp_path / f"{name}.yaml"
    path.write_text(render(choice, list(urls), p))
    return path


@pytest.mark.parametrize(("seconds", "text"), [
    (12.0, "12s"), (2.0, "2s"), (0.25, "250ms"), (0.75, "750ms"), (1.5, "1500ms"), (0.01, "50ms"),
])
def test_duration_text(seconds: float, text: str):
    assert duration_text(seconds) == text


@pytest.mark.parametrize(("measured", "rounded"), [
    (12.04, 12.0), (2.1, 2.0), (0.26, 0.25), (0.74, 0.75), (1.52, 1.5), (0.001, 0.05),
])
def test_measured_block_time_is_rounded(measured: float, rounded: float):
    assert round_block_time(measured) == rounded


@pytest.mark.parametrize(("block_time", "span"), [
    (12.0, 1_000_000), (2.0, 1_000_000), (1.0, 2_000_000), (0.25, 10_000_000),
])
def test_partition_span_is_about_four_weeks(block_time: float, span: int):
    assert partition_span(block_time) == span


def test_default_finality_is_about_a_minute_within_bounds():
    assert default_finality(12.0) == 5
    assert default_finality(2.0) == 30
    assert default_finality(0.1) == 256


def test_unknown_chain_gets_probed_values_and_a_placeholder_and_loads(tmp_path: Path):
    path = write(tmp_path, "mynet", probe())
    chain = load_chain(path)
    assert (chain.name, chain.chain_id) == ("mynet", 4242)
    assert chain.block_time == 2.0
    assert chain.finality_depth == 30  # the finalized tag is 30 blocks behind: 60 s at 2 s
    assert chain.start_block == 50_000  # the head: no --from-block
    assert chain.get_logs_max_range == 10_000
    assert chain.partition_blocks == 1_000_000
    assert chain.rpc[0].url == URL and chain.rpc[0].max_batch_size == 50
    assert [c.name for c in chain.contracts] == ["Placeholder"]
    text = path.read_text()
    assert "${MYNET_RPC_URL:-http://127.0.0.1:8545}" in text
    assert "measured 2.04 s over the last 100 blocks" in text
    assert "Replace it with your contracts" in text


def test_finalized_tag_far_behind_falls_back_to_a_minute(tmp_path: Path):
    # an L2 whose finalized tag follows L1 finality: hours of blocks, not a reorg margin
    chain = load_chain(write(tmp_path, "l2", probe(finalized=40_000)))
    assert chain.finality_depth == 30
    assert "the finalized tag is 10,000 blocks behind" in (tmp_path / "l2.yaml").read_text()


def test_no_finalized_tag_and_no_block_time(tmp_path: Path):
    chain = load_chain(write(tmp_path, "odd", probe(finalized=None, safe=None, block_time=None)))
    assert chain.block_time == 2.0
    assert chain.finality_depth == 30
    assert "does not answer the finalized tag" in (tmp_path / "odd.yaml").read_text()


def test_young_chain_without_refusals_keeps_the_default_range(tmp_path: Path):
    p = probe(head=40, logs_range={"0:127.0.0.1": 41}, logs_refusal={})
    chain = load_chain(write(tmp_path, "young", p))
    assert chain.get_logs_max_range == 2000


def test_known_shipped_chain_id_copies_defaults_and_contracts(tmp_path: Path):
    p = probe(chain_id=43114, block_time=1.7)
    chain = load_chain(write(tmp_path, "avax2", p, from_block=1_000))
    shipped = load_chain(shipped_chains_dir() / "avalanche.yaml")
    assert (chain.block_time, chain.finality_depth, chain.partition_blocks) == (
        shipped.block_time, shipped.finality_depth, shipped.partition_blocks)
    assert [c.name for c in chain.contracts] == [c.name for c in shipped.contracts]
    assert {c.start_block for c in chain.contracts} == {1_000}  # --from-block applies to all
    assert [c.addresses for c in chain.contracts] == [c.addresses for c in shipped.contracts]


def test_known_chain_id_without_a_shipped_file_uses_the_table(tmp_path: Path):
    chain = load_chain(write(tmp_path, "sepolia", probe(chain_id=11155111, block_time=12.3)))
    assert (chain.block_time, chain.finality_depth) == (12.0, 64)
    assert "default for Ethereum Sepolia" in (tmp_path / "sepolia.yaml").read_text()


def test_url_with_an_api_key_is_not_written(tmp_path: Path):
    secret = "https://rpc.example.com/v2/abcdefghijklmnopqrstuvwxyz0123"
    p = probe(logs_range={"0:rpc.example.com": 10_000}, batch={"0:rpc.example.com": 100})
    path = write(tmp_path, "keyed", p, urls=(secret,))
    text = path.read_text()
    assert "abcdefghij" not in text
    assert "url: ${KEYED_RPC_URL}" in text
    assert load_chain(path, env={"KEYED_RPC_URL": secret}).rpc[0].url == secret
