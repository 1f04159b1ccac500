"""Sample configuration files that ship with the edge agent (``agent.toml``)."""
