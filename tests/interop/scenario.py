#!/usr/bin/env python3
"""One interop scenario: the official MCP Python SDK as a client, over one transport.

Runs every step of one suite against one endpoint and prints one line per step:
    PASS <label> <step>
    FAIL <label> <step>: <what was sent, what came back>
Exit status: 0 all passed, 1 some step failed, 2 the scenario itself crashed.

Works with the SDK 1.x and 2.x: it only uses the ClientSession methods both
have, builds SDK objects from wire-format dicts, and watches the raw JSON-RPC
traffic through a tap between the transport and the session. The tap is how
steps see notifications (progress, log, list_changed, resources/updated), how
the multi-client suite catches messages meant for another client, and how the
cancellation step sends a request of its own and checks that no late reply
for its id ever arrives.

Suites:
    everything   every step, against @modelcontextprotocol/server-everything
    time         the steps that apply to mcp-server-time
    multi        the subset run by several clients at once, each with its own
                 nonce in every payload (--others lists the other nonces)
"""

import argparse
import base64
import json
import os
import sys
import time
import traceback
from contextlib import AsyncExitStack
from importlib.metadata import version as pkg_version

import warnings

import anyio
import mcp.types as types
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage

SDK_VERSION = pkg_version("mcp")
# The 2.x SDK flags 2025-era features (logging, subscribe) as deprecated for 2026-07-28;
# this suite speaks 2025-11-25 on purpose.
warnings.filterwarnings("ignore", message=".*deprecated as of|.*removed as of")

# A step that has not finished in this long has failed; nothing in the suites
# needs more than a few seconds on a healthy path.
STEP_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 30.0
# The slow call in the cancellation step runs this long if not cancelled; the
# step then watches for a late reply until well after that.
SLOW_CALL_S = 4
LATE_REPLY_WATCH_S = SLOW_CALL_S + 2.0
BIG_ECHO_BYTES = 256 * 1024
PARALLEL_CALLS = 20
ROOT_URI = "file:///tmp/interop-root"

if hasattr(types, "jsonrpc_message_adapter"):  # SDK 2.x

    def to_message(d):
        return types.jsonrpc_message_adapter.validate_python(d)

else:  # SDK 1.x

    def to_message(d):
        return types.JSONRPCMessage.model_validate(d)


def wire(model):
    """The wire-format dict of an SDK object (camelCase keys, JSON types)."""
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


def short(value, limit=300):
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


class StepFail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise StepFail(msg)


class Tap:
    """Every raw message in both directions, and the ones we swallow.

    Responses to requests we injected ourselves (and progress for their
    tokens) never reach the SDK session, which knows nothing of them.
    """

    def __init__(self):
        self.inbound = []  # (monotonic time, dict)
        self.outbound = []
        self.transport_errors = []
        self.swallow_ids = set()
        self.swallow_tokens = set()
        self._changed = anyio.Event()
        self.closed = False

    def _poke(self):
        ev, self._changed = self._changed, anyio.Event()
        ev.set()

    async def wait_for(self, pred, what, timeout=STEP_TIMEOUT_S, since=0):
        """The first inbound message at index >= since that satisfies pred."""
        try:
            with anyio.fail_after(timeout):
                while True:
                    for _, msg in self.inbound[since:]:
                        if pred(msg):
                            return msg
                    if self.closed:
                        raise StepFail(f"connection closed while waiting for {what}")
                    await self._changed.wait()
        except TimeoutError:
            raise StepFail(f"no {what} within {timeout:.0f}s") from None

    async def pump_in(self, src, dst):
        try:
            async for item in src:
                if isinstance(item, Exception):
                    self.transport_errors.append(item)
                    await dst.send(item)
                    continue
                msg = wire(item.message)
                self.inbound.append((time.monotonic(), msg))
                self._poke()
                if "method" not in msg and msg.get("id") in self.swallow_ids:
                    continue
                if (
                    msg.get("method") == "notifications/progress"
                    and (msg.get("params") or {}).get("progressToken") in self.swallow_tokens
                ):
                    continue
                await dst.send(item)
        finally:
            self.closed = True
            self._poke()
            await dst.aclose()

    async def pump_out(self, src, dst):
        async for item in src:
            self.outbound.append(wire(item.message))
            await dst.send(item)


class Scenario:
    def __init__(self, args):
        self.args = args
        self.label = args.label
        self.nonce = args.nonce
        self.others = [o for o in args.others.split(",") if o]
        self.tap = Tap()
        self.session = None
        self.write = None
        self.passed = 0
        self.failed = 0
        self.dead_after = None
        self.sampling_requests = []
        self.elicitation_requests = []
        self.roots_requests = 0
        self.progress = {}
        self.all_reported = False
        self.steps_done_at = None

    def out(self, line):
        print(line, flush=True)

    async def step(self, name, fn, timeout=STEP_TIMEOUT_S):
        if self.dead_after is not None:
            self.failed += 1
            self.out(f"FAIL {self.label} {name}: not run, the session stopped answering after {self.dead_after}")
            return
        t0 = time.monotonic()
        out0 = len(self.tap.outbound)
        try:
            with anyio.fail_after(timeout):
                detail = await fn()
            self.passed += 1
            took = time.monotonic() - t0
            # Slow steps show their time: a path that drags is worth a look.
            slow = f" [{took:.1f}s]" if took >= 2 else ""
            self.out(f"PASS {self.label} {name}" + (f" ({detail})" if detail else "") + slow)
        except BaseException as exc:  # noqa: BLE001 - a step reports, never crashes the run
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            self.failed += 1
            self.out(f"FAIL {self.label} {name}: {describe(exc)}{self.unanswered(out0)}")
            if os.environ.get("INTEROP_DEBUG"):
                traceback.print_exc()
            await self.still_alive(name)

    def unanswered(self, out0):
        """Which requests sent during a failed step never got a reply on the wire:
        tells a lost reply (proxy, server) from a reply the SDK mishandled."""
        answered = {m.get("id") for _, m in self.tap.inbound if "method" not in m}
        sent = [m for m in self.tap.outbound[out0:] if "method" in m and "id" in m]
        lost = [m for m in sent if m["id"] not in answered]
        if not sent:
            return ""
        if not lost:
            return f"; all {len(sent)} requests of this step got a reply on the wire"
        desc = ", ".join(f"{m['id']!r} {m['method']} {short((m.get('params') or {}).get('arguments', ''), 60)}" for m in lost[:6])
        return f"; {len(lost)} of {len(sent)} requests of this step got no reply on the wire: {desc}"

    async def still_alive(self, after):
        try:
            with anyio.fail_after(5):
                await self.session.send_ping()
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            self.dead_after = f"{after} (ping: {describe(exc)})"

    # ---- client-side callbacks (server -> client requests) ----

    async def on_sampling(self, context, params):
        p = wire(params)
        self.sampling_requests.append(p)
        return types.CreateMessageResult.model_validate(
            {
                "role": "assistant",
                "content": {"type": "text", "text": f"sampled[{self.nonce}] ünïcödé"},
                "model": "interop-model",
                "stopReason": "endTurn",
            }
        )

    async def on_elicitation(self, context, params):
        self.elicitation_requests.append(wire(params))
        return types.ElicitResult.model_validate(
            {"action": "accept", "content": {"name": f"Zoë {self.nonce}", "check": True}}
        )

    async def on_roots(self, context):
        self.roots_requests += 1
        return types.ListRootsResult.model_validate({"roots": [{"uri": ROOT_URI, "name": "interop-root"}]})

    async def on_log(self, params):
        pass

    async def on_message(self, message):
        pass

    # ---- connection ----

    async def connect(self, stack):
        a = self.args
        if a.transport == "sse":
            streams = await stack.enter_async_context(sse_client(a.url, timeout=10, sse_read_timeout=120))
        elif a.transport == "http":
            streams = await stack.enter_async_context(streamable_http_client(a.url))
        elif a.transport == "stdio":
            errlog = open(a.errlog, "a") if a.errlog else sys.stderr
            stack.callback(lambda: errlog is not sys.stderr and errlog.close())
            params = StdioServerParameters(command=a.cmd[0], args=a.cmd[1:], env=dict(os.environ))
            streams = await stack.enter_async_context(stdio_client(params, errlog=errlog))
        else:
            raise SystemExit(f"unknown transport {a.transport}")
        read, write = streams[0], streams[1]
        self.write = write
        in_send, in_recv = anyio.create_memory_object_stream(1000)
        out_send, out_recv = anyio.create_memory_object_stream(1000)
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)
        tg.start_soon(self.tap.pump_in, read, in_send)
        tg.start_soon(self.tap.pump_out, out_recv, write)
        self.session = await stack.enter_async_context(
            ClientSession(
                in_recv,
                out_send,
                sampling_callback=self.on_sampling,
                elicitation_callback=self.on_elicitation,
                list_roots_callback=self.on_roots,
                logging_callback=self.on_log,
                message_handler=self.on_message,
                client_info=types.Implementation.model_validate({"name": f"interop-{self.nonce}", "version": "1.0"}),
            )
        )

    async def inject(self, msg):
        """Send a raw message the SDK session knows nothing about."""
        self.tap.outbound.append(msg)
        await self.write.send(SessionMessage(message=to_message(msg)))

    # ---- helpers ----

    async def call(self, name, arguments=None, **kw):
        res = await self.session.call_tool(name, arguments or {}, **kw)
        return wire(res)

    def texts(self, result):
        return [c.get("text", "") for c in result.get("content", []) if c.get("type") == "text"]

    async def echo(self, message):
        res = await self.call("echo", {"message": message})
        check(not res.get("isError"), f"echo returned isError: {short(res)}")
        got = "".join(self.texts(res))
        want = "Echo: " + message
        if got != want:
            i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
            raise StepFail(
                f"echo of {len(message)} chars came back changed: sent {short(want[max(0, i - 20):i + 40])!r}, "
                f"got {short(got[max(0, i - 20):i + 40])!r} (first difference at char {i}, lengths {len(want)}/{len(got)})"
            )

    # ---- steps: server-everything ----

    async def s_initialize(self):
        res = self.init_result
        info = res.get("serverInfo", {})
        check(info.get("name"), f"initialize result has no serverInfo.name: {short(res)}")
        caps = res.get("capabilities", {})
        summary = {k: res.get(k) for k in ("serverInfo", "capabilities", "instructions")}
        if self.args.init_out:
            with open(self.args.init_out, "w") as f:
                json.dump(summary, f, indent=1, sort_keys=True)
        if self.args.init_expect:
            with open(self.args.init_expect) as f:
                want = json.load(f)
            for key in ("serverInfo", "capabilities", "instructions"):
                check(
                    summary.get(key) == want.get(key),
                    f"initialize {key} differs from the server's own: want {short(want.get(key))}, got {short(summary.get(key))}",
                )
        if self.args.suite in ("everything", "multi"):
            check(info.get("name") == "mcp-servers/everything", f"serverInfo.name {info.get('name')!r}")
            for cap in ("tools", "prompts", "resources", "logging"):
                check(cap in caps, f"capability {cap} missing: {short(caps)}")
            check(caps["resources"].get("subscribe") is True, f"resources.subscribe not passed through: {short(caps)}")
        return f"{info.get('name')} {info.get('version')}, protocol {res.get('protocolVersion')}"

    EVERYTHING_TOOLS = {
        "echo",
        "get-sum",
        "get-tiny-image",
        "get-structured-content",
        "trigger-long-running-operation",
        "toggle-simulated-logging",
        "toggle-subscriber-updates",
        "gzip-file-as-resource",
        "trigger-sampling-request",
        "trigger-elicitation-request",
        "get-roots-list",
    }

    async def s_tools_list(self):
        res = wire(await self.session.list_tools())
        names = {t["name"] for t in res.get("tools", [])}
        want = self.EVERYTHING_TOOLS if self.args.suite != "time" else {"get_current_time", "convert_time"}
        missing = want - names
        check(not missing, f"tools/list lacks {sorted(missing)}; got {sorted(names)}")
        return f"{len(names)} tools"

    UNICODE_TEXT = (
        "nonce {nonce}: line1\nline2\r\nCRLF\rCR\u2028LS\u2029PS \u0000nul-escaped "
        "😀🎉👩‍👩‍👧 Zoë Ñandú 日本語 \ndata: {{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{}}}}\n\n"
        "event: message\nid: 7\nretry: 1\n: comment\n\\n \\u2028 \" ' </script> end"
    )

    async def s_echo_unicode(self):
        await self.echo(self.UNICODE_TEXT.format(nonce=self.nonce))

    async def s_echo_big(self):
        unit = f"{self.nonce} 0123456789abcdef ü€😀\n"
        text = (unit * (BIG_ECHO_BYTES // len(unit.encode()) + 1))
        text = text.encode()[:BIG_ECHO_BYTES].decode(errors="ignore")
        await self.echo(text)
        return f"{len(text.encode())} bytes"

    async def s_parallel(self):
        results = {}

        async def one(i):
            msg = f"parallel {i} {self.nonce}"
            res = await self.call("echo", {"message": msg})
            results[i] = (msg, "".join(self.texts(res)))

        async with anyio.create_task_group() as tg:
            for i in range(PARALLEL_CALLS):
                tg.start_soon(one, i)
        bad = [(i, m, g) for i, (m, g) in results.items() if g != "Echo: " + m]
        check(len(results) == PARALLEL_CALLS, f"only {len(results)} of {PARALLEL_CALLS} answered")
        check(not bad, f"{len(bad)} replies crossed: e.g. call {bad[0][0] if bad else ''} got {bad[0][2] if bad else ''!r}")
        return f"{PARALLEL_CALLS} calls"

    async def s_structured(self):
        res = await self.call("get-structured-content", {"location": "Chicago"})
        sc = res.get("structuredContent")
        check(isinstance(sc, dict), f"no structuredContent: {short(res)}")
        for k in ("temperature", "conditions", "humidity"):
            check(k in sc, f"structuredContent lacks {k}: {short(sc)}")
        return short(sc, 80)

    async def s_image(self):
        res = await self.call("get-tiny-image")
        imgs = [c for c in res.get("content", []) if c.get("type") == "image"]
        check(imgs, f"no image content: {short(res)}")
        check(imgs[0].get("mimeType") == "image/png", f"mimeType {imgs[0].get('mimeType')!r}")
        raw = base64.b64decode(imgs[0]["data"])
        check(raw.startswith(b"\x89PNG\r\n\x1a\n"), f"image data is not a PNG: {raw[:16]!r}")
        return f"{len(raw)} byte PNG"

    async def s_unknown_tool(self):
        name = f"no-such-tool-{self.nonce}"
        before = len(self.tap.outbound)
        try:
            res = await self.call(name, {})
        except Exception as exc:  # a JSON-RPC error is a valid answer
            sent = [m for m in self.tap.outbound[before:] if m.get("method") == "tools/call"]
            check(sent, f"the SDK refused locally without sending: {describe(exc)}")
            return f"error: {short(describe(exc), 100)}"
        check(res.get("isError") is True, f"unknown tool did not fail: {short(res)}")
        check(name in " ".join(self.texts(res)), f"error does not name the tool: {short(res)}")
        return "isError result"

    async def s_progress(self, steps=5, duration=1):
        seen = []

        async def cb(progress, total, message=None):
            seen.append((progress, total))

        res = await self.call(
            "trigger-long-running-operation", {"duration": duration, "steps": steps}, progress_callback=cb
        )
        check("completed" in " ".join(self.texts(res)), f"unexpected result {short(res)}")
        progress = [p for p, _ in seen]
        check(len(seen) == steps, f"{len(seen)} progress notifications, want exactly {steps}: {seen}")
        check(all(b > a for a, b in zip(progress, progress[1:])), f"progress not monotonic: {progress}")
        check(all(t == steps for _, t in seen), f"total not {steps}: {seen}")
        return f"{steps} notifications"

    async def s_sampling(self):
        before = len(self.sampling_requests)
        res = await self.call("trigger-sampling-request", {"prompt": f"hello {self.nonce}", "maxTokens": 16})
        check(len(self.sampling_requests) > before, f"no sampling/createMessage reached the client; result {short(res)}")
        req = self.sampling_requests[-1]
        check(self.nonce in json.dumps(req, ensure_ascii=False), f"sampling request lacks our prompt: {short(req)}")
        text = " ".join(self.texts(res))
        check(f"sampled[{self.nonce}]" in text, f"tool result lacks our sampling answer: {short(res)}")

    async def s_elicitation(self):
        before = len(self.elicitation_requests)
        res = await self.call("trigger-elicitation-request", {})
        check(len(self.elicitation_requests) > before, f"no elicitation/create reached the client; result {short(res)}")
        text = " ".join(self.texts(res))
        check(f"Zoë {self.nonce}" in text, f"tool result lacks our elicitation answer: {short(res)}")

    async def s_roots(self):
        res = await self.call("get-roots-list", {})
        text = " ".join(self.texts(res))
        check(ROOT_URI in text, f"server does not report our root {ROOT_URI}: {short(res)} (roots/list requests seen: {self.roots_requests})")
        return f"{self.roots_requests} roots/list requests"

    async def s_resources(self):
        res = wire(await self.session.list_resources())
        uris = [r["uri"] for r in res.get("resources", [])]
        check(any(u.startswith("demo://resource/") for u in uris), f"resources/list: {short(res)}")
        tpl = wire(await self.session.list_resource_templates())
        tpls = [t["uriTemplate"] for t in tpl.get("resourceTemplates", [])]
        check("demo://resource/dynamic/text/{resourceId}" in tpls, f"resources/templates/list: {tpls}")
        rd = wire(await self.session.read_resource("demo://resource/dynamic/text/7"))
        contents = rd.get("contents", [])
        check(contents and contents[0].get("uri") == "demo://resource/dynamic/text/7", f"resources/read: {short(rd)}")
        check(contents[0].get("text"), f"resources/read has no text: {short(rd)}")
        return f"{len(uris)} resources, {len(tpls)} templates"

    async def s_prompts(self):
        res = wire(await self.session.list_prompts())
        names = {p["name"] for p in res.get("prompts", [])}
        check({"simple-prompt", "args-prompt", "completable-prompt"} <= names, f"prompts/list: {sorted(names)}")
        city = f"Zürich {self.nonce}"
        got = wire(await self.session.get_prompt("args-prompt", {"city": city}))
        text = json.dumps(got, ensure_ascii=False)
        check(city in text, f"prompts/get lacks the argument {city!r}: {short(got)}")
        return f"{len(names)} prompts"

    async def s_completion(self):
        ref = types.PromptReference.model_validate({"type": "ref/prompt", "name": "completable-prompt"})
        res = wire(await self.session.complete(ref, {"name": "department", "value": "Eng"}))
        values = res.get("completion", {}).get("values", [])
        check(values == ["Engineering"], f"completion values {values}")
        res = wire(
            await self.session.complete(ref, {"name": "name", "value": ""}, context_arguments={"department": "Sales"})
        )
        values = res.get("completion", {}).get("values", [])
        check(values == ["David", "Eve", "Frank"], f"completion with context: {values}")

    async def s_logging(self):
        await self.session.set_logging_level("debug")
        since = len(self.tap.inbound)
        await self.call("toggle-simulated-logging", {})
        try:
            msg = await self.tap.wait_for(
                lambda m: m.get("method") == "notifications/message", "notifications/message after setLevel", since=since
            )
        finally:
            await self.call("toggle-simulated-logging", {})  # stop it again
        return f"level {msg['params'].get('level')}"

    async def s_subscribe(self):
        uri = "demo://resource/dynamic/text/3"
        await self.session.subscribe_resource(uri)
        since = len(self.tap.inbound)
        await self.call("toggle-subscriber-updates", {})
        try:
            await self.tap.wait_for(
                lambda m: m.get("method") == "notifications/resources/updated" and m["params"].get("uri") == uri,
                f"notifications/resources/updated for {uri}",
                since=since,
            )
        finally:
            await self.call("toggle-subscriber-updates", {})
            await self.session.unsubscribe_resource(uri)

    async def s_list_changed(self):
        since = len(self.tap.inbound)
        data = "data:text/plain;base64," + base64.b64encode(f"interop {self.nonce}\n".encode()).decode()
        res = await self.call(
            "gzip-file-as-resource", {"name": f"interop-{self.nonce}.gz", "data": data, "outputType": "resourceLink"}
        )
        check(not res.get("isError"), f"gzip-file-as-resource failed: {short(res)}")
        await self.tap.wait_for(
            lambda m: m.get("method") == "notifications/resources/list_changed",
            "notifications/resources/list_changed",
            since=since,
        )
        listed = wire(await self.session.list_resources())
        check(
            any(self.nonce in r["uri"] for r in listed.get("resources", [])),
            f"new session resource not listed: {short(listed)}",
        )

    async def s_ping(self):
        res = await self.session.send_ping()
        check(wire(res) in ({}, {"_meta": {}}), f"ping result {short(wire(res))}")

    async def s_cancel(self):
        rid = f"cancel-{self.nonce}"
        token = f"cancel-token-{self.nonce}"
        self.tap.swallow_ids.add(rid)
        self.tap.swallow_tokens.add(token)
        since = len(self.tap.inbound)
        started = time.monotonic()
        await self.inject(
            {
                "jsonrpc": "2.0",
                "id": rid,
                "method": "tools/call",
                "params": {
                    "name": "trigger-long-running-operation",
                    "arguments": {"duration": SLOW_CALL_S, "steps": SLOW_CALL_S * 2},
                    "_meta": {"progressToken": token},
                },
            }
        )
        await self.tap.wait_for(
            lambda m: m.get("method") == "notifications/progress" and m["params"].get("progressToken") == token,
            f"first progress of the slow call (id {rid!r})",
            since=since,
        )
        await self.inject(
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": rid, "reason": "interop"}}
        )
        await self.echo(f"after cancel {self.nonce}")
        await self.session.send_ping()
        late = None
        while time.monotonic() - started < LATE_REPLY_WATCH_S:
            late = next((m for _, m in self.tap.inbound[since:] if "method" not in m and m.get("id") == rid), None)
            if late:
                break
            await anyio.sleep(0.2)
        check(late is None, f"a reply for the cancelled id {rid!r} arrived: {short(late)}")
        await self.echo(f"still usable {self.nonce}")

    # ---- steps: mcp-server-time ----

    async def s_time_now(self):
        res = await self.call("get_current_time", {"timezone": "Europe/Zurich"})
        check(not res.get("isError"), f"get_current_time failed: {short(res)}")
        blob = json.dumps(res)
        check("Europe/Zurich" in blob, f"result does not name the timezone: {short(res)}")
        return short(res.get("structuredContent") or self.texts(res), 100)

    async def s_time_convert(self):
        res = await self.call(
            "convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
        )
        check(not res.get("isError"), f"convert_time failed: {short(res)}")
        check("21:00" in json.dumps(res), f"12:00 UTC is not 21:00 in Tokyo here: {short(res)}")

    async def s_time_bad_zone(self):
        try:
            res = await self.call("get_current_time", {"timezone": f"Nowhere/{self.nonce}"})
        except Exception as exc:
            return f"error: {short(describe(exc), 100)}"
        check(res.get("isError") is True, f"bad timezone accepted: {short(res)}")

    async def s_time_parallel(self):
        zones = ["UTC", "Europe/Zurich", "Asia/Tokyo", "America/New_York", "Australia/Sydney"]
        results = {}

        async def one(i):
            z = zones[i % len(zones)]
            res = await self.call("get_current_time", {"timezone": z})
            results[i] = (z, json.dumps(res))

        async with anyio.create_task_group() as tg:
            for i in range(PARALLEL_CALLS):
                tg.start_soon(one, i)
        bad = [(i, z) for i, (z, r) in results.items() if f'"{z}"' not in r and z not in r]
        check(len(results) == PARALLEL_CALLS and not bad, f"crossed or missing replies: {bad}")
        return f"{PARALLEL_CALLS} calls"

    # ---- steps: multi-client ----

    async def s_multi_echo(self):
        async def one(i):
            await self.echo(f"multi {i} {self.nonce} ü😀\n")

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(one, i)

    async def s_multi_mixed(self):
        """Progress notifications and replies interleaved with the other clients' traffic."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: self.s_progress(steps=6, duration=1))
            for i in range(10):
                tg.start_soon(self.echo, f"mixed {i} {self.nonce}")

    async def s_multi_sum(self):
        a = int(self.nonce[:6], 16)
        res = await self.call("get-sum", {"a": a, "b": 1})
        check(str(a + 1) in " ".join(self.texts(res)), f"get-sum({a}, 1): {short(res)}")

    async def s_no_crosstalk(self):
        sent_ids = {m.get("id") for m in self.tap.outbound if "method" in m and "id" in m}
        problems = []
        for _, m in self.tap.inbound:
            text = json.dumps(m, ensure_ascii=False)
            for other in self.others:
                if other in text:
                    problems.append(f"message carrying another client's nonce {other}: {short(m, 200)}")
            if "method" not in m and m.get("id") not in sent_ids:
                problems.append(f"reply for an id we never sent: {short(m, 200)}")
        check(not problems, f"{len(problems)} misrouted: " + " | ".join(problems[:3]))
        return f"{len(self.tap.inbound)} messages checked against {len(self.others)} other nonces"

    def plan(self):
        steps = self.full_plan()
        if self.args.steps:
            wanted = self.args.steps.split(",")
            steps = [(n, f) for n, f in steps if n in wanted]
        return steps

    def full_plan(self):
        s = self.args.suite
        if s == "everything":
            return [
                ("initialize.LC-02", self.s_initialize),
                ("tools-list", self.s_tools_list),
                ("echo-unicode.ST-02", self.s_echo_unicode),
                ("echo-256KiB.RL-13", self.s_echo_big),
                ("parallel-20.RL-03", self.s_parallel),
                ("structured-content", self.s_structured),
                ("image", self.s_image),
                ("unknown-tool", self.s_unknown_tool),
                ("progress.LC-50", self.s_progress),
                ("sampling.LC-60", self.s_sampling),
                ("elicitation.LC-60", self.s_elicitation),
                ("roots.LC-60", self.s_roots),
                ("resources", self.s_resources),
                ("prompts", self.s_prompts),
                ("completion", self.s_completion),
                ("logging", self.s_logging),
                ("subscribe-updated", self.s_subscribe),
                ("list-changed", self.s_list_changed),
                ("ping.LC-30", self.s_ping),
                ("cancel.LC-40", self.s_cancel),
            ]
        if s == "time":
            return [
                ("initialize.LC-02", self.s_initialize),
                ("tools-list", self.s_tools_list),
                ("get-current-time", self.s_time_now),
                ("convert-time", self.s_time_convert),
                ("bad-timezone", self.s_time_bad_zone),
                ("unknown-tool", self.s_unknown_tool),
                ("parallel-20.RL-03", self.s_time_parallel),
                ("ping.LC-30", self.s_ping),
            ]
        if s == "multi":
            return [
                ("initialize.LC-02", self.s_initialize),
                ("echo-x10", self.s_multi_echo),
                ("sum", self.s_multi_sum),
                ("progress.LC-50", lambda: self.s_progress(steps=4, duration=1)),
                ("progress-with-echo-x10", self.s_multi_mixed),
                ("ping.LC-30", self.s_ping),
                ("echo-256KiB.RL-13", self.s_echo_big),
                ("no-crosstalk.SH-31", self.s_no_crosstalk),
            ]
        raise SystemExit(f"unknown suite {s}")

    async def run(self):
        async with AsyncExitStack() as stack:
            try:
                # Transports bound their own connect; a cancel scope must not
                # wrap the context managers the stack keeps open.
                await self.connect(stack)
                with anyio.fail_after(CONNECT_TIMEOUT_S):
                    self.init_result = wire(await self.session.initialize())
            except BaseException as exc:  # noqa: BLE001
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                why = describe(exc)
                if self.args.transport == "stdio" and self.args.errlog and os.path.exists(self.args.errlog):
                    with open(self.args.errlog, errors="replace") as f:
                        why += f"; stderr of {os.path.basename(self.args.cmd[0])}: {short(f.read()[-600:].strip(), 600)!r}"
                for i, (name, _) in enumerate(self.plan()):
                    self.failed += 1
                    if i == 0:
                        self.out(f"FAIL {self.label} {name}: connect/initialize failed: {why}")
                    else:
                        self.out(f"FAIL {self.label} {name}: not run, connect/initialize failed")
                self.all_reported = True
                return
            for name, fn in self.plan():
                await self.step(name, fn)
            if self.tap.transport_errors:
                self.out(f"# {self.label}: transport errors seen: {[describe(e) for e in self.tap.transport_errors[:3]]}")
            self.all_reported = True
            self.steps_done_at = time.monotonic()


def describe(exc):
    if isinstance(exc, BaseExceptionGroup):
        return " / ".join(describe(e) for e in exc.exceptions[:3])
    name = type(exc).__name__
    text = str(exc) or repr(exc)
    err = getattr(exc, "error", None)
    if err is not None and hasattr(err, "code"):
        text = f"JSON-RPC error {err.code}: {err.message}"
    return f"{name}: {short(text, 400)}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", required=True, help="name of the path, printed on every line")
    ap.add_argument("--transport", choices=["sse", "http", "stdio"], required=True)
    ap.add_argument("--url", help="endpoint for sse/http")
    ap.add_argument("--errlog", help="file for the stdio child's stderr")
    ap.add_argument("--suite", choices=["everything", "time", "multi"], default="everything")
    ap.add_argument("--nonce", default=os.urandom(8).hex())
    ap.add_argument("--others", default="", help="comma-separated nonces of the other clients (multi)")
    ap.add_argument("--init-out", help="write serverInfo/capabilities/instructions here")
    ap.add_argument("--init-expect", help="compare serverInfo/capabilities/instructions with this file")
    ap.add_argument("--steps", help="comma-separated step names: run only these")
    ap.add_argument("cmd", nargs="*", help="stdio: the command to spawn")
    args = ap.parse_args()
    sc = Scenario(args)
    try:
        anyio.run(sc.run)
        if sc.steps_done_at is not None and time.monotonic() - sc.steps_done_at >= 2:
            print(f"# {args.label}: closing the connection took {time.monotonic() - sc.steps_done_at:.1f}s", flush=True)
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        if sc.all_reported:
            # Every step has its line; an error while closing the transport
            # (the peer already gone) is worth a note, not a crash.
            print(f"# {args.label}: error while closing: {describe(exc)}", flush=True)
            sys.exit(0 if sc.failed == 0 and sc.passed > 0 else 1)
        print(f"# {args.label}: scenario crashed: {describe(exc)}", flush=True)
        traceback.print_exc()
        sys.exit(2)
    sys.exit(0 if sc.failed == 0 and sc.passed > 0 else 1)


if __name__ == "__main__":
    main()
