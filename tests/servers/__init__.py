"""Real servers for the tests: Mosquitto, Tansu, VictoriaMetrics and InfluxDB 1.x.

Each module starts one server on a free loopback port in a temporary directory, waits
until it answers, and stops it again; ``tests/conftest.py`` wraps them in fixtures.
"""
