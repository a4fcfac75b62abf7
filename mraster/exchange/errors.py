"""Exchange errors as typed exceptions with plain-English messages (never containing secrets)."""
from __future__ import annotations

from typing import Any

from mraster.words import Words


class ExchangeError(Exception):
    """Base class. ``code`` is the exchange's error code (0 when none), ``http`` the status."""

    plain = "The exchange refused the request."
    said: Any = None  # the answer to the user's command, in words, when the caller knows better
    partly: bool = False  # the command was done in part (some positions closed) before it failed

    def __init__(self, code: int = 0, msg: str = "", http: int = 0, path: str = "") -> None:
        self.code, self.msg, self.http, self.path = code, msg, http, path
        where = f" ({path})" if path else ""
        detail = f" [{code}: {msg}]" if code or msg else ""
        super().__init__(f"{self.plain}{where}{detail}")


class InsufficientMargin(ExchangeError):
    plain = "Not enough margin for this order."


class PrecisionError(ExchangeError):
    plain = ("Price or quantity does not fit the symbol's rules (tick or step size, smallest or "
             "largest quantity).")


class MinNotionalError(ExchangeError):
    plain = "The order is smaller than the exchange's minimum notional."


class WouldTrigger(ExchangeError):
    plain = "The stop or take-profit price has already been passed; the order would trigger immediately."


class ReduceOnlyRejected(ExchangeError):
    plain = "Reduce-only order rejected: there is no position in that direction to reduce."


class UnknownOrder(ExchangeError):
    plain = "The order does not exist (or is no longer open)."


class AuthError(ExchangeError):
    plain = "The exchange did not accept the API credentials (wrong key, permissions or IP)."


class InvalidSignature(AuthError):
    plain = "The request signature was rejected: the API secret does not match the key."


class TimestampError(ExchangeError):
    plain = "The request time is outside the exchange's window: the computer's clock is off."


class RateLimited(ExchangeError):
    plain = "Too many requests: the exchange's rate limit was hit; requests are paused."


class IPBanned(RateLimited):
    plain = "The exchange banned this IP for a while after too many requests."


class BadRequest(ExchangeError):
    plain = "The exchange rejected the request parameters."


class BadSymbol(BadRequest):
    plain = "Unknown symbol."


class ExchangeUnavailable(ExchangeError):
    plain = "The exchange could not be reached or answered with a server error."


class OrderStatusUnknown(ExchangeError):
    plain = "The order was sent but its outcome is unknown; it will be looked up before any retry."


class MalformedReply(ExchangeUnavailable):
    """The exchange answered, but not in the shape its protocol promises (a missing field, not
    JSON): treated like no answer, never as a crash."""
    plain = "The exchange sent a malformed answer."


class Interrupted(ExchangeUnavailable):
    """The bot is stopping: a wait (rate limit, back-off) was cut short and the request it was
    waiting for was not sent. Like any unsent request it changes nothing on the exchange."""
    plain = "Stopping: the request was not sent."


class DuplicateClientId(BadRequest):
    """The client order id was used before: the order it names exists (look it up)."""
    plain = "An order with this client order id already exists."


_BY_CODE: dict[int, type[ExchangeError]] = {
    -2019: InsufficientMargin, -2018: InsufficientMargin, -4050: InsufficientMargin,
    -4051: InsufficientMargin, -1111: PrecisionError, -4014: PrecisionError,
    -4023: PrecisionError, -4003: PrecisionError, -4004: PrecisionError, -4005: PrecisionError,
    -4164: MinNotionalError, -5076: MinNotionalError, -2021: WouldTrigger, -4142: WouldTrigger,
    -2022: ReduceOnlyRejected, -4118: ReduceOnlyRejected, -2013: UnknownOrder,
    -2011: UnknownOrder, -1022: InvalidSignature, -2014: AuthError, -2015: AuthError,
    -1002: AuthError, -1021: TimestampError, -4225: TimestampError, -1003: RateLimited,
    -1121: BadSymbol, -1007: OrderStatusUnknown, -4116: DuplicateClientId,
}


def said_error(exc: BaseException) -> Words | str:
    """An error inside a notice: an exchange's failure as this client's own sentence
    (``plain``), which the page and the phone say in the reader's language, with the path, the
    exchange's code and its own text as they came (the same English as ``str(exc)``); any other
    error as its text. A German notice read "… nicht setzen: The exchange could not be reached
    or answered with a server error." """
    if not isinstance(exc, ExchangeError):
        return str(exc)
    where = " ({path})" if exc.path else ""
    detail = " [{code}: {msg}]" if exc.code or exc.msg else ""
    # (the code as text: a number would be written in the reader's format, -1.116)
    return Words("{error}" + where + detail, {"error": Words(exc.plain), "path": exc.path,
                                               "code": str(exc.code), "msg": exc.msg})


def is_refusal(exc: BaseException) -> bool:
    """True only when the exchange explicitly refused the request itself, so it cannot have
    acted on it: a 4xx answer that carries an exchange error code. A transport error, a timeout,
    a 5xx, -1007 (execution status unknown) or a failed lookup is *not* a refusal: the order may
    exist, and only the exchange can say (ccxt splits ExchangeError from NetworkError the same way).
    A 429/418 is a refusal too (rejected before processing), though callers retry it."""
    if not isinstance(exc, ExchangeError) or isinstance(exc, (OrderStatusUnknown, ExchangeUnavailable)):
        return False
    return 400 <= exc.http < 500 and exc.code != 0


def from_response(status: int, code: int, msg: str, path: str = "") -> ExchangeError:
    if status == 418:
        return IPBanned(code, msg, status, path)
    if status == 429:
        return RateLimited(code, msg, status, path)
    cls = _BY_CODE.get(code)
    if cls is None:
        if status >= 500:
            cls = ExchangeUnavailable
        elif status in (401, 403):
            cls = AuthError
        else:
            cls = BadRequest
    return cls(code, msg, status, path)
