"""gRPC status codes and the error a call raises."""

from __future__ import annotations

import enum
from typing import Any

from google.protobuf import any_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

# Registers google.rpc's detail types (BadRequest, PreconditionFailure,
# ErrorInfo, ...) in the default pool, so that details decode to them.
_ = error_details_pb2


class Code(enum.IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


def _code(n: int) -> Code | int:
    try:
        return Code(n)
    except ValueError:
        return n


class RpcError(Exception):
    """A call that ended with a status other than OK.

    details are the google.rpc.Status details, each unpacked to its generated
    class when its type is known to the default descriptor pool (google.rpc's
    error details always are), else left as google.protobuf.Any.
    """

    def __init__(self, code: Code | int, message: str, details: list[Any] | None = None,
                 header: dict[str, list[bytes]] | None = None, trailer: dict[str, list[bytes]] | None = None) -> None:
        self.code = _code(int(code))
        self.message = message
        self.details: list[Any] = details or []
        self.header = header or {}
        self.trailer = trailer or {}
        name = self.code.name if isinstance(self.code, Code) else str(self.code)
        super().__init__(f"{name}: {message}")

    def detail(self, cls: type[Any]) -> Any | None:
        """The first detail of class cls, or None."""
        return next((d for d in self.details if isinstance(d, cls)), None)


def unpack_any(a: any_pb2.Any) -> Message:
    """The message an Any holds, as its generated class when the pool knows it."""
    name = a.type_url.rsplit("/", 1)[-1]
    try:
        desc = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return a
    m: Message = message_factory.GetMessageClass(desc)()
    if not a.Unpack(m):
        return a
    return m


def decode_details(raw: bytes) -> list[Any]:
    """The details of a google.rpc.Status in protobuf binary encoding."""
    if not raw:
        return []
    st = status_pb2.Status()
    try:
        st.ParseFromString(raw)
    except DecodeError:
        return []
    return [unpack_any(a) for a in st.details]
