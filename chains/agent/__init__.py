"""The agent loop: graph, built-in tools, MCP and Python toolboxes, middleware."""
