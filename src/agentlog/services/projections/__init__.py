"""Read models folded from conversation-events: each keeps its rows and its log position together."""
