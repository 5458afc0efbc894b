"""What one source is (pure): one event of one contract at one target, an address or the
children of a factory. Progress is recorded per source, so an edited chain file is planned as
the exact difference: an address, an event or a contract added is a source with nothing done.

A source's key names it for good: ``contract:target:event`` where the event is its topic0 (or,
for an anonymous event, ``anon-`` and 8 hex digits of its signature's hash). How the source
decodes (its ``layout``: the signature with indexed flags and parameter names) is recorded
beside the key; a file that keeps the key but changes the layout is refused, since rows written
one way would be mixed with rows written the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from indexer.abi import EventSpec, keccak256
from indexer.config import ContractConfig


@dataclass(frozen=True, slots=True)
class SourceSpec:
    key: str
    contract: str
    target: str  # a lower-case address, or "factory:NAME" for the children of a factory
    spec: EventSpec
    start_block: int
    factory: str | None  # the factory whose children these are

    @property
    def address(self) -> str | None:
        return None if self.factory is not None else self.target

    @property
    def event_id(self) -> str:
        return event_id(self.spec)

    @property
    def layout(self) -> str:
        return layout(self.spec)


def event_id(spec: EventSpec) -> str:
    """The event part of a key: topic0 in hex; an anonymous event by its signature's hash."""
    if spec.anonymous:
        return "anon-" + keccak256(spec.signature.encode()).hex()[:8]
    return "0x" + spec.topic0.hex()


def layout(spec: EventSpec) -> str:
    """How an event decodes: ``Transfer(address indexed from,address indexed to,uint256 value)``
    (with ``anonymous`` after it when it is)."""
    params = ",".join(f"{p.abi_type}{' indexed' if p.indexed else ''}{' ' + p.name if p.name else ''}"
                      for p in spec.params)
    return f"{spec.name}({params})" + (" anonymous" if spec.anonymous else "")


def key_of(contract: str, target: str, spec: EventSpec) -> str:
    return f"{contract}:{target}:{event_id(spec)}"


def contract_sources(contract: ContractConfig, specs: Sequence[EventSpec]) -> list[SourceSpec]:
    """Every source of one configured contract: each of its events at each of its addresses,
    or at its factory's children."""
    factory = contract.factory.contract if contract.factory is not None else None
    targets = [f"factory:{factory}"] if factory is not None else list(contract.addresses)
    return [SourceSpec(key_of(contract.name, t, s), contract.name, t, s, contract.start_block,
                       factory)
            for t in targets for s in specs]
