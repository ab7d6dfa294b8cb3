"""Fixtures for the proxy and origin tests: a private CA, the HTTPS origin and proxies,
all on loopback (helpers such as the TLS client live in ``proxy_support``)."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from proxy_support import CLASS_MAP, ProxyFactory

from throttle_lab.emu.origin import CertificateStore, Origin, open_origin
from throttle_lab.emu.proxy import ClassMap, ProxyConfig, ThrottlingProxy, open_proxy
from throttle_lab.scenario import Scenario


@pytest.fixture(scope="session")
def certificates() -> CertificateStore:
    return CertificateStore()


@pytest.fixture
def client_context(certificates: CertificateStore) -> ssl.SSLContext:
    return certificates.client_context()


@pytest.fixture
async def origin(certificates: CertificateStore) -> AsyncIterator[Origin]:
    async with open_origin(certificates=certificates) as server:
        yield server


@pytest.fixture
def make_proxy(origin: Origin) -> ProxyFactory:
    """``async with make_proxy(scenario, **config) as proxy``: the origin by default."""

    def factory(
        loaded: Scenario,
        *,
        at_s: float | None = None,
        class_map: ClassMap = CLASS_MAP,
        **options: Any,
    ) -> contextlib.AbstractAsyncContextManager[ThrottlingProxy]:
        options.setdefault("origin", origin.address)
        return open_proxy(loaded, ProxyConfig(class_map, **options), at_s=at_s)

    return factory
