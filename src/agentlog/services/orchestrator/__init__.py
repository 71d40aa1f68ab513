"""The orchestrator: drives each turn's plan by sending tool commands and folding their results."""
