"""Why an answer could not be given, with the HTTP status and the code it is answered with."""

from __future__ import annotations


class ApiError(Exception):
    """A query that cannot be answered: ``status`` 400 (the query's fault), 503 (the database
    cannot answer now), 504 (it ran past the statement timeout)."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def bad_input(message: str) -> ApiError:
    return ApiError(message, 400, "BAD_USER_INPUT")


def unavailable(message: str) -> ApiError:
    return ApiError(message, 503, "DATABASE_UNAVAILABLE")


def timed_out(seconds: float) -> ApiError:
    return ApiError(f"the query ran past the statement timeout ({seconds:g} s): narrow it "
                    f"(filter by address, which is indexed, or by a block window)", 504,
                    "QUERY_TIMEOUT")
