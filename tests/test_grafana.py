"""The Grafana boards without a server: committed files, queries against the sink, colours.

* the committed ``deploy/grafana/dashboards/*.json`` are exactly what the code generates;
* every query of every board (panels, variables, annotations) names only measurements,
  fields and tags that ``stream/schema.py`` says the sink writes -- and the check
  catches a misspelt field, a field used as a tag, an unknown measurement, a string
  field averaged;
* AQI colours are HJ 633-2012's; variables are defined where used and used where defined;
* the provisioning files point Grafana where the compose stack mounts the boards;
* ``urbansense grafana generate`` writes and checks the files.

The boards' queries against a real InfluxDB are in ``tests/test_grafana_influx.py``,
the upload to Grafana in ``tests/test_grafana_push.py``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.cli import main
from stream.grafana import (
    BOARDS,
    DATASOURCE_UID,
    BoardSettings,
    board_queries,
    build_boards,
    check_boards,
    check_query,
    references,
    render,
)
from stream.grafana.influxql import InfluxQLError
from telemetry.registry import load_example_registry

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
REGISTRY = load_example_registry()

Board = dict[str, Any]


@pytest.fixture(scope="module")
def boards() -> dict[str, Board]:
    return build_boards(BoardSettings(REGISTRY))


def panels(board: Board) -> Iterator[dict[str, Any]]:
    def walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            yield from walk(item.get("panels", []))

    yield from walk(board["panels"])


# ---------------------------------------------------------------- committed files


def test_the_committed_boards_are_what_the_code_generates(boards: dict[str, Board]) -> None:
    committed = {p.name for p in DASHBOARDS.glob("*.json")}
    assert committed == set(boards), "regenerate with: urbansense grafana generate"
    for name, board in boards.items():
        text = (DASHBOARDS / name).read_text(encoding="utf-8")
        assert text == render(board), f"{name} differs: regenerate with urbansense grafana generate"


def test_generating_twice_gives_the_same_bytes(boards: dict[str, Board]) -> None:
    again = build_boards(BoardSettings(REGISTRY))
    assert {n: render(b) for n, b in again.items()} == {n: render(b) for n, b in boards.items()}


def test_the_seven_boards_have_stable_unique_uids_and_titles(boards: dict[str, Board]) -> None:
    uids = {name: board["uid"] for name, board in boards.items()}
    assert uids == {
        "city-overview.json": "urbansense-overview",
        "air-quality.json": "urbansense-air-quality",
        "traffic.json": "urbansense-traffic",
        "scenic-areas.json": "urbansense-scenic",
        "energy.json": "urbansense-energy",
        "gateways.json": "urbansense-gateways",
        "alerts.json": "urbansense-alerts",
    }
    assert len({b["title"] for b in boards.values()}) == len(BOARDS)


def test_every_panel_has_an_id_a_title_a_description_and_the_board_datasource(
    boards: dict[str, Board],
) -> None:
    for name, board in boards.items():
        ids = [p["id"] for p in panels(board)]
        assert ids == list(range(1, len(ids) + 1)), name
        for panel in panels(board):
            assert panel["title"], (name, panel)
            if panel["type"] == "row":
                continue
            assert panel.get("description"), (name, panel["title"])
            assert panel["datasource"] == {"type": "influxdb", "uid": "${datasource}"}
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["rawQuery"] is True
                assert target["resultFormat"] in ("time_series", "table")


# ---------------------------------------------------------------- queries against the sink


def test_every_query_names_only_what_the_sink_writes(boards: dict[str, Board]) -> None:
    assert check_boards(boards) == []
    count = sum(1 for board in boards.values() for _ in board_queries(board))
    assert count > 60  # panels, variables and annotations of seven boards


def _plant(boards: dict[str, Board], old: str, new: str) -> list[str]:
    """Replace ``old`` by ``new`` in the first panel query that has it; the problems found."""
    planted = copy.deepcopy(boards)
    for board in planted.values():
        for panel in panels(board):
            for target in panel.get("targets", []):
                if old in target["query"]:
                    target["query"] = target["query"].replace(old, new, 1)
                    return check_boards(planted)
    raise AssertionError(f"no query has {old!r}")


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('last("occupancy_pct")', 'last("occupancy_pc")', "scenic has no field 'occupancy_pc'"),
        ('FROM "traffic_index"', 'FROM "traffic"', "traffic has no field 'tpi'"),
        ('FROM "aqi"', 'FROM "air_quality"', "no measurement 'air_quality'"),
        ('GROUP BY "building"', 'GROUP BY "power_kw"', "energy_use has no tag 'power_kw'"),
        ('last("primary")', 'mean("primary")', "aqi.primary is a string field: mean()"),
        ('"district" =~', '"distrikt" =~', "has no tag or field 'distrikt'"),
    ],
)
def test_a_board_naming_what_the_sink_does_not_write_fails_the_check(
    boards: dict[str, Board], old: str, new: str, problem: str
) -> None:
    problems = _plant(boards, old, new)
    assert problems, (old, new)
    assert any(problem in p for p in problems), problems


def test_a_variable_naming_an_unknown_tag_fails_the_check(boards: dict[str, Board]) -> None:
    planted = copy.deepcopy(boards)
    variable = planted["air-quality.json"]["templating"]["list"][1]
    variable["query"] = variable["query"].replace('KEY = "district"', 'KEY = "county"')
    assert any("agg_1m has no tag 'county'" in p for p in check_boards(planted))


@pytest.mark.parametrize(
    "query",
    [
        'SELECT mean(occupancy_pct) FROM "scenic"',  # bare identifier
        'SELECT mean("x") FROM (SELECT last("tpi") AS "x" FROM "traffic_index")',  # subquery
        'SELECT mean("pm2_5") FROM /^poll/',  # regular expression in FROM
        'DROP MEASUREMENT "aqi"',
    ],
)
def test_queries_outside_the_boards_style_are_refused(query: str) -> None:
    with pytest.raises(InfluxQLError):
        references(query)
    assert check_query(query)


def test_division_is_not_read_as_a_regular_expression() -> None:
    refs = references(
        'SELECT last("power_kw") / last("baseline_kw") AS "r" FROM "energy_use" '
        'WHERE "district" =~ /^a|b$/ GROUP BY time(1m), "building" fill(none)'
    )
    assert [(r.role, r.name, r.function) for r in refs] == [
        ("select", "power_kw", "last"),
        ("select", "baseline_kw", "last"),
        ("where", "district", None),
        ("group", "building", None),
    ]


# ---------------------------------------------------------------- colours and variables

HJ633 = [
    (None, "#00e400"),
    (51.0, "#ffff00"),
    (101.0, "#ff7e00"),
    (151.0, "#ff0000"),
    (201.0, "#99004c"),
    (301.0, "#7e0023"),
]


def test_every_aqi_panel_is_coloured_by_hj_633s_levels(boards: dict[str, Board]) -> None:
    aqi_panels = [
        (name, panel)
        for name, board in boards.items()
        for panel in panels(board)
        if any('FROM "aqi"' in t["query"] for t in panel.get("targets", []))
    ]
    assert len(aqi_panels) >= 6
    for name, panel in aqi_panels:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [(s["value"], s["color"]) for s in steps] == HJ633, (name, panel["title"])


def test_the_aqi_level_is_shown_by_name_in_its_colour(boards: dict[str, Board]) -> None:
    board = boards["air-quality.json"]
    [table] = [p for p in panels(board) if p["title"] == "Latest hour by station"]
    [override] = [
        o
        for o in table["fieldConfig"]["overrides"]
        if o["matcher"]["options"] == "level"
        and any(p["id"] == "mappings" for p in o["properties"])
    ]
    [mapping] = next(p["value"] for p in override["properties"] if p["id"] == "mappings")
    options = mapping["options"]
    assert options["1"] == {"text": "1 Excellent", "color": "#00e400", "index": 0}
    assert options["6"]["color"] == "#7e0023"
    assert options["5"]["text"] == "5 Heavily Polluted"


def test_scenic_occupancy_has_the_80_90_100_lines(boards: dict[str, Board]) -> None:
    [panel] = [
        p for p in panels(boards["scenic-areas.json"]) if p["title"] == "Occupancy against capacity"
    ]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 80.0, 90.0, 100.0]
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] == {"mode": "line"}


_BUILTIN = {"timeFilter", "__interval"}


def test_variables_are_defined_where_used_and_used_where_defined(
    boards: dict[str, Board],
) -> None:
    everywhere: set[str] = set()
    for name, board in boards.items():
        defined = {v["name"] for v in board["templating"]["list"]}
        everywhere |= defined
        assert {"datasource", "district"} <= defined, name
        used = {m for _, query in board_queries(board) for m in re.findall(r"\$(\w+)", query)}
        assert used - _BUILTIN <= defined, (name, used - defined)
        assert defined - {"datasource"} <= used, (name, defined - used)
        for variable in board["templating"]["list"]:
            if variable["name"] != "datasource":
                assert variable["multi"], (name, variable["name"])
                assert variable["includeAll"], (name, variable["name"])
                assert variable["allValue"] == ".*"
    assert {"district", "site", "kind", "severity"} <= everywhere


def test_every_board_shows_alerts_as_annotations(boards: dict[str, Board]) -> None:
    for name, board in boards.items():
        annotations = {a["name"]: a for a in board["annotations"]["list"]}
        assert set(annotations) == {"Alerts fired", "Alerts resolved"}, name
        fired = annotations["Alerts fired"]
        assert fired["enable"] is True
        assert fired["query"] == fired["target"]["query"]
        assert 'FROM "alert"' in fired["query"]
        assert '"firing" = 1' in fired["query"]


def test_the_maps_place_each_station_at_its_registry_coordinates(
    boards: dict[str, Board],
) -> None:
    [stations] = [
        p
        for p in panels(boards["city-overview.json"])
        if p["title"] == "Air-quality stations by AQI"
    ]
    assert stations["type"] == "geomap"
    found = {}
    for target in stations["targets"]:
        site = re.search(r"\"site\" = '([^']+)'", target["query"])
        lat = re.search(r"\+ ([\d.]+) AS \"lat\"", target["query"])
        lon = re.search(r"\+ ([\d.]+) AS \"lon\"", target["query"])
        assert site is not None, target["query"]
        assert lat is not None, target["query"]
        assert lon is not None, target["query"]
        found[site.group(1)] = (float(lat.group(1)), float(lon.group(1)))
    expected = {
        s.site: (REGISTRY.site(s.site).lat, REGISTRY.site(s.site).lon)
        for s in REGISTRY.sensors
        if s.kind.value == "pollution"
    }
    assert found == expected
    [layer] = stations["options"]["layers"]
    assert layer["location"] == {"mode": "coords", "latitude": "lat", "longitude": "lon"}
    assert layer["config"]["style"]["color"]["field"] == "aqi"
    assert stations["transformations"][-1]["id"] == "merge"


# ---------------------------------------------------------------- provisioning


def test_the_provisioning_points_grafana_at_the_mounted_boards_and_influxql() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "urbansense.yaml").read_text())
    [entry] = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"] == "/var/lib/grafana/dashboards"
    assert entry["folderUid"] == "urbansense"
    source = yaml.safe_load((PROVISIONING / "datasources" / "influxdb.yaml").read_text())
    [ds] = source["datasources"]
    assert ds["uid"] == DATASOURCE_UID
    assert ds["type"] == "influxdb"
    assert ds["jsonData"]["version"] == "InfluxQL"
    # What the compose stack sets in Grafana's environment.
    assert ds["url"] == "${INFLUX_URL}"
    assert ds["jsonData"]["dbName"] == "${INFLUX_DB}"
    assert ds["secureJsonData"]["httpHeaderValue1"] == "Token ${INFLUX_TOKEN}"


def test_every_board_defaults_to_the_provisioned_datasource(boards: dict[str, Board]) -> None:
    for board in boards.values():
        [variable] = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
        assert variable["type"] == "datasource"
        assert variable["query"] == "influxdb"
        assert variable["current"]["value"] == DATASOURCE_UID


# ---------------------------------------------------------------- command line


def test_generate_writes_the_boards_and_check_finds_a_hand_edit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "boards"
    assert main(["grafana", "generate", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.json")) == sorted(b.slug + ".json" for b in BOARDS)
    assert (out / "energy.json").read_text() == (DASHBOARDS / "energy.json").read_text()
    assert main(["grafana", "generate", "--out", str(out), "--check"]) == 0
    board = json.loads((out / "traffic.json").read_text())
    board["title"] = "edited by hand"
    (out / "traffic.json").write_text(json.dumps(board))
    capsys.readouterr()
    assert main(["grafana", "generate", "--out", str(out), "--check"]) == 1
    assert "traffic.json: differs" in capsys.readouterr().err


def test_generate_places_a_citys_own_registry_on_its_maps(tmp_path: Path) -> None:
    text = (ROOT / "telemetry" / "examples" / "registry.yaml").read_text(encoding="utf-8")
    moved = text.replace("lat: 30.2598, lon: 120.1628}", "lat: 31.5, lon: 121.25}", 1)
    assert moved != text
    registry = tmp_path / "city.yaml"
    registry.write_text(moved, encoding="utf-8")
    out = tmp_path / "boards"
    assert main(["grafana", "generate", "--out", str(out), "--registry", str(registry)]) == 0
    board = json.loads((out / "city-overview.json").read_text(encoding="utf-8"))
    [stations] = [p for p in panels(board) if p["title"] == "Air-quality stations by AQI"]
    [pier] = [t["query"] for t in stations["targets"] if "'st-aq-pier'" in t["query"]]
    assert '31.5 AS "lat"' in pier
    assert '121.25 AS "lon"' in pier


def test_generate_reports_a_broken_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "city.yaml"
    registry.write_text("version: 1\nsites: [{id: x}]\n")
    assert main(["grafana", "generate", "--out", str(tmp_path), "--registry", str(registry)]) == 2
    assert "city.yaml" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))


def test_push_without_credentials_is_bad_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    assert main(["grafana", "push", "--url", "http://127.0.0.1:9"]) == 2
    assert "--token" in capsys.readouterr().err
