"""Limits against abuse, checked before a query runs (pure): the size of the document (in
tokens), its depth, ``first`` at most ``MAX_FIRST``, ``_in`` lists at most ``MAX_IN`` values, and
its cost: every table field costs the rows it may return (``first``) plus one query, so that
aliases cannot multiply the work of one request past ``MAX_COST``."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)

from indexer.serve.graph import DEFAULT_FIRST

MAX_TOKENS = 5_000
MAX_DEPTH = 15  # the standard introspection query is 13 deep
MAX_FIRST = 1000
MAX_IN = 1000
MAX_COST = 10_000
FIELD_COST = 10  # one statement


def depth(selection_set: SelectionSetNode | None,
          fragments: Mapping[str, FragmentDefinitionNode], seen: frozenset[str] = frozenset()
          ) -> int:
    """Fields nested in the deepest path of ``selection_set`` (fragments followed once)."""
    if selection_set is None:
        return 0
    deepest = 0
    for sel in selection_set.selections:
        if isinstance(sel, FieldNode):
            d = 1 + depth(sel.selection_set, fragments, seen)
        elif isinstance(sel, InlineFragmentNode):
            d = depth(sel.selection_set, fragments, seen)
        elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
            frag = fragments.get(sel.name.value)
            d = 0 if frag is None else depth(frag.selection_set, fragments,
                                             seen | {sel.name.value})
        else:
            d = 0
        deepest = max(deepest, d)
    return deepest


class DepthRule(ASTValidationRule):
    """Refuses an operation nested deeper than ``MAX_DEPTH``."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        fragments = {d.name.value: d for d in self.context.document.definitions
                     if isinstance(d, FragmentDefinitionNode)}
        got = depth(node.selection_set, fragments)
        if got > MAX_DEPTH:
            self.report_error(GraphQLError(
                f"the operation is {got} fields deep; at most {MAX_DEPTH} are served", node))


def root_fields(op: OperationDefinitionNode, fragments: Mapping[str, FragmentDefinitionNode]
                ) -> list[FieldNode]:
    """The root fields of ``op``, through fragments (each spread counted where it is)."""
    out: list[FieldNode] = []

    def walk(sel_set: SelectionSetNode, seen: frozenset[str]) -> None:
        for sel in sel_set.selections:
            if isinstance(sel, FieldNode):
                out.append(sel)
            elif isinstance(sel, InlineFragmentNode):
                walk(sel.selection_set, seen)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                frag = fragments.get(sel.name.value)
                if frag is not None:
                    walk(frag.selection_set, seen | {sel.name.value})

    walk(op.selection_set, frozenset())
    return out


def first_of(field: FieldNode, variables: Mapping[str, Any]) -> Any:
    """The ``first`` a table field asks for: its literal, its variable's value as sent, or the
    default."""
    for arg in field.arguments or ():
        if arg.name.value != "first":
            continue
        if isinstance(arg.value, IntValueNode):
            return int(arg.value.value)
        if isinstance(arg.value, VariableNode):
            return variables.get(arg.value.name.value, DEFAULT_FIRST)
        return DEFAULT_FIRST  # null: the resolver takes the default
    return DEFAULT_FIRST


def check(op: OperationDefinitionNode, fragments: Mapping[str, FragmentDefinitionNode],
          variables: Mapping[str, Any], tables: Collection[str]) -> list[str]:
    """What in ``op`` goes past the limits, as messages (none: it may run)."""
    problems: list[str] = []
    cost = 0
    for field in root_fields(op, fragments):
        if field.name.value not in tables:
            cost += 1
            continue
        first = first_of(field, variables)
        where = field.alias.value if field.alias else field.name.value
        if isinstance(first, int) and not isinstance(first, bool):
            if not 0 <= first <= MAX_FIRST:
                problems.append(f"{where}: first is {first}; it must be 0 to {MAX_FIRST}")
            cost += FIELD_COST + max(0, min(first, MAX_FIRST))
        else:
            cost += FIELD_COST + MAX_FIRST  # refused or coerced later; counted at most
    if cost > MAX_COST:
        problems.append(f"the operation costs {cost} (rows it may return plus {FIELD_COST} per "
                        f"table field); at most {MAX_COST} is served: ask for fewer rows or "
                        f"fewer fields")
    return problems
