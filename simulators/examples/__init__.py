"""Example scenarios and replay specs, shipped with the package."""
