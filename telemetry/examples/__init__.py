"""Example data shipped with the package: ``registry.yaml``, a commented site registry.

Read it with :func:`telemetry.registry.load_example_registry`, or locate it with
:func:`telemetry.registry.example_registry_path`.
"""
