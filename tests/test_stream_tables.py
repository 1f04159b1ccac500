"""The state table's prefix lookup: how a worker finds a district's rule states."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stream.app.settings import StreamSettings
from stream.app.tables import define_tables
from stream.app.transport import StreamFaustApp


def test_with_prefix_finds_exactly_the_keys_under_a_prefix_as_the_table_grows(
    tmp_path: Path,
) -> None:
    app = StreamFaustApp("tables-test", broker="kafka://127.0.0.1:9", store="memory://")
    state = define_tables(app, StreamSettings(datadir=str(tmp_path))).state
    stored = {
        b"rules/old-town/a": b"1",
        b"rules/old-town/b": b"2",
        b"rules/old-town-east/c": b"3",  # another district whose name shares a prefix
        b"rules/lakeside/d": b"4",
        b"site/st-aq-pier": b"5",
    }
    state.data.update(stored)
    assert state.with_prefix(b"rules/old-town/") == [
        (b"rules/old-town/a", b"1"),
        (b"rules/old-town/b", b"2"),
    ]
    assert state.with_prefix(b"rules/nowhere/") == []
    state.data[b"rules/old-town/0"] = b"6"  # a key added later is found too
    state.data[b"rules/old-town/a"] = b"7"  # and a value changed is read afresh
    assert state.with_prefix(b"rules/old-town/") == [
        (b"rules/old-town/0", b"6"),
        (b"rules/old-town/a", b"7"),
        (b"rules/old-town/b", b"2"),
    ]
    # A recovery may drop as many keys as it adds: the keys are sorted again after it.
    del state.data[b"rules/lakeside/d"]
    state.data[b"rules/lakeside/e"] = b"8"
    asyncio.run(state.on_recovery_completed(set(), set()))
    assert state.with_prefix(b"rules/lakeside/") == [(b"rules/lakeside/e", b"8")]
