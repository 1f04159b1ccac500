"""The stream: MQTT-to-Kafka bridge, Faust agents, indices, detectors, sinks and dashboards.

May import every other urbansense package.
"""
