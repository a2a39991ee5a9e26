"""A Ray address where no cluster answers is refused at once: ``ray.init`` retries it for ever."""

from __future__ import annotations

import socket

import pytest

from components.training.ray_runtime import check_reachable


def test_an_address_that_accepts_connections_passes_one_that_refuses_them_is_named():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        check_reachable(f"127.0.0.1:{port}")
        check_reachable(f"ray://127.0.0.1:{port}")  # Ray Client's address: the same probe
    with pytest.raises(ConnectionError, match=rf"no Ray cluster answers at 127.0.0.1:{port} \("):
        check_reachable(f"127.0.0.1:{port}")  # the server closed: nothing listens there


def test_addresses_without_a_port_or_of_another_scheme_are_left_to_ray():
    for address in ("auto", "local", "http://127.0.0.1:1"):
        check_reachable(address)  # no probe: Ray resolves them itself
