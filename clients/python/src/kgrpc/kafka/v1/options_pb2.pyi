from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor
KAFKA_FIELD_NUMBER: _ClassVar[int]
kafka: _descriptor.FieldDescriptor
KAFKA_METHOD_FIELD_NUMBER: _ClassVar[int]
kafka_method: _descriptor.FieldDescriptor
EVENT_FIELD_NUMBER: _ClassVar[int]
event: _descriptor.FieldDescriptor

class ServiceKafkaOptions(_message.Message):
    __slots__ = ("topic",)
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    topic: str
    def __init__(self, topic: _Optional[str] = ...) -> None: ...

class MethodKafkaOptions(_message.Message):
    __slots__ = ("partition_key",)
    PARTITION_KEY_FIELD_NUMBER: _ClassVar[int]
    partition_key: str
    def __init__(self, partition_key: _Optional[str] = ...) -> None: ...

class EventOptions(_message.Message):
    __slots__ = ("key", "topic")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    key: str
    topic: str
    def __init__(self, key: _Optional[str] = ..., topic: _Optional[str] = ...) -> None: ...
