"""A real MCP server for the tests, written with the official SDK (MCPServer, formerly FastMCP).

Run: python tests/mcp_server.py stdio            (over stdin/stdout, as an MCP client starts it)
     python tests/mcp_server.py http PORT         (streamable HTTP on 127.0.0.1:PORT/mcp)
     python tests/mcp_server.py exit              (exits at once: a server that fails to start)
     python tests/mcp_server.py mute              (never answers anything: a server that hangs at start)
"""


import base64
import os
import sys
import time

# a 1x1 red PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def build(name: str = "fixture"):
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.utilities.types import Image

    server = MCPServer(name)

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def echo(text: str, times: int = 1) -> str:
        """Repeat a text."""
        return " ".join([text] * times)

    @server.tool()
    def calculator(expression: str) -> str:
        """Evaluate `expression`, two numbers and one of + - * / (a stand-in for the built-in calculator)."""
        import re

        match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([-+*/])\s*(-?\d+(?:\.\d+)?)\s*", expression)
        if match is None:
            raise ValueError(f"cannot compute {expression!r}")
        a, op, b = float(match.group(1)), match.group(2), float(match.group(3))
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else float("nan")}[op]
        return str(int(value)) if value == int(value) else str(value)

    @server.tool()
    def env_var(name: str) -> str:
        """The value of an environment variable of the server process ("<unset>" when unset)."""
        return os.environ.get(name, "<unset>")

    @server.tool()
    def flood(size: int) -> str:
        """A result of `size` characters."""
        return "x" * size

    @server.tool()
    def pid() -> int:
        """The server's process id."""
        return os.getpid()

    @server.tool()
    def red_pixel() -> Image:
        """A 1x1 red PNG image."""
        return Image(data=PNG, format="png")

    @server.tool()
    def fail(reason: str) -> str:
        """Always raises: the error comes back as a tool error."""
        from mcp.server.mcpserver.exceptions import ToolError

        raise ToolError(f"failed on purpose: {reason}")

    @server.tool()
    def crash() -> str:
        """Kills the server process in the middle of the call."""
        os._exit(3)

    @server.tool()
    def hang(seconds: float = 3600) -> str:
        """Never answers (sleeps)."""
        time.sleep(seconds)
        return "woke up"

    return server


def main(argv: list[str]) -> None:
    mode = argv[0] if argv else "stdio"
    if os.environ.get("FIXTURE_PID_FILE"):
        with open(os.environ["FIXTURE_PID_FILE"], "w") as handle:
            handle.write(str(os.getpid()))
    if mode == "exit":
        sys.stderr.write("fixture server: refusing to start (on purpose)\n")
        sys.exit(7)
    if mode == "mute":
        sys.stdin.read()  # reads the requests and never answers; ends when the client closes stdin
        return
    server = build(os.environ.get("FIXTURE_NAME", "fixture"))
    if mode == "http":
        server.run(transport="streamable-http", host="127.0.0.1", port=int(argv[1]))
    else:
        server.run()


if __name__ == "__main__":
    main(sys.argv[1:])
