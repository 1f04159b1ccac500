"""The stream's Faust app: a thin shell around :mod:`stream.pipeline`.

* :mod:`stream.app.settings` -- ``URBANSENSE_*`` settings, checked;
* :mod:`stream.app.topics` -- the Kafka topics (raw bytes, keyed by gateway);
* :mod:`stream.app.tables` -- per-sensor state in a changelog-backed table;
* :mod:`stream.app.agents` -- the agents: decode, pipeline, write, store state;
* :mod:`stream.app.app` -- :func:`build_app` puts them together.

Run a worker with ``python -m stream.app worker --without-web``; several workers with
the same ``URBANSENSE_APP_ID`` share the partitions.
"""

from stream.app.app import StreamApp, build_app
from stream.app.settings import StreamSettings

__all__ = ["StreamApp", "StreamSettings", "build_app"]
