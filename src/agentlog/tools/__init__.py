"""Tools: plain typed functions registered by the @tool decorator."""
