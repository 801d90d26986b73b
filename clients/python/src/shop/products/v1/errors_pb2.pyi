from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class ReservationRefusal(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVATION_REFUSAL_UNSPECIFIED: _ClassVar[ReservationRefusal]
    RESERVATION_REFUSAL_RELEASED: _ClassVar[ReservationRefusal]
    RESERVATION_REFUSAL_OTHER_ITEMS: _ClassVar[ReservationRefusal]
RESERVATION_REFUSAL_UNSPECIFIED: ReservationRefusal
RESERVATION_REFUSAL_RELEASED: ReservationRefusal
RESERVATION_REFUSAL_OTHER_ITEMS: ReservationRefusal
VIOLATION_TYPE_FIELD_NUMBER: _ClassVar[int]
violation_type: _descriptor.FieldDescriptor
VIOLATION_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
violation_description: _descriptor.FieldDescriptor
