"""`python -m serving`: the auditor's replay command lives here, beside the service it replays."""

from __future__ import annotations

from typer.testing import CliRunner

from serving.cli import app


def test_audit_replay_is_a_serving_command() -> None:
    result = CliRunner().invoke(app, ["audit", "replay", "--help"])
    assert result.exit_code == 0, result.output
    assert "--declaration-id" in result.output


def test_audit_replay_needs_a_declaration_id() -> None:
    result = CliRunner().invoke(app, ["audit", "replay"])
    assert result.exit_code == 2
