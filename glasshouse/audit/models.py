"""The audit trail: append-only, each entry hashing its content and the previous entry's hash.

Rows are never updated or deleted by the application. Someone with database access can still
edit them; `audit.chain.verify_chain` then finds the first entry whose hash no longer matches.
"""

from __future__ import annotations

from typing import Any

from django.db import models


class AuditEntry(models.Model):
    seq = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    # The actor is copied, not a foreign key: deleting a user must not rewrite history.
    actor_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    actor_label = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True, db_index=True)
    target_label = models.CharField(max_length=254, blank=True)
    purpose = models.TextField(blank=True)
    before: models.JSONField[Any, Any] = models.JSONField(null=True, blank=True)
    after: models.JSONField[Any, Any] = models.JSONField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor_label or 'system'}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise RuntimeError("audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise RuntimeError("audit entries are append-only")


class AuditHead(models.Model):
    """The single row holding the latest sequence number and hash.

    Appenders lock it, so entries get gap-free sequence numbers in commit order, and it lets
    verification notice entries cut off the end of the chain.
    """

    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"audit head #{self.seq}"
