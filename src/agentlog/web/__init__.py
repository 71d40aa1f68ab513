"""The web gateway: an HTTP API and a page over the event log (`agentlog gateway`)."""
