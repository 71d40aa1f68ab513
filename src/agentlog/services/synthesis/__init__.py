"""Final-answer synthesis: turns tool results into the answer the user reads."""
