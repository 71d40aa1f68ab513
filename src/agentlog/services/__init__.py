"""Services: the long-running workers of the agent (router, orchestrator, tools, synthesis)."""
