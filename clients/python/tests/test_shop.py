"""The Python client against the Go shop (cmd/platform), as a third party would call it.

Identity: the shop's trust policy (internal/app/trust.go) has a fixed set of
units and no way to add one without Go changes, so these tests act as the
gateway unit with the gateway's key from the platform's data directory, as
cmd/kgrpc --data-dir does, and name a user in kgrpc-principal metadata after
verifying the user's token (Login) against the keyring.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import nacl.signing
import pytest
from google.rpc import error_details_pb2

from conftest import Shop
from kgrpc import Client, Code, EventInfo, Guard, Keyring, RpcError, Subscriber
from kgrpc.trust import b64decode
from shop.orders.v1 import orders_pb2
from shop.products.v1 import products_pb2
from shop.users.v1 import events_pb2 as user_events, users_pb2

LIST = "/shop.products.v1.ProductService/ListProducts"
GET = "/shop.products.v1.ProductService/GetProduct"
CREATE_USER = "/shop.users.v1.UserService/CreateUser"
LOGIN = "/shop.users.v1.UserService/Login"
GET_USER = "/shop.users.v1.UserService/GetUser"
CREATE_ORDER = "/shop.orders.v1.OrderService/CreateOrder"
WAIT = 30.0  # the longest any test waits for one thing


@pytest.fixture(scope="session")
def gateway(shop: Shop) -> Iterator[Client]:
    """A client acting as the gateway unit (its key from the data directory)."""
    with Client(shop.brokers, guard=Guard.from_dir(shop.key_dir, "gateway"), topic_prefix=shop.topic_prefix,
                default_timeout=WAIT) as c:
        yield c


def call_ready(c: Client, method: str, req: object, resp: type, **kw: object) -> object:
    """The first call of a fresh shop: its services may still be joining their groups."""
    end = time.monotonic() + WAIT
    while True:
        try:
            return c.call(method, req, resp, timeout=10, **kw)  # type: ignore[arg-type]
        except RpcError as e:
            if e.code not in (Code.DEADLINE_EXCEEDED, Code.UNAVAILABLE) or time.monotonic() > end:
                raise


def new_user(c: Client) -> tuple[users_pb2.User, str]:
    email = f"py-{uuid.uuid4().hex[:10]}@example.com"
    password = "correct horse battery"
    r = call_ready(c, CREATE_USER, users_pb2.CreateUserRequest(email=email, password=password, display_name="Py Thon"),
                   users_pb2.CreateUserResponse)
    assert isinstance(r, users_pb2.CreateUserResponse)
    return r.user, c.call(LOGIN, users_pb2.LoginRequest(email=email, password=password), users_pb2.LoginResponse).access_token


def principal(token: str, ring: Keyring) -> str:
    """The kgrpc-principal value ("<role> <token version> <user id>") of a user
    token, after checking its EdDSA signature with the keyring's usersvc key."""
    head, payload, sig = token.split(".")
    kid = json.loads(b64decode(head))["kid"]
    pk = ring.key(kid)
    assert pk is not None and pk.unit == "usersvc"
    nacl.signing.VerifyKey(pk.verify).verify(f"{head}.{payload}".encode(), b64decode(sig))
    claims = json.loads(b64decode(payload))
    return f"{claims['roles'][0]} {claims.get('ver', 0)} {claims['sub']}"


def test_list_and_get_products(gateway: Client) -> None:
    r = call_ready(gateway, LIST, products_pb2.ListProductsRequest(page_size=5), products_pb2.ListProductsResponse)
    assert isinstance(r, products_pb2.ListProductsResponse)
    assert r.products, "the demo catalog is seeded"
    first = r.products[0]
    got = gateway.call(GET, products_pb2.GetProductRequest(id=first.id), products_pb2.GetProductResponse)
    assert got.product.id == first.id and got.product.sku == first.sku and got.product.name == first.name


def test_first_call_of_a_new_client_is_answered(shop: Shop, gateway: Client) -> None:
    # The reply-partition recipe: each new client's very first call gets its reply.
    call_ready(gateway, LIST, products_pb2.ListProductsRequest(page_size=1), products_pb2.ListProductsResponse)
    guard = Guard.from_dir(shop.key_dir, "gateway")
    for _ in range(3):
        with Client(shop.brokers, guard=guard, topic_prefix=shop.topic_prefix) as c:
            r = c.call(LIST, products_pb2.ListProductsRequest(page_size=1), products_pb2.ListProductsResponse, timeout=10)
            assert len(r.products) == 1


def test_not_found(gateway: Client) -> None:
    call_ready(gateway, LIST, products_pb2.ListProductsRequest(page_size=1), products_pb2.ListProductsResponse)
    with pytest.raises(RpcError) as e:
        gateway.call(GET, products_pb2.GetProductRequest(id="no-such-product"), products_pb2.GetProductResponse)
    assert e.value.code == Code.NOT_FOUND, e.value


def test_invalid_argument_lists_every_violation(gateway: Client) -> None:
    with pytest.raises(RpcError) as e:
        call_ready(gateway, CREATE_USER, users_pb2.CreateUserRequest(email="not an email", password="short", display_name="  "),
                   users_pb2.CreateUserResponse)
    assert e.value.code == Code.INVALID_ARGUMENT, e.value
    br = e.value.detail(error_details_pb2.BadRequest)
    assert br is not None, e.value.details
    assert {v.field for v in br.field_violations} == {"email", "password", "display_name"}


def test_authenticated_call(shop: Shop, gateway: Client) -> None:
    user, token = new_user(gateway)
    who = principal(token, Keyring.load(shop.key_dir / "keyring.json"))
    got = gateway.call(GET_USER, users_pb2.GetUserRequest(id="me"), users_pb2.GetUserResponse,
                       metadata={"kgrpc-principal": who})
    assert got.user.id == user.id and got.user.email == user.email
    with pytest.raises(RpcError) as e:  # the same call without a user
        gateway.call(GET_USER, users_pb2.GetUserRequest(id="me"), users_pb2.GetUserResponse)
    assert e.value.code == Code.UNAUTHENTICATED, e.value


def test_failed_precondition_with_details(shop: Shop, gateway: Client) -> None:
    _, token = new_user(gateway)
    who = principal(token, Keyring.load(shop.key_dir / "keyring.json"))
    products = gateway.call(LIST, products_pb2.ListProductsRequest(page_size=100), products_pb2.ListProductsResponse).products
    low = [p for p in products if p.stock < 1000]
    assert low, "a demo product with less than 1000 in stock"
    p = low[0]
    with pytest.raises(RpcError) as e:
        gateway.call(CREATE_ORDER, orders_pb2.CreateOrderRequest(items=[orders_pb2.CreateOrderItem(product_id=p.id, quantity=int(p.stock) + 1)]),
                     orders_pb2.CreateOrderResponse, metadata={"kgrpc-principal": who})
    assert e.value.code == Code.FAILED_PRECONDITION, e.value
    pf = e.value.detail(error_details_pb2.PreconditionFailure)
    assert pf is not None and pf.violations, e.value.details
    assert any(p.id in v.subject or p.id in v.description for v in pf.violations), pf


def test_user_created_event(shop: Shop, gateway: Client) -> None:
    guard = Guard.from_dir(shop.key_dir, "gateway")
    seen: dict[str, tuple[user_events.UserCreated, EventInfo]] = {}
    sub = Subscriber(shop.brokers, f"py-test-{uuid.uuid4().hex[:8]}", guard=guard, topic_prefix=shop.topic_prefix)
    sub.subscribe(user_events.UserCreated, lambda ev, info: seen.__setitem__(ev.user_id, (ev, info)))
    stop = threading.Event()
    t = threading.Thread(target=sub.run, args=(stop,), daemon=True)
    t.start()
    try:
        user, _ = new_user(gateway)
        end = time.monotonic() + WAIT
        while user.id not in seen and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(10)
        sub.close()
    assert user.id in seen, "UserCreated within 30s"
    ev, info = seen[user.id]
    assert ev.email == user.email and ev.display_name == "Py Thon"
    assert info.type == "shop.users.v1.UserCreated" and info.producer == "usersvc" and info.id
    assert info.key == user.id.encode()
    assert info.topic == shop.topic_prefix + "shop.users.v1.UserCreated"
