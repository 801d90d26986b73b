import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kgrpc.kafka.v1 import options_pb2 as _options_pb2
from shop.orders.v1 import orders_pb2 as _orders_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrderCreated(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _orders_pb2.Order
    def __init__(self, order: _Optional[_Union[_orders_pb2.Order, _Mapping]] = ...) -> None: ...

class OrderStatusChanged(_message.Message):
    __slots__ = ("order_id", "user_id", "old_status", "new_status", "items", "change_time")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_STATUS_FIELD_NUMBER: _ClassVar[int]
    NEW_STATUS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    user_id: str
    old_status: _orders_pb2.OrderStatus
    new_status: _orders_pb2.OrderStatus
    items: _containers.RepeatedCompositeFieldContainer[_orders_pb2.OrderItem]
    change_time: _timestamp_pb2.Timestamp
    def __init__(self, order_id: _Optional[str] = ..., user_id: _Optional[str] = ..., old_status: _Optional[_Union[_orders_pb2.OrderStatus, str]] = ..., new_status: _Optional[_Union[_orders_pb2.OrderStatus, str]] = ..., items: _Optional[_Iterable[_Union[_orders_pb2.OrderItem, _Mapping]]] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
