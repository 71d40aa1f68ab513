"""Tool workers: run tool invocations and record each outcome once."""
