"""The gateway agent: reads sensors through driver plug-ins and publishes batches over MQTT.

Runs on Raspberry Pi-class gateways, installed with the ``edge`` extra alone:
it may import ``telemetry`` and paho-mqtt, never Faust, numpy or ``stream``.
The agent itself arrives with a later issue.
"""
