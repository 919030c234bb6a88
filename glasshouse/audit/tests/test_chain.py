"""The audit chain detects edits, deletions and truncation made directly in the database."""

from __future__ import annotations

import itertools

import pytest
from django.core.management import call_command
from django.db import connection

from conftest import ClientFor, Personas
from glasshouse.audit.actions import record
from glasshouse.audit.chain import entry_hash, hashed_fields, verify_chain
from glasshouse.audit.models import AuditEntry


@pytest.fixture
def chain(personas: Personas) -> list[AuditEntry]:
    return [
        record(
            actor=personas.it_admin,
            action="test.change",
            target=personas.sales_team,
            before={"name": f"old {i}"},
            after={"name": f"new {i}"},
        )
        for i in range(5)
    ]


def raw(sql: str, params: list[str | int]) -> None:
    """Tamper the way a DBA would: straight SQL, bypassing the application."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_intact_chain_verifies(chain: list[AuditEntry]) -> None:
    report = verify_chain()
    assert report.ok
    assert report.checked == AuditEntry.objects.count() == 5


def test_entries_link_to_previous_hash(chain: list[AuditEntry]) -> None:
    assert [e.seq for e in chain] == [1, 2, 3, 4, 5]
    for prev, cur in itertools.pairwise(chain):
        assert cur.prev_hash == prev.hash


def test_edited_row_is_found(chain: list[AuditEntry]) -> None:
    raw(f"UPDATE {AuditEntry._meta.db_table} SET purpose = %s WHERE seq = %s", ["nothing to see", 3])
    report = verify_chain()
    assert not report.ok
    assert report.first_broken_seq == 3
    assert "changed" in report.reason


def test_edited_json_change_is_found(chain: list[AuditEntry]) -> None:
    raw(f"UPDATE {AuditEntry._meta.db_table} SET actor_label = %s WHERE seq = %s", ["someone-else@example.test", 2])
    assert verify_chain().first_broken_seq == 2


def test_rehashed_row_breaks_the_next_link(chain: list[AuditEntry]) -> None:
    """Recomputing the edited row's own hash does not help: the next entry points at the old one."""
    entry = AuditEntry.objects.get(seq=2)
    entry.purpose = "forged"
    forged = entry_hash(hashed_fields(entry))
    raw(f"UPDATE {AuditEntry._meta.db_table} SET purpose = %s, hash = %s WHERE seq = %s", ["forged", forged, 2])
    report = verify_chain()
    assert report.first_broken_seq == 3
    assert "link" in report.reason


def test_deleted_row_is_found(chain: list[AuditEntry]) -> None:
    raw(f"DELETE FROM {AuditEntry._meta.db_table} WHERE seq = %s", [4])
    report = verify_chain()
    assert not report.ok
    assert report.first_broken_seq == 4
    assert "missing" in report.reason


def test_truncated_tail_is_found(chain: list[AuditEntry]) -> None:
    raw(f"DELETE FROM {AuditEntry._meta.db_table} WHERE seq >= %s", [4])
    report = verify_chain()
    assert not report.ok
    assert report.first_broken_seq == 4
    assert "removed from the end" in report.reason


def test_application_cannot_update_or_delete(chain: list[AuditEntry]) -> None:
    entry = chain[0]
    entry.purpose = "changed"
    with pytest.raises(RuntimeError):
        entry.save()
    with pytest.raises(RuntimeError):
        entry.delete()


def test_command_reports_first_broken_entry(chain: list[AuditEntry], capsys: pytest.CaptureFixture[str]) -> None:
    call_command("audit_verify")
    assert "5 entries verified" in capsys.readouterr().out
    raw(f"UPDATE {AuditEntry._meta.db_table} SET action = %s WHERE seq = %s", ["test.hidden", 2])
    with pytest.raises(SystemExit) as exit_info:
        call_command("audit_verify")
    assert exit_info.value.code == 1
    assert "BROKEN at entry #2" in capsys.readouterr().err


def test_auditor_page_points_at_broken_entry(chain: list[AuditEntry], client_for: ClientFor) -> None:
    raw(f"DELETE FROM {AuditEntry._meta.db_table} WHERE seq = %s", [2])
    client = client_for("auditor")
    client.get("/audit/verify/")
    response = client.post("/audit/verify/", {"csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert response.status_code == 200
    assert "BROKEN at entry #2" in response.content.decode()


def test_auditor_sees_log_entries(chain: list[AuditEntry], client_for: ClientFor) -> None:
    response = client_for("auditor").get("/audit/?action=test.change")
    body = response.content.decode()
    assert "test.change" in body
    assert "it@example.test" in body
