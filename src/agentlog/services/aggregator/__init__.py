"""The aggregator: collects a turn's step outcomes from the log and asks for its final answer."""
