"""Failures as outcomes: every exception a load can meet becomes one :class:`Outcome`.

Mapped once, here, for both clients (aiohttp's exception tree and the raw TLS client's
plain ``OSError``/``ssl`` errors), in the spirit of httpx mapping foreign exceptions at
the edge. The phase the load was in decides what the type alone cannot: a connection
reset during the handshake is a ``reset`` (a censor's RST looks like that), a refused or
unreachable address is a ``connect_error``, a bad certificate a ``tls_error``.
"""

from __future__ import annotations

import socket
import ssl

import aiohttp

from throttle_lab.records import Outcome

__all__ = ["classify_failure"]

_RESET_ERRORS = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


def _causes(error: BaseException) -> list[BaseException]:
    """The error, what it wraps (aiohttp's ``os_error``) and its causes, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        wrapped = getattr(current, "os_error", None)
        current = (
            wrapped
            if isinstance(wrapped, BaseException) and wrapped is not current
            else (current.__cause__ or current.__context__)
        )
    return chain


def classify_failure(error: BaseException, phase: str) -> Outcome:
    """The outcome of a load that raised ``error`` while in ``phase``.

    ``phase`` is one of ``dns``, ``connect``, ``tls``, ``request``, ``body``.
    """
    chain = _causes(error)
    if any(isinstance(e, TimeoutError) for e in chain[:1]):
        return Outcome.TIMEOUT
    if phase == "dns" or any(
        isinstance(e, aiohttp.ClientConnectorDNSError | socket.gaierror) for e in chain
    ):
        return Outcome.DNS_ERROR
    if any(isinstance(e, _RESET_ERRORS) for e in chain):
        return Outcome.RESET
    if any(isinstance(e, ssl.SSLError | ssl.CertificateError) for e in chain):
        return Outcome.TLS_ERROR
    if phase == "connect":
        return Outcome.CONNECT_ERROR
    if phase == "tls":
        return Outcome.TLS_ERROR
    if any(
        isinstance(e, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError) for e in chain
    ):
        return Outcome.RESET  # the server (or something on the path) cut the response
    if isinstance(error, aiohttp.ClientResponseError | aiohttp.ClientConnectionError):
        return Outcome.HTTP_ERROR if phase in ("request", "body") else Outcome.CONNECT_ERROR
    if any(isinstance(e, OSError) for e in chain):
        return Outcome.RESET if phase in ("request", "body") else Outcome.CONNECT_ERROR
    return Outcome.HTTP_ERROR
