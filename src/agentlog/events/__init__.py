"""The event model: one envelope for every command and event, JSON Schemas, codec and registry."""
