"""Run a stream worker: ``python -m stream.app worker --without-web``.

Settings come from ``URBANSENSE_*`` variables (:class:`stream.app.settings.StreamSettings`);
the arguments are Faust's own command line.
"""

from __future__ import annotations

import os

from stream.app.app import build_app
from stream.app.settings import StreamSettings


def main() -> None:
    """Build the app from the environment and hand over to Faust's command line."""
    build_app(StreamSettings.from_env(os.environ)).app.main()


if __name__ == "__main__":
    main()
