"""Server mode with the reference server-everything as the child and the
official Python SDK client on both transports (not run by `make test`).

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install mcp
    (cd /tmp && npm install @modelcontextprotocol/server-everything)
    /tmp/venv/bin/python tests/interop/server_mode_everything.py \
        target/release/mcp-proxy /tmp/node_modules/.bin/mcp-server-everything stdio
"""
import anyio, sys, re, subprocess, threading
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp import types
proxy, child = sys.argv[1], sys.argv[2:]
p = subprocess.Popen([proxy, "--port", "0", "--", *child], stderr=subprocess.PIPE, text=True)
for line in p.stderr:
    m = re.search(r"listening on (http://\S+)", line)
    if m: base = m.group(1); break
errs = []
threading.Thread(target=lambda: [errs.append(l) for l in p.stderr], daemon=True).start()
async def sampling(ctx, params):
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="sampled-by-sdk"), model="m")
async def elicit(ctx, params):
    return types.ElicitResult(action="accept", content={k: "x" for k in (params.requested_schema or {}).get("properties", {})})
async def roots(ctx):
    return types.ListRootsResult(roots=[types.Root(uri="file:///sdk-root", name="r")])
async def run(kind):
    cm = sse_client(base + "/sse") if kind == "sse" else streamable_http_client(base + "/mcp")
    async with cm as streams:
        async with ClientSession(streams[0], streams[1], sampling_callback=sampling, elicitation_callback=elicit, list_roots_callback=roots) as s:
            r = await s.initialize()
            print(kind, "initialized", r.protocol_version, r.server_info.name)
            tools = await s.list_tools()
            names = [t.name for t in tools.tools]
            print(kind, "tools", names)
            for name, args in [("echo", {"message": "hi"}), ("get-sum", {"a": 1, "b": 2}),
                               ("trigger-long-running-operation", {"duration": 1, "steps": 3}),
                               ("trigger-sampling-request", {"prompt": "hello", "maxTokens": 10})]:
                if name not in names: print(kind, "no tool", name); continue
                prog = []
                async def on_progress(progress, total, message): prog.append(progress)
                try:
                    r = await s.call_tool(name, args, progress_callback=on_progress)
                    print(kind, name, [c.text[:80] for c in r.content if hasattr(c, "text")], prog, "isError" if r.is_error else "")
                except Exception as e:
                    print(kind, name, "EXC", e)
            res = await s.list_resources(); print(kind, "resources", len(res.resources))
            pr = await s.list_prompts(); print(kind, "prompts", [x.name for x in pr.prompts])
async def main():
    for k in ("sse", "streamable"):
        with anyio.fail_after(30):
            await run(k)
anyio.run(main)
p.terminate(); p.wait()
print("proxy stderr:", "".join(errs)[-3000:])
