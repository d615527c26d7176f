"""Server mode against the official Python SDK client (not run by `make test`).

The proxy serves the bundled demo server; the SDK's ClientSession connects
over HTTP+SSE and over Streamable HTTP and exercises echo, progress,
sampling, elicitation, roots, logging and ping through it.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install mcp
    cargo build --release
    /tmp/venv/bin/python tests/interop/server_mode_demo.py \
        target/release/mcp-proxy target/release/mcp-demo-server
"""
import anyio, sys, re, subprocess, threading
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp import types

proxy, demo = sys.argv[1], sys.argv[2]
p = subprocess.Popen([proxy, "--port", "0", "--", demo], stderr=subprocess.PIPE, text=True)
for line in p.stderr:
    m = re.search(r"listening on (http://\S+)", line)
    if m: base = m.group(1); break
errs = []
threading.Thread(target=lambda: [errs.append(l) for l in p.stderr], daemon=True).start()

async def sampling(ctx, params):
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="sampled-by-sdk"), model="m")
async def elicit(ctx, params):
    return types.ElicitResult(action="accept", content={"name": "sdk"})
async def roots(ctx):
    return types.ListRootsResult(roots=[types.Root(uri="file:///sdk-root", name="r")])
logs = []
async def logging_cb(params):
    logs.append(params.data)

async def run(kind):
    cm = sse_client(base + "/sse") if kind == "sse" else streamable_http_client(base + "/mcp")
    async with cm as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write, sampling_callback=sampling, elicitation_callback=elicit,
                                 list_roots_callback=roots, logging_callback=logging_cb) as s:
            r = await s.initialize()
            print(kind, "initialized", r.protocol_version, r.server_info.name)
            tools = await s.list_tools()
            print(kind, "tools", len(tools.tools))
            r = await s.call_tool("echo", {"text": "hi"}); print(kind, "echo", r.content[0].text)
            prog = []
            async def on_progress(progress, total, message): prog.append(progress)
            r = await s.call_tool("progress", {"steps": 3, "ms": 10}, progress_callback=on_progress)
            print(kind, "progress", r.content[0].text, prog)
            r = await s.call_tool("sample", {"prompt": "x"}); print(kind, "sample", r.content[0].text)
            r = await s.call_tool("elicit", {"message": "x"}); print(kind, "elicit", r.content[0].text)
            r = await s.call_tool("roots", {}); print(kind, "roots", r.content[0].text)
            await s.set_logging_level("info")
            r = await s.call_tool("log", {"level": "warning", "text": "log-" + kind}); 
            await anyio.sleep(0.3)
            print(kind, "logs", logs)
            await s.send_ping(); print(kind, "ping ok")

async def main():
    for k in ("sse", "streamable"):
        with anyio.fail_after(20):
            await run(k)
anyio.run(main)
p.terminate(); p.wait()
print("proxy stderr:", "".join(errs)[-2000:])
