"""The control endpoint: live counters and policy changes over HTTP, on loopback only.

What Toxiproxy's users ask of it, for a throttling proxy:

``GET /stats``
    The counters (flows, open flows, throttled, reset and blackholed flows, bytes up and
    down per device class; timeouts, refusals and resets), the emulated moment and the
    device's flow table size, as JSON.
``GET /policy``
    The policy in force at the emulated moment: each policy's rules, action and the
    classes it covers, and which network each class is in.
``PUT /policy``
    Change the policy while running. The body is either

    - a scenario as TOML (``Content-Type: application/toml`` or any body that is not a
      JSON object): it replaces the scenario and clears earlier overrides; or
    - a JSON object of overrides, ``{"policies[0].action.rate": "1mbit"}``, the keys and
      values of ``--set`` (values may be JSON strings, numbers, booleans, arrays or
      objects). Overrides add up: each PUT applies on top of the earlier ones. The key
      ``"at"`` moves the emulated moment (``"2021-03-12T00:00:00Z"`` or ``"5d"``).

    A bad body changes nothing and answers 400 with one line per problem. Connections
    already classified keep their decision; new connections see the new policy.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import tomllib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from aiohttp import web

from throttle_lab.emu.proxy._clock import parse_moment
from throttle_lab.emu.proxy._config import is_loopback
from throttle_lab.emu.proxy._server import ThrottlingProxy
from throttle_lab.errors import ProxyError, ThrottleLabError
from throttle_lab.scenario import Scenario, format_key, read_toml

__all__ = ["ControlEndpoint", "PolicyEditor", "open_control"]

_MAX_BODY_BYTES = 1 << 20


def _toml_literal(value: Any) -> str:
    """A JSON value as a TOML value, for ``KEY=VALUE`` overrides."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ProxyError(f"{value!r} is not a number a scenario can hold")
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{format_key([str(k)])} = {_toml_literal(v)}" for k, v in value.items())
        return "{ " + ", ".join(items) + " }"
    raise ProxyError(f"{value!r}: expected a string, number, boolean, array or object")


class PolicyEditor:
    """The scenario document as loaded, plus the overrides applied since."""

    def __init__(
        self, raw: Mapping[str, Any], *, source: str, overrides: Sequence[str] = ()
    ) -> None:
        self.raw = dict(raw)
        self.source = source
        self.overrides = list(overrides)

    @classmethod
    def from_file(cls, path: str, overrides: Sequence[str] = ()) -> PolicyEditor:
        return cls(read_toml(path), source=path, overrides=overrides)

    def scenario(self) -> Scenario:
        return Scenario.from_dict(self.raw, source=self.source, overrides=self.overrides)

    def with_overrides(self, mapping: Mapping[str, Any]) -> tuple[Scenario, list[str]]:
        """The scenario with more overrides (not yet kept: see :meth:`keep`)."""
        added = [f"{key}={_toml_literal(value)}" for key, value in mapping.items()]
        overrides = [*self.overrides, *added]
        return Scenario.from_dict(self.raw, source=self.source, overrides=overrides), overrides

    def replaced(self, text: str, source: str) -> tuple[Scenario, dict[str, Any]]:
        scenario = Scenario.from_toml(text, source=source)  # one line per problem
        return scenario, tomllib.loads(text)


class ControlEndpoint:
    """An aiohttp app serving the routes of the module docstring for one proxy."""

    def __init__(self, proxy: ThrottlingProxy, editor: PolicyEditor) -> None:
        self.proxy = proxy
        self.editor = editor
        self.app = web.Application(client_max_size=_MAX_BODY_BYTES)
        self.app.router.add_get("/stats", self._stats)
        self.app.router.add_get("/policy", self._get_policy)
        self.app.router.add_put("/policy", self._put_policy)
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] = ("", 0)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if not is_loopback(host):
            raise ProxyError(f"the control endpoint listens on loopback only, not {host!r}")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as error:
            sock.close()
            raise ProxyError(f"control endpoint: cannot listen on {host}:{port}: {error}") from None
        self.address = (host, int(sock.getsockname()[1]))
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.proxy.stats())

    async def _get_policy(self, request: web.Request) -> web.Response:
        body = self.proxy.describe_policy()
        body["overrides"] = self.editor.overrides
        return web.json_response(body)

    async def _put_policy(self, request: web.Request) -> web.Response:
        text = await request.text()
        try:
            body = self._apply(text, request.content_type)
        except ThrottleLabError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response(body)

    def _apply(self, text: str, content_type: str) -> dict[str, Any]:
        parsed: Any = None
        if content_type != "application/toml":
            with contextlib.suppress(ValueError):
                parsed = json.loads(text)
        if isinstance(parsed, dict):
            changes = dict(parsed)
            at = changes.pop("at", None)
            scenario, overrides = self.editor.with_overrides(changes)
            at_s = None if at is None else parse_moment(scenario, str(at))
            self.proxy.set_scenario(scenario, at_s=at_s)
            self.editor.overrides = overrides
        else:
            scenario, raw = self.editor.replaced(text, "PUT /policy")
            self.proxy.set_scenario(scenario)
            self.editor.raw, self.editor.source, self.editor.overrides = raw, "PUT /policy", []
        body = self.proxy.describe_policy()
        body["overrides"] = self.editor.overrides
        return body


@contextlib.asynccontextmanager
async def open_control(
    proxy: ThrottlingProxy, editor: PolicyEditor, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[ControlEndpoint]:
    """Serve the control endpoint for ``proxy`` on loopback while the block runs."""
    endpoint = ControlEndpoint(proxy, editor)
    await endpoint.start(host, port)
    try:
        yield endpoint
    finally:
        await endpoint.close()
