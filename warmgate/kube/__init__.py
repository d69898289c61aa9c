"""Kubernetes: ``inject`` and ``uninject`` of manifests, the admission webhook (pods mutated,
warmgate's ConfigMaps checked) and the pod's own config from its annotations.

Rule: beside ``paths/`` and ``demo/``, above ``runtime/``: imports the layers below, never
``cli/`` (flags are read through :mod:`warmgate.config.flags`) nor typer.
"""
