"""LLM providers behind one small interface, with an offline default."""
