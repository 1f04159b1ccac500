"""Turn the boards into the JSON Grafana loads, check them, and write them to files.

The files are deterministic (keys sorted, panel ids numbered in order, a final
newline), so the committed ``deploy/grafana/dashboards/*.json`` can be compared
byte for byte with what the code generates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from stream.grafana.boards import BOARDS, BoardSettings
from stream.grafana.check import check_query

__all__ = [
    "BoardError",
    "board_queries",
    "build_boards",
    "check_boards",
    "render",
    "write_boards",
]

Board = dict[str, Any]


class BoardError(ValueError):
    """Boards that name what the sink does not write; the message lists every problem."""


def _number_panels(board: Board) -> None:
    """Give every panel (rows and the panels inside collapsed rows) an id, in order."""
    n = 0

    def walk(panels: list[dict[str, Any]]) -> None:
        nonlocal n
        for panel in panels:
            n += 1
            panel["id"] = n
            walk(panel.get("panels", []))

    walk(board.get("panels", []))


def build_boards(settings: BoardSettings) -> dict[str, Board]:
    """Every board as Grafana's dashboard JSON, by file name (``city-overview.json``...)."""
    boards: dict[str, Board] = {}
    for spec in BOARDS:
        model = spec.build(spec, settings).build()
        board: Board = json.loads(JSONEncoder(sort_keys=True).encode(model))
        _number_panels(board)
        boards[f"{spec.slug}.json"] = board
    return boards


def render(board: Board) -> str:
    """A board's file: indented JSON, keys sorted, non-ASCII kept, a final newline."""
    return json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def board_queries(board: Board) -> Iterator[tuple[str, str]]:
    """Every InfluxQL statement of a board: ``(where, query)``, ``where`` naming its place.

    Panels' targets, template variables and annotations.
    """
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            yield f"variable {variable['name']}", str(variable["query"])
    for annotation in board.get("annotations", {}).get("list", []):
        if "query" in annotation:
            yield f"annotation {annotation['name']!r}", str(annotation["query"])

    def walk(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
        for panel in panels:
            for target in panel.get("targets", []):
                yield f"panel {panel['title']!r} target {target['refId']}", str(target["query"])
            yield from walk(panel.get("panels", []))

    yield from walk(board.get("panels", []))


def check_boards(boards: Mapping[str, Board]) -> list[str]:
    """Every problem of every board's queries against the sink's measurement table."""
    return [
        f"{name}: {place}: {problem}"
        for name, board in boards.items()
        for place, query in board_queries(board)
        for problem in check_query(query)
    ]


def write_boards(out: Path, settings: BoardSettings) -> list[Path]:
    """Write every board into ``out`` (created if missing); the paths written.

    Raises:
        BoardError: A board names a measurement, field or tag the sink does not write;
            nothing is written then.
    """
    boards = build_boards(settings)
    problems = check_boards(boards)
    if problems:
        raise BoardError("\n".join(problems))
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, board in boards.items():
        path = out / name
        path.write_text(render(board), encoding="utf-8")
        paths.append(path)
    return paths
