"""A GraphQL request from its text to its answer and HTTP status: parse and validate once per
document text (cached; the schema's generation is part of the key), the limits, the
execution (``rows.RowsExecutor``), the status.

Statuses: a request that is not well-formed or not valid, over a limit, with variables that do
not coerce, or a subscription sent as a query, is refused before it runs: 400 with ``errors``
and no ``data``. An answer that could not be given (a root field failed: the whole answer
fails, root fields are non-null) has the status of the failure: 400 for a bad cursor or value,
503 when the database cannot answer, 504 past the statement timeout, 500 for a bug (its
message hidden, logged). A GraphQL error never comes back as 200.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    execute,
    parse,
    specified_rules,
    subscribe,
    validate,
)
from graphql.utilities import get_operation_ast

from indexer.serve import limits
from indexer.serve.errors import ApiError
from indexer.serve.resolve import Request
from indexer.serve.rows import RowsExecutor

log = logging.getLogger(__name__)

CACHE_SIZE = 512
RULES = (*specified_rules, limits.DepthRule)
QUERIES = frozenset({OperationType.QUERY})


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    operation: str  # for the metrics: the table field asked, "multiple", "chains", ...


@dataclass(frozen=True, slots=True)
class Prepared:
    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]
    fragments: dict[str, FragmentDefinitionNode]


def refused(message: str, status: int = 400, operation: str = "invalid") -> Answer:
    return Answer(status, {"errors": [{"message": message}]}, operation)


class Engine:
    """The schema in force and the documents already parsed and validated against it."""

    def __init__(self, schema: GraphQLSchema, tables: frozenset[str]) -> None:
        self.schema = schema
        self.tables = tables
        self._cache: OrderedDict[str, Prepared] = OrderedDict()

    def replace(self, schema: GraphQLSchema, tables: frozenset[str]) -> None:
        self.schema, self.tables = schema, tables
        self._cache = OrderedDict()

    def prepare(self, query: str) -> Prepared:
        got = self._cache.get(query)
        if got is not None:
            self._cache.move_to_end(query)
            return got
        try:
            document = parse(query, max_tokens=limits.MAX_TOKENS,
                             allow_empty_selection_sets=False)
        except GraphQLError as e:
            got = Prepared(None, (e,), {})
        else:
            errors = validate(self.schema, document, RULES, max_errors=20,
                              allow_empty_selection_sets=False)
            got = Prepared(document, tuple(errors), {
                d.name.value: d for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)})
        self._cache[query] = got
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return got

    def operation(self, prepared: Prepared, name: str | None
                  ) -> tuple[OperationDefinitionNode | None, Answer | None]:
        """The operation to run, or the answer refusing the request."""
        if prepared.document is None or prepared.errors:
            return None, Answer(400, {"errors": [e.formatted for e in prepared.errors]},
                                "invalid")
        op = get_operation_ast(prepared.document, name)
        if op is None:
            why = (f"no operation named {name!r}" if name else
                   "the document has several operations: name one (operationName)")
            return None, refused(why)
        return op, None

    def check(self, prepared: Prepared, op: OperationDefinitionNode,
              variables: dict[str, Any]) -> Answer | None:
        problems = limits.check(op, prepared.fragments, variables, self.tables)
        if problems:
            return Answer(400, {"errors": [{"message": p, "extensions": {"code": "LIMIT"}}
                                           for p in problems]}, "refused")
        return None

    def label(self, prepared: Prepared, op: OperationDefinitionNode) -> str:
        names = {f.name.value for f in limits.root_fields(op, prepared.fragments)}
        if len(names) == 1:
            (name,) = names
            return name if name in self.tables or name == "chains" else "introspection"
        return "multiple" if names - {"__typename", "__schema", "__type"} else "introspection"

    def admit(self, query: Any, variables: Any, name: Any,
              allowed: frozenset[OperationType]) -> Prepared | Answer:
        """The prepared document of a request that may run, or the answer refusing it."""
        if not isinstance(query, str) or not query:
            return refused("the request has no query (a GraphQL document, as a string)")
        if variables is not None and not isinstance(variables, dict):
            return refused("variables must be an object")
        if name is not None and not isinstance(name, str):
            return refused("operationName must be a string")
        prepared = self.prepare(query)
        op, refusal = self.operation(prepared, name)
        if refusal is not None or op is None:
            return refusal or refused("no operation")
        if op.operation not in allowed:
            return refused(f"a {op.operation.value} is not served here: subscriptions over a "
                           f"WebSocket (graphql-transport-ws) or with Accept: text/event-stream"
                           if op.operation is OperationType.SUBSCRIPTION else
                           f"a {op.operation.value} is not served here")
        refusal = self.check(prepared, op, variables or {})
        return prepared if refusal is None else refusal

    def kind(self, prepared: Prepared, name: str | None) -> OperationType:
        op, _ = self.operation(prepared, name)
        assert op is not None
        return op.operation

    async def run(self, query: Any, variables: Any, name: Any, request: Request,
                  allowed: frozenset[OperationType] = QUERIES) -> Answer:
        admitted = self.admit(query, variables, name, allowed)
        if isinstance(admitted, Answer):
            return admitted
        assert admitted.document is not None
        result = execute(self.schema, admitted.document, variable_values=variables,
                         operation_name=name, context_value=request, executor_class=RowsExecutor)
        if isawaitable(result):
            result = await result
        op, _ = self.operation(admitted, name)
        assert op is not None
        return answer(result, request, self.label(admitted, op))

    async def subscribe(self, query: Any, variables: Any, name: Any, request: Request
                        ) -> Answer | AsyncIterator[Any]:
        """The stream of results of a subscription (or the answer refusing it)."""
        admitted = self.admit(query, variables, name, frozenset({OperationType.SUBSCRIPTION}))
        if isinstance(admitted, Answer):
            return admitted
        assert admitted.document is not None
        got = subscribe(self.schema, admitted.document, variable_values=variables,
                        operation_name=name, context_value=request, executor_class=RowsExecutor)
        if isawaitable(got):
            got = await got
        if isinstance(got, ExecutionResult):
            return answer(got, request, "subscription")
        return got


def answer(result: Any, request: Request, operation: str) -> Answer:
    if not result.errors:
        return Answer(200, {"data": result.data, "extensions": request.extensions()},
                      operation)
    errors = [formatted(e) for e in result.errors]
    if all(e.path is None for e in result.errors):  # variables that do not coerce
        return Answer(400, {"errors": errors}, operation)
    status = max(_status(e) for e in result.errors)
    return Answer(status, {"data": result.data, "errors": errors,
                           "extensions": request.extensions()}, operation)


def _status(error: GraphQLError) -> int:
    original = error.original_error
    if isinstance(original, ApiError):
        return original.status
    return 400 if error.path is None else 500


def formatted(error: GraphQLError) -> dict[str, Any]:
    out: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    if isinstance(original, ApiError):
        out["extensions"] = {**dict(out.get("extensions") or {}), "code": original.code}
    elif original is not None and error.path is not None:
        log.error("serve: a resolver failed: %s: %s", type(original).__name__, original,
                  exc_info=original)
        out["message"] = "internal error (logged by the server)"
        out["extensions"] = {"code": "INTERNAL"}
    return out
