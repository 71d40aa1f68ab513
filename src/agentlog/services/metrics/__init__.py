"""The metrics service: latency per stage, throughput and consumer lag, folded from the log."""
