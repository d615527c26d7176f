"""The 2026-07-28 ("modern", stateless) client of the interop suite: the
Python SDK 2.x `Client` with `mode` pinned to a modern version (or "auto"),
spawning `mcp-proxy URL` over stdio. Prints `PASS|FAIL <label> <step>` lines
as scenario.py does (run.py collects them).

Usage: modern_client.py LABEL PROXY URL MODE
"""

import sys

import anyio

from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

label, proxy, url, mode = sys.argv[1:5]
STEP_TIMEOUT_S = 30


def report(step, ok, detail=""):
    print(f"{'PASS' if ok else 'FAIL'} {label} {step}{': ' + detail if detail else ''}", flush=True)


def text(result):
    return result.content[0].text if result.content else ""


async def check(step, coro, want):
    try:
        with anyio.fail_after(STEP_TIMEOUT_S):
            r = await coro
        got = want(r)
        report(step, got is True, "" if got is True else str(got)[:300])
    except Exception as e:  # noqa: BLE001 - a failed step is reported, the run goes on
        report(step, False, f"{type(e).__name__}: {str(e)[:300]}")


async def main():
    progress = []

    async def on_progress(p, total, message):
        progress.append(p)

    async with Client(StdioServerParameters(command=proxy, args=[url]), mode=mode) as c:
        await check("tools-list.SX-26", c.list_tools(), lambda r: {"add", "where"} <= {t.name for t in r.tools} or r)
        await check("call.SX-24", c.call_tool("add", {"a": 2, "b": 3}), lambda r: text(r) == "5" or r)
        await check(
            "param-header.SX-26",
            c.call_tool("where", {"region": "eu-west", "n": 2}),
            lambda r: text(r) == "region=eu-west n=2" or r,
        )
        await check("param-base64.SX-25", c.call_tool("where", {"region": " ünï"}), lambda r: text(r) == "region= ünï n=1" or r)
        await check(
            "sse-progress.SX-06",
            c.call_tool("slow", {"seconds": 0.3}, progress_callback=on_progress),
            lambda r: (text(r) == "done" and progress == [1, 2, 3]) or (r, progress),
        )
        await check("resource.SX-24", c.read_resource("demo://greeting"), lambda r: r.contents[0].text == "hello" or r)
        before = int(text(await c.call_tool("cancelled", {})))
        with anyio.move_on_after(0.5):
            await c.call_tool("slow", {"seconds": 5})
        # LC-42: the cancel closed the exchange, which the server treats as
        # cancellation (SX-10); poll a little, the close races the next POST.
        for _ in range(50):
            seen = int(text(await c.call_tool("cancelled", {}))) - before
            if seen:
                break
            await anyio.sleep(0.1)
        report("cancel.LC-42", seen == 1, "" if seen == 1 else f"the server saw {seen} calls cancelled, not 1")
        await check("after-cancel", c.call_tool("add", {"a": 1, "b": 1}), lambda r: text(r) == "2" or r)


anyio.run(main)
