"""Kafka plumbing: the local broker and thin client helpers."""
