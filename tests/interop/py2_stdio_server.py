"""A Python SDK 2.x stdio server for the server-modern interop path: one
tool, echo. Like every SDK 2.x stdio server it serves the era of the first
request it gets, so once mcp-proxy has initialized it, it refuses 2026-07-28
requests (-32600)."""

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("py2-stdio")


@mcp.tool()
def echo(text: str) -> str:
    """Returns its text."""
    return text


if __name__ == "__main__":
    mcp.run()
