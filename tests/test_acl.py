"""`urbansense acl`: Mosquitto's hash format, the accounts it plans, and the files it writes.

The broker's side (a real Mosquitto reading these files) is in test_deploy_broker.py.
"""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from stream.acl import (
    AclError,
    Role,
    acl_rules,
    hash_password,
    parse_credentials,
    plan_accounts,
    render_acl,
    render_password_file,
    verify_password,
)
from stream.cli import main as urbansense
from telemetry.registry import load_example_registry, parse_registry
from tests.servers._procs import require_binary

REGISTRY = """\
version: 1
districts:
  - {id: lakeside, name: Lakeside}
sites:
  - {id: st-a, name: Site A, district: lakeside, lat: 30.25, lon: 120.16}
gateways:
  - {id: gw-a, site: st-a}
  - {id: gw-b, site: st-a}
"""


def _counter() -> Callable[[], str]:
    numbers = iter(range(1000))
    return lambda: f"pw-{next(numbers)}"


def test_a_hash_from_mosquitto_passwd_verifies_and_ours_has_its_shape(tmp_path: Path) -> None:
    binary = require_binary("mosquitto_passwd", "mosquitto")
    path = tmp_path / "passwd"
    subprocess.run([binary, "-b", "-c", str(path), "gw-a", "s3cret"], check=True, timeout=30)
    user, hashed = path.read_text(encoding="utf-8").strip().split(":", 1)
    assert user == "gw-a"
    assert verify_password("s3cret", hashed)
    assert not verify_password("s3cret!", hashed)
    ours = hash_password("s3cret")
    prefix, salt, digest = ours.rsplit("$", 2)
    assert prefix == "$7$1000"
    assert (len(salt), len(digest)) == (16, 88)  # 12 and 64 bytes in base64, as mosquitto_passwd
    assert ours != hash_password("s3cret")  # a fresh salt each time


def test_bad_hashes_and_passwords_are_refused() -> None:
    with pytest.raises(AclError, match="not a Mosquitto"):
        verify_password("x", "$6$abc$def")
    with pytest.raises(AclError, match="empty password"):
        hash_password("")


def test_every_gateway_then_the_bridge_and_the_stream_get_a_user() -> None:
    registry = load_example_registry()
    accounts = plan_accounts(registry, existing={})
    assert [a.username for a in accounts] == [
        *(g.id for g in registry.gateways),
        "urbansense-bridge",
        "urbansense-stream",
    ]
    assert [a.role for a in accounts[-2:]] == [Role.BRIDGE, Role.STREAM]
    passwords = [a.password for a in accounts]
    assert len(set(passwords)) == len(passwords)
    assert all(len(p) == 32 for p in passwords)
    assert "password" not in repr(accounts[0]).lower().replace("username", "")


def test_existing_passwords_are_kept_and_rotation_is_explicit() -> None:
    registry = parse_registry(REGISTRY)
    first = plan_accounts(registry, existing={}, password=_counter())
    issued = {a.username: a.password for a in first}
    again = plan_accounts(registry, existing=issued, password=lambda: "new")
    assert {a.username: a.password for a in again} == issued
    rotated = plan_accounts(registry, existing=issued, password=lambda: "new", rotate=["gw-b"])
    assert {a.username: a.password for a in rotated}["gw-b"] == "new"
    assert {a.username: a.password for a in rotated}["gw-a"] == issued["gw-a"]
    with pytest.raises(AclError, match="unknown user"):
        plan_accounts(registry, existing={}, rotate=["gw-z"])


def test_names_that_mosquittos_files_cannot_hold_are_refused() -> None:
    with pytest.raises(AclError, match="':' cannot be part"):
        plan_accounts(parse_registry(REGISTRY.replace("gw-b", "gw:b")), existing={})
    with pytest.raises(AclError, match="planned twice"):
        plan_accounts(parse_registry(REGISTRY), existing={}, bridge_user="gw-a")
    with pytest.raises(AclError, match="bridge user"):
        plan_accounts(parse_registry(REGISTRY), existing={}, bridge_user="bad/name")


def test_the_acl_file_holds_each_users_rules_under_its_user_line() -> None:
    accounts = plan_accounts(parse_registry(REGISTRY), existing={})
    blocks = render_acl(accounts).split("\n\n")[1:]
    assert blocks[0].splitlines() == [
        "# gateway gw-a (site st-a)",
        "user gw-a",
        "topic write urbansense/v1/gw-a/readings",
        "topic write urbansense/v1/gw-a/status",
        "topic read urbansense/v1/gw-a/commands",
    ]
    assert [r.line() for r in acl_rules(accounts[-1])] == [
        "topic write urbansense/v1/alerts/#",
        "topic write urbansense/v1/+/commands",
    ]
    # No rule before the first user line: it would apply to anonymous clients.
    head = render_acl(accounts).split("\nuser ", 1)[0]
    assert not [line for line in head.splitlines() if line.startswith("topic")]


def test_an_unchanged_password_keeps_its_hash_line() -> None:
    accounts = plan_accounts(parse_registry(REGISTRY), existing={})
    first = render_password_file(accounts)
    hashes = parse_credentials(first)
    assert render_password_file(accounts, existing_hashes=hashes) == first
    assert all(verify_password(a.password, hashes[a.username]) for a in accounts)


def test_parse_credentials_names_the_bad_line() -> None:
    with pytest.raises(AclError, match=r"creds:2: expected user:password"):
        parse_credentials("gw-a:x\ngw-b\n", "creds")
    with pytest.raises(AclError, match=r"creds:2: user 'gw-a' appears twice"):
        parse_credentials("gw-a:x\ngw-a:y\n", "creds")


def test_the_command_writes_the_three_files_and_a_second_run_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "city.yaml"
    registry.write_text(REGISTRY, encoding="utf-8")
    secrets = tmp_path / "secrets"
    out = secrets / "broker"
    assert urbansense(["acl", "--registry", str(registry), "-o", str(out)]) == 0
    assert (
        "new passwords: gw-a, gw-b, urbansense-bridge, urbansense-stream" in capsys.readouterr().out
    )
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes == {"passwd": 0o644, "acl": 0o644}  # the broker's directory: no plaintext
    assert stat.S_IMODE((secrets / "credentials").stat().st_mode) == 0o600
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    files = [out / "passwd", out / "acl", secrets / "credentials"]
    before = {p.name: p.read_bytes() for p in files}

    assert urbansense(["acl", "--registry", str(registry), "-o", str(out)]) == 0
    assert "new passwords: none" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in files} == before

    # A gateway joins the registry: it alone gets a password; one leaves: it is reported.
    registry.write_text(REGISTRY.replace("gw-b", "gw-c"), encoding="utf-8")
    assert urbansense(["acl", "--registry", str(registry), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "new passwords: gw-c\n" in printed
    assert "removed (no longer in the registry): gw-b" in printed
    old = parse_credentials(before["credentials"].decode())
    new = parse_credentials((secrets / "credentials").read_text(encoding="utf-8"))
    assert new["gw-a"] == old["gw-a"]
    assert "gw-b" not in new


def test_the_command_reports_a_broken_registry_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "city.yaml"
    registry.write_text(REGISTRY.replace("site: st-a}", "site: st-x}", 1), encoding="utf-8")
    assert urbansense(["acl", "--registry", str(registry), "-o", str(tmp_path / "s")]) == 2
    assert "unknown site 'st-x'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
