"""The configuration: the frozen pydantic model, the bounded YAML reader, the loader that builds
the model from a file, the environment and flags, the config flags' table, and the config put into
words (advice, description).

Rule: imports ``kernel/`` and ``decide/`` only; reads files (bounded), never the network, and
never typer (the CLI builds its options from :mod:`warmgate.config.flags`).
"""
