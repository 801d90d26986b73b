from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RequestEnvelope(_message.Message):
    __slots__ = ("method", "id", "reply_topic", "reply_partition", "deadline_unix_ms", "metadata", "stream")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REPLY_TOPIC_FIELD_NUMBER: _ClassVar[int]
    REPLY_PARTITION_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    method: str
    id: str
    reply_topic: str
    reply_partition: int
    deadline_unix_ms: int
    metadata: _containers.RepeatedCompositeFieldContainer[MetadataEntry]
    stream: StreamOpen
    def __init__(self, method: _Optional[str] = ..., id: _Optional[str] = ..., reply_topic: _Optional[str] = ..., reply_partition: _Optional[int] = ..., deadline_unix_ms: _Optional[int] = ..., metadata: _Optional[_Iterable[_Union[MetadataEntry, _Mapping]]] = ..., stream: _Optional[_Union[StreamOpen, _Mapping]] = ...) -> None: ...

class StreamOpen(_message.Message):
    __slots__ = ("window", "half_closed", "heartbeat_ms", "window_bytes")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    HALF_CLOSED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_BYTES_FIELD_NUMBER: _ClassVar[int]
    window: int
    half_closed: bool
    heartbeat_ms: int
    window_bytes: int
    def __init__(self, window: _Optional[int] = ..., half_closed: _Optional[bool] = ..., heartbeat_ms: _Optional[int] = ..., window_bytes: _Optional[int] = ...) -> None: ...

class StreamFrame(_message.Message):
    __slots__ = ("id", "kind", "seq", "credit", "inbox_topic", "inbox_partition", "header", "code", "message", "status_details", "trailer", "from_client", "server", "heartbeat_ms", "credit_bytes")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[StreamFrame.Kind]
        KIND_ACCEPT: _ClassVar[StreamFrame.Kind]
        KIND_MESSAGE: _ClassVar[StreamFrame.Kind]
        KIND_HEADER: _ClassVar[StreamFrame.Kind]
        KIND_HALF_CLOSE: _ClassVar[StreamFrame.Kind]
        KIND_END: _ClassVar[StreamFrame.Kind]
        KIND_CREDIT: _ClassVar[StreamFrame.Kind]
        KIND_PING: _ClassVar[StreamFrame.Kind]
        KIND_CANCEL: _ClassVar[StreamFrame.Kind]
    KIND_UNSPECIFIED: StreamFrame.Kind
    KIND_ACCEPT: StreamFrame.Kind
    KIND_MESSAGE: StreamFrame.Kind
    KIND_HEADER: StreamFrame.Kind
    KIND_HALF_CLOSE: StreamFrame.Kind
    KIND_END: StreamFrame.Kind
    KIND_CREDIT: StreamFrame.Kind
    KIND_PING: StreamFrame.Kind
    KIND_CANCEL: StreamFrame.Kind
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    INBOX_TOPIC_FIELD_NUMBER: _ClassVar[int]
    INBOX_PARTITION_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_DETAILS_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    FROM_CLIENT_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    CREDIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: StreamFrame.Kind
    seq: int
    credit: int
    inbox_topic: str
    inbox_partition: int
    header: _containers.RepeatedCompositeFieldContainer[MetadataEntry]
    code: int
    message: str
    status_details: bytes
    trailer: _containers.RepeatedCompositeFieldContainer[MetadataEntry]
    from_client: bool
    server: str
    heartbeat_ms: int
    credit_bytes: int
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[StreamFrame.Kind, str]] = ..., seq: _Optional[int] = ..., credit: _Optional[int] = ..., inbox_topic: _Optional[str] = ..., inbox_partition: _Optional[int] = ..., header: _Optional[_Iterable[_Union[MetadataEntry, _Mapping]]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., status_details: _Optional[bytes] = ..., trailer: _Optional[_Iterable[_Union[MetadataEntry, _Mapping]]] = ..., from_client: _Optional[bool] = ..., server: _Optional[str] = ..., heartbeat_ms: _Optional[int] = ..., credit_bytes: _Optional[int] = ...) -> None: ...

class ReplyEnvelope(_message.Message):
    __slots__ = ("id", "code", "message", "status_details", "header", "trailer")
    ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_DETAILS_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    id: str
    code: int
    message: str
    status_details: bytes
    header: _containers.RepeatedCompositeFieldContainer[MetadataEntry]
    trailer: _containers.RepeatedCompositeFieldContainer[MetadataEntry]
    def __init__(self, id: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., status_details: _Optional[bytes] = ..., header: _Optional[_Iterable[_Union[MetadataEntry, _Mapping]]] = ..., trailer: _Optional[_Iterable[_Union[MetadataEntry, _Mapping]]] = ...) -> None: ...

class MetadataEntry(_message.Message):
    __slots__ = ("key", "values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    values: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, key: _Optional[str] = ..., values: _Optional[_Iterable[bytes]] = ...) -> None: ...
