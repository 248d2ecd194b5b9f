"""vmrunner's Model Context Protocol server: tools for coding agents (the Copilot coding
agent first) to test configurations and workflows in VMs, read precise failures, and
compare attempts. ``vmrunner mcp`` serves it over stdio
(:func:`vmrunner.mcp.server.serve_stdio`)."""
