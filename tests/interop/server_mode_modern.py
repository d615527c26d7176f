#!/usr/bin/env python3
"""MCP 2026-07-28 through proxy server mode, with the Python SDK 2.x `Client`.

Prints one line per step, as scenario.py does:
    PASS <label> <step>
    FAIL <label> <step>: <what happened>
Exit status: 0 all passed, 1 some step failed, 2 the script itself crashed.

Kinds of child (--child):
    legacy    a server that cannot serve 2026-07-28 requests at all
              (server-everything on the TS SDK 1.x: the proxy's modern
              sibling of it does not list 2026-07-28 either). mode="auto"
              must fall back to the initialize handshake and work;
              mode="2026-07-28" must be refused cleanly with -32022 naming
              the handshake versions (TRANSPORTS.md RL-11, SX-42, ST-15,
              SX-41).
    dual      a server that serves 2026-07-28 through the proxy: the demo
              server, which serves both eras in one process, and a Python
              SDK 2.x stdio server, which locks each process to the era of
              its first request and so is served by the proxy's second,
              never-initialized process of it (the modern sibling).
              mode="2026-07-28" and mode="auto" must both end up modern and
              list and call tools through the proxy (RL-02..RL-04).
"""

import argparse
import sys
import traceback

import anyio
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

STEP_TIMEOUT_S = 20.0


def innermost(e):
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


class Steps:
    def __init__(self, label):
        self.label = label
        self.failed = False

    def result(self, step, ok, detail=""):
        if ok:
            print(f"PASS {self.label} {step}", flush=True)
        else:
            self.failed = True
            print(f"FAIL {self.label} {step}: {detail}", flush=True)


async def call(url, mode, tool, args):
    """Connects in `mode`, lists the tools and calls one: (version, names, text)."""
    with anyio.fail_after(STEP_TIMEOUT_S):
        async with Client(url, mode=mode) as c:
            version = c._session.protocol_version
            names = [t.name for t in (await c.list_tools()).tools]
            r = await c.call_tool(tool, args)
            text = r.content[0].text if r.content else repr(r)
            return version, names, text


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--child", choices=["legacy", "dual"], required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--args", default="{}", help="the tool's arguments, JSON")
    ap.add_argument("--expect", required=True, help="text the tool's answer contains")
    a = ap.parse_args()
    import json

    args = json.loads(a.args)
    s = Steps(a.label)
    modern = MODERN_PROTOCOL_VERSIONS[-1]

    # mode="auto": server/discover first, then whatever the answer calls for.
    try:
        version, names, text = await call(a.url, "auto", a.tool, args)
        want = MODERN_PROTOCOL_VERSIONS if a.child == "dual" else HANDSHAKE_PROTOCOL_VERSIONS
        s.result("auto.era", version in want, f"negotiated {version}, wanted one of {list(want)}")
        s.result("auto.call", a.tool in names and a.expect in text, f"tools {names}, answer {text!r}")
    except BaseException as e:  # noqa: BLE001 - every failure is a FAIL line
        e = innermost(e)
        s.result("auto.era", False, f"{type(e).__name__}: {e}")

    # mode pinned to 2026-07-28: no probe, every request in the modern shape.
    try:
        version, names, text = await call(a.url, modern, a.tool, args)
        if a.child == "dual":
            s.result("pinned.call", a.tool in names and a.expect in text, f"tools {names}, answer {text!r}")
        else:
            s.result("pinned.refused", False, f"expected -32022, got an answer: {text!r}")
    except BaseException as e:  # noqa: BLE001
        e = innermost(e)
        if a.child == "dual":
            s.result("pinned.call", False, f"{type(e).__name__}: {e}")
        else:
            data = getattr(getattr(e, "error", None), "data", None) or {}
            ok = (
                isinstance(e, MCPError)
                and e.code == -32022
                and any(v in HANDSHAKE_PROTOCOL_VERSIONS for v in data.get("supported", []))
                and data.get("requested") == modern
            )
            s.result("pinned.refused", ok, f"{type(e).__name__}: {e} data={data}")
    sys.exit(1 if s.failed else 0)


if __name__ == "__main__":
    try:
        anyio.run(main)
    except SystemExit:
        raise
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(2)
