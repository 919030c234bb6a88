"""Hashing and verification of the audit chain."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from glasshouse.audit.models import AuditEntry, AuditHead

GENESIS_HASH = "0" * 64


def entry_hash(fields: dict[str, Any]) -> str:
    """SHA-256 over a canonical JSON of the entry's content and the previous hash."""
    payload = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def hashed_fields(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "created_at": entry.created_at.isoformat(timespec="microseconds"),
        "actor_id": entry.actor_id,
        "actor_label": entry.actor_label,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "target_label": entry.target_label,
        "purpose": entry.purpose,
        "before": entry.before,
        "after": entry.after,
        "ip": entry.ip,
        "prev_hash": entry.prev_hash,
    }


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_broken_seq: int | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"Audit chain intact: {self.checked} entries verified."
        return f"Audit chain BROKEN at entry #{self.first_broken_seq}: {self.reason} ({self.checked} entries checked)."


def verify_chain() -> ChainReport:
    """Walk every entry in order and report the first one that does not fit the chain."""
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    for entry in AuditEntry.objects.order_by("seq").iterator(chunk_size=2000):
        if entry.seq != expected_seq:
            return ChainReport(
                False, checked, expected_seq, f"entry #{expected_seq} is missing (next present is #{entry.seq})"
            )
        if entry.prev_hash != prev_hash:
            return ChainReport(False, checked, entry.seq, "its link to the previous entry does not match")
        if entry_hash(hashed_fields(entry)) != entry.hash:
            return ChainReport(False, checked, entry.seq, "its content was changed after it was written")
        prev_hash = entry.hash
        expected_seq += 1
        checked += 1
    head = AuditHead.objects.filter(pk=1).first()
    head_seq = head.seq if head else 0
    head_hash = head.hash if head else GENESIS_HASH
    if head_seq != checked or head_hash != prev_hash:
        return ChainReport(
            False,
            checked,
            checked + 1,
            f"the chain head records {head_seq} entries but {checked} are present: entries were removed from the end",
        )
    return ChainReport(True, checked)
