"""`agentlog bench`: load through the real pipeline, with latency, lag, CPU and memory figures."""
