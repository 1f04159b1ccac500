"""The stream worker's settings: from ``URBANSENSE_*`` environment variables, checked.

Every setting has a default that suits one worker on one machine; a deployment sets
the broker, the database and the registry. The variable of each setting is its
name in capitals after ``URBANSENSE_``, e.g. ``URBANSENSE_KAFKA=kafka-1:9092``.

>>> s = StreamSettings.from_env({"URBANSENSE_KAFKA": "127.0.0.1:9092", "URBANSENSE_BATCH": "2000"})
>>> s.kafka, s.batch, s.influx_url
('127.0.0.1:9092', 2000, 'http://127.0.0.1:8086')
>>> StreamSettings.from_env({"URBANSENSE_BATCH": "many"})
Traceback (most recent call last):
...
ValueError: URBANSENSE_BATCH: Input should be a valid integer, ... (got 'many')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stream.cityindex import IndexConfig
from stream.indices.energy import BaselineConfig

__all__ = ["ENV_PREFIX", "StreamSettings"]

ENV_PREFIX = "URBANSENSE_"
"""The prefix of the environment variables."""
_HHMM = r"(?:[01]\d|2[0-3]):[0-5]\d"
_OPENS_AT = rf"{_HHMM}(?:,[A-Za-z0-9][A-Za-z0-9_.:-]*={_HHMM})*"


class StreamSettings(BaseModel):
    """What one stream worker connects to and how it batches.

    Attributes:
        app_id: the Faust app id: the consumer group, and the prefix of its tables'
            changelog topics. Every worker of one stream shares it.
        kafka: the Kafka bootstrap servers, ``host:port[,host:port...]``.
        readings_topic: where the bridge puts gateway envelopes, keyed by gateway.
        district_topic: the envelopes again, keyed by district: the worker routes
            them there and reads them back (created by the worker);
            ``<readings_topic>.by-district`` unless set.
        status_topic: where the bridge puts gateway status messages.
        deadletter_topic: where readings the stream refuses go, with the reason (and
            notifications no receiver took in time).
        alerts_topic: where alert transitions go, keyed by fingerprint (one
            partition: one worker groups and notifies them).
        rules: the alert rule files, comma-separated; ``default`` for the shipped
            city rule set, ``none`` for no rules.
        routing: the receivers and routing file (``rules/routing.py``); without one
            alerts still reach the alerts topic and the database, but nobody is
            notified.
        partitions: partitions of the topics the app creates (readings and tables).
        sink: where the points go: ``influx``, the time-series database at
            ``influx_url``; or ``files``, line-protocol files in ``lines_dir`` that
            ``influx write`` loads later (where no database runs).
        influx_url: the time-series database's base URL.
        influx_api: ``v2`` (InfluxDB 2/3, VictoriaMetrics) or ``v1`` (InfluxDB 1.x).
        influx_bucket: the bucket (v2) or database (v1).
        influx_token: the API token, if the database wants one.
        lines_dir: the directory of the line-protocol files (``sink=files``).
        registry: the site registry file, or ``example`` for the shipped example city.
        anomaly_config: an anomaly profile YAML over the shipped defaults, if any.
        utc_offset_h: local time's offset from UTC, for scenic days and hours of the
            week (8 for China).
        scenic_opens_at: when scenic areas open (local time; occupancy resets then):
            ``HH:MM`` for all, or ``HH:MM,<area>=HH:MM,...`` with exceptions.
        lateness_s: how late (behind its district's newest event time) a reading may be
            and still update state.
        idle_after_s: how long (by the worker's clock) a district may send nothing
            before its watermark follows the newest district's, closing its windows.
        energy_warm_up_h: hours of readings an hour-of-the-week bucket of a meter's
            power baseline needs before it gives a baseline (two weeks by default).
        batch: the most envelopes taken from Kafka per step.
        batch_seconds: the longest wait to fill a ``readings`` or ``status`` step.
            Faust waits this long unless the step fills, even with events in hand,
            so it adds up to that much latency while the worker keeps up; a worker
            that falls behind takes full steps from its backlog. (``route`` waits
            at most 0.05 s, fixed.)
        state_seconds: how often the state the steps touched is stored in the
            changelog; a step's offsets are committed only once its state is stored,
            so a longer interval costs nothing in safety, only a longer replay after
            a crash (the replay's readings are recognised by seq).
        fetch_wait_ms: the longest a fetch from Kafka waits for data (Tansu holds a
            fetch this long even when records come; :mod:`stream.app.transport`).
        datadir: the worker's data directory.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_id: str = "urbansense-stream"
    kafka: str = "127.0.0.1:9092"
    readings_topic: str = "urbansense.readings"
    district_topic: str = ""
    status_topic: str = "urbansense.status"
    deadletter_topic: str = "urbansense.deadletter"
    alerts_topic: str = "urbansense.alerts"
    rules: str = "default"
    routing: str | None = None
    partitions: int = Field(default=8, ge=1)
    sink: Literal["influx", "files"] = "influx"
    influx_url: str = "http://127.0.0.1:8086"
    influx_api: Literal["v1", "v2"] = "v2"
    influx_bucket: str = "urbansense"
    influx_token: str | None = None
    lines_dir: str = "urbansense-lines"
    registry: str = "example"
    anomaly_config: str | None = None
    utc_offset_h: float = Field(default=8.0, ge=-12, le=14)
    scenic_opens_at: str = "06:00"
    lateness_s: float = Field(default=600.0, ge=0)
    idle_after_s: float = Field(default=60.0, gt=0)
    energy_warm_up_h: float = Field(default=2.0, ge=0)
    batch: int = Field(default=500, ge=1)
    batch_seconds: float = Field(default=0.1, gt=0)
    state_seconds: float = Field(default=5.0, gt=0)
    fetch_wait_ms: int = Field(default=100, ge=1, le=60_000)
    datadir: str = "urbansense-stream-data"

    @model_validator(mode="after")
    def _district_topic(self) -> Self:
        if not self.district_topic:
            object.__setattr__(self, "district_topic", f"{self.readings_topic}.by-district")
        return self

    @field_validator("scenic_opens_at")
    @classmethod
    def _opens_at(cls, value: str) -> str:
        if not re.fullmatch(_OPENS_AT, value):
            msg = "expected HH:MM, or HH:MM,<area>=HH:MM,... with exceptions"
            raise ValueError(msg)
        return value

    def index_config(self) -> IndexConfig:
        """The city indices' settings these give.

        >>> StreamSettings(scenic_opens_at="06:00,west-lake=07:30").index_config().scenic_opens_at
        {'west-lake': datetime.time(7, 30)}
        """
        default, *exceptions = self.scenic_opens_at.split(",")
        areas = dict(item.split("=", 1) for item in exceptions)
        return IndexConfig(
            utc_offset_h=self.utc_offset_h,
            baseline=BaselineConfig(
                warm_up_h=self.energy_warm_up_h, utc_offset_h=self.utc_offset_h
            ),
            default_opens_at=time.fromisoformat(default),
            scenic_opens_at={area: time.fromisoformat(at) for area, at in areas.items()},
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StreamSettings:
        """The settings the ``URBANSENSE_*`` variables give, the defaults for the rest.

        Raises:
            ValueError: a variable's value does not fit its setting; the message names
                the variable and the value.
        """
        values = {
            name: environ[ENV_PREFIX + name.upper()]
            for name in cls.model_fields
            if ENV_PREFIX + name.upper() in environ
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{ENV_PREFIX}{str(e['loc'][0]).upper()}: {e['msg']} (got {e['input']!r})"
                for e in exc.errors()
            )
            raise ValueError(problems) from None
