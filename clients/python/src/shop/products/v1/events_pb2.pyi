import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kgrpc.kafka.v1 import options_pb2 as _options_pb2
from shop.products.v1 import products_pb2 as _products_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProductChanged(_message.Message):
    __slots__ = ("product_id", "product", "deleted", "change_time")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    product: _products_pb2.Product
    deleted: bool
    change_time: _timestamp_pb2.Timestamp
    def __init__(self, product_id: _Optional[str] = ..., product: _Optional[_Union[_products_pb2.Product, _Mapping]] = ..., deleted: _Optional[bool] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StockChanged(_message.Message):
    __slots__ = ("product_id", "delta", "stock", "reservation_id", "change_time")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    STOCK_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    delta: int
    stock: int
    reservation_id: str
    change_time: _timestamp_pb2.Timestamp
    def __init__(self, product_id: _Optional[str] = ..., delta: _Optional[int] = ..., stock: _Optional[int] = ..., reservation_id: _Optional[str] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
