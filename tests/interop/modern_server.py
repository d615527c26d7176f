"""A Python SDK (2.x) MCPServer over Streamable HTTP for the 2026-07-28 path
of the interop suite (run.py, group client-modern): the peer behind
`mcp-proxy URL` when the local client speaks the stateless revision.

Usage: modern_server.py PORT. Tools: add, where (its `region` argument is
mirrored in an `Mcp-Param-Region` header, SX-26), slow (progress, and
remembers being cancelled), cancelled (whether a slow call was).
"""

import sys
from typing import Annotated

import anyio
from pydantic import Field

from mcp.server.mcpserver import Context, MCPServer

mcp = MCPServer("interop-modern")
state = {"cancelled": 0}


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two numbers"""
    return a + b


@mcp.tool()
def where(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], n: int = 1) -> str:
    """Echo the region (mirrored in a header)"""
    return f"region={region} n={n}"


@mcp.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Sleep, reporting progress in three steps"""
    try:
        for i in range(3):
            await ctx.report_progress(i + 1, 3)
            await anyio.sleep(seconds / 3)
    except anyio.get_cancelled_exc_class():
        state["cancelled"] += 1
        raise
    return "done"


@mcp.tool()
def cancelled() -> int:
    """How many slow calls were cancelled"""
    return state["cancelled"]


@mcp.resource("demo://greeting")
def greeting() -> str:
    return "hello"


mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
