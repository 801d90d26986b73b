from kgrpc.kafka.v1 import options_pb2 as _options_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class LookupRequest(_message.Message):
    __slots__ = ("id", "sleep_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    SLEEP_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    sleep_ms: int
    def __init__(self, id: _Optional[str] = ..., sleep_ms: _Optional[int] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("id", "served_by", "partition")
    ID_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    id: str
    served_by: str
    partition: int
    def __init__(self, id: _Optional[str] = ..., served_by: _Optional[str] = ..., partition: _Optional[int] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("key", "fail_times")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FAIL_TIMES_FIELD_NUMBER: _ClassVar[int]
    key: str
    fail_times: int
    def __init__(self, key: _Optional[str] = ..., fail_times: _Optional[int] = ...) -> None: ...

class PutResponse(_message.Message):
    __slots__ = ("attempts", "partition")
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    partition: int
    def __init__(self, attempts: _Optional[int] = ..., partition: _Optional[int] = ...) -> None: ...

class ServerStreamRequest(_message.Message):
    __slots__ = ("key", "message", "payload", "count", "interval_ms", "fail_code")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    FAIL_CODE_FIELD_NUMBER: _ClassVar[int]
    key: str
    message: str
    payload: bytes
    count: int
    interval_ms: int
    fail_code: int
    def __init__(self, key: _Optional[str] = ..., message: _Optional[str] = ..., payload: _Optional[bytes] = ..., count: _Optional[int] = ..., interval_ms: _Optional[int] = ..., fail_code: _Optional[int] = ...) -> None: ...

class ServerStreamResponse(_message.Message):
    __slots__ = ("message", "payload", "index", "served_by")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    message: str
    payload: bytes
    index: int
    served_by: str
    def __init__(self, message: _Optional[str] = ..., payload: _Optional[bytes] = ..., index: _Optional[int] = ..., served_by: _Optional[str] = ...) -> None: ...

class ClientStreamRequest(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class ClientStreamResponse(_message.Message):
    __slots__ = ("count", "last_message", "served_by")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    count: int
    last_message: str
    served_by: str
    def __init__(self, count: _Optional[int] = ..., last_message: _Optional[str] = ..., served_by: _Optional[str] = ...) -> None: ...

class BidiStreamRequest(_message.Message):
    __slots__ = ("message", "payload", "fail_code")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    FAIL_CODE_FIELD_NUMBER: _ClassVar[int]
    message: str
    payload: bytes
    fail_code: int
    def __init__(self, message: _Optional[str] = ..., payload: _Optional[bytes] = ..., fail_code: _Optional[int] = ...) -> None: ...

class BidiStreamResponse(_message.Message):
    __slots__ = ("message", "payload", "index", "served_by")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    message: str
    payload: bytes
    index: int
    served_by: str
    def __init__(self, message: _Optional[str] = ..., payload: _Optional[bytes] = ..., index: _Optional[int] = ..., served_by: _Optional[str] = ...) -> None: ...

class EchoRequest(_message.Message):
    __slots__ = ("key", "message", "payload")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    key: str
    message: str
    payload: bytes
    def __init__(self, key: _Optional[str] = ..., message: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class EchoResponse(_message.Message):
    __slots__ = ("message", "payload", "served_by")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    message: str
    payload: bytes
    served_by: str
    def __init__(self, message: _Optional[str] = ..., payload: _Optional[bytes] = ..., served_by: _Optional[str] = ...) -> None: ...

class FailRequest(_message.Message):
    __slots__ = ("code", "message", "detail")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    detail: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class FailResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SleepRequest(_message.Message):
    __slots__ = ("id", "duration_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    duration_ms: int
    def __init__(self, id: _Optional[str] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class SleepResponse(_message.Message):
    __slots__ = ("id", "served_by")
    ID_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    id: str
    served_by: str
    def __init__(self, id: _Optional[str] = ..., served_by: _Optional[str] = ...) -> None: ...

class Pinged(_message.Message):
    __slots__ = ("id", "seq", "fail_times")
    ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    FAIL_TIMES_FIELD_NUMBER: _ClassVar[int]
    id: str
    seq: int
    fail_times: int
    def __init__(self, id: _Optional[str] = ..., seq: _Optional[int] = ..., fail_times: _Optional[int] = ...) -> None: ...
