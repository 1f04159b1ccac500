"""Builders of valid wire payloads, shared by the contract tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
"""The receiver's clock in the contract tests."""


def reading(**overrides: Any) -> dict[str, Any]:
    """A valid pollution reading as JSON-ready data, with fields replaced by ``overrides``."""
    data: dict[str, Any] = {
        "sensor_id": "aq-lakeside-01",
        "kind": "pollution",
        "ts": "2026-11-22T07:59:00Z",
        "seq": 1,
        "metrics": {"pm2_5": 35.0, "pm10": 61.0, "co": 0.6},
    }
    data.update(overrides)
    return data


def batch(*readings: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A valid batch envelope holding ``readings`` (one default reading if none)."""
    data: dict[str, Any] = {
        "schema_version": 1,
        "gateway_id": "gw-lakeside-01",
        "readings": list(readings) or [reading()],
    }
    data.update(overrides)
    return data


def dumps(data: Any) -> bytes:
    """Encode as JSON the way a gateway would (NaN and infinities pass through)."""
    return json.dumps(data).encode()
