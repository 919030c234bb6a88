"""The one Role enum. Who holds which role is decided in `glasshouse.access.roles`."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    IT_ADMIN = "it_admin", "IT admin"
    SECURITY_ANALYST = "security_analyst", "Security analyst"
    HR_PARTNER = "hr_partner", "HR partner"
    MANAGER = "manager", "Manager"
    EMPLOYEE = "employee", "Employee"
    AUDITOR = "auditor", "Auditor"


# Roles granted explicitly; MANAGER follows from reporting lines and EMPLOYEE from having an
# active person record, so neither can be granted or forgotten by hand.
ASSIGNABLE_ROLES = (Role.IT_ADMIN, Role.SECURITY_ANALYST, Role.HR_PARTNER, Role.AUDITOR)

# The only roles that may open one person's monitoring data (always with a stated purpose).
MONITORING_ROLES = frozenset({Role.IT_ADMIN, Role.SECURITY_ANALYST})

# Roles that maintain the organisation (people, teams, offices, imports).
ORG_ADMIN_ROLES = frozenset({Role.HR_PARTNER, Role.IT_ADMIN})

# Roles that read the audit trail.
AUDIT_ROLES = frozenset({Role.AUDITOR, Role.IT_ADMIN})
