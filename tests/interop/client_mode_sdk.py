"""Client mode against the official Python SDK's server (not run by `make test`).

Starts an SDK `MCPServer` over Streamable HTTP and over HTTP+SSE, puts
`mcp-proxy URL` (auto-detected transport) in front of it, and drives the
proxy's stdio like a local MCP client: initialize, tools/list, echo with
unicode, progress notifications, a log message, ping, then stdin EOF.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install mcp
    cargo build --release
    /tmp/venv/bin/python tests/interop/client_mode_sdk.py target/release/mcp-proxy
"""
import json, socket, subprocess, sys, threading, time, queue

proxy = sys.argv[1]

SERVER = r'''
import sys
from mcp.server.mcpserver import MCPServer, Context
mcp = MCPServer("sdk-remote")
@mcp.tool()
def echo(text: str) -> str:
    return text
@mcp.tool()
async def count(n: int, ctx: Context) -> str:
    for i in range(n):
        await ctx.report_progress(i + 1, n)
    await ctx.info("counted")
    return f"counted {n}"
transport, port = sys.argv[1], int(sys.argv[2])
if transport == "sse":
    mcp.run("sse", host="127.0.0.1", port=port)
else:
    mcp.run("streamable-http", host="127.0.0.1", port=port)
'''

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait_port(port, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"SDK server on {port} did not start")

def run(transport, path):
    port = free_port()
    srv = subprocess.Popen([sys.executable, "-c", SERVER, transport, str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port)
        p = subprocess.Popen([proxy, f"http://127.0.0.1:{port}{path}"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out = queue.Queue()
        threading.Thread(target=lambda: [out.put(l) for l in p.stdout], daemon=True).start()
        errs = []
        threading.Thread(target=lambda: [errs.append(l) for l in p.stderr], daemon=True).start()
        def send(v): p.stdin.write(json.dumps(v) + "\n"); p.stdin.flush()
        def until(pred, what):
            seen = []
            end = time.time() + 20
            while time.time() < end:
                try: v = json.loads(out.get(timeout=end - time.time()))
                except queue.Empty: break
                if pred(v): return v, seen
                seen.append(v)
            raise SystemExit(f"{transport}: no {what}; saw {seen}; proxy stderr: {''.join(errs)}")
        send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
              "capabilities": {}, "clientInfo": {"name": "interop", "version": "1"}}})
        r, _ = until(lambda v: v.get("id") == 0, "initialize result")
        assert r["result"]["serverInfo"]["name"] == "sdk-remote", r
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": "t", "method": "tools/list"})
        r, _ = until(lambda v: v.get("id") == "t", "tools/list")
        assert {t["name"] for t in r["result"]["tools"]} >= {"echo", "count"}, r
        text = "über\u2028✓ 𝄞"
        send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": text}}})
        r, _ = until(lambda v: v.get("id") == 1, "echo result")
        assert r["result"]["content"][0]["text"] == text, r
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": "count", "arguments": {"n": 3}, "_meta": {"progressToken": "pt"}}})
        r, before = until(lambda v: v.get("id") == 2, "count result")
        assert r["result"]["content"][0]["text"] == "counted 3", r
        progress = [v for v in before if v.get("method") == "notifications/progress"]
        assert len(progress) == 3, before
        send({"jsonrpc": "2.0", "id": 3, "method": "ping"})
        until(lambda v: v.get("id") == 3, "ping result")
        p.stdin.close()
        code = p.wait(20)
        assert code == 0, (code, errs)
        print(f"{transport} via {path}: ok ({len(before)} notifications before the result)")
    finally:
        srv.terminate(); srv.wait(10)

run("streamable-http", "/mcp")
run("sse", "/sse")
