"""A Python client of the kgrpc gRPC-over-Kafka wire (kafkatransport/doc.go).

Client makes unary calls, Subscriber consumes events (with retries and a
dead-letter topic), Guard seals and opens records as kafkatransport/trust does.
"""

from kgrpc.client import Client, Reply
from kgrpc.deadletter import DeadLetterError
from kgrpc.status import Code, RpcError
from kgrpc.subscriber import EventInfo, Subscriber
from kgrpc.trust import SHOP_POLICY, Guard, Keyring, NotAuthentic, Policy, UnitKey

__all__ = ["Client", "Reply", "Code", "RpcError", "Subscriber", "EventInfo", "DeadLetterError", "Guard", "Keyring", "UnitKey",
           "Policy", "SHOP_POLICY", "NotAuthentic"]
