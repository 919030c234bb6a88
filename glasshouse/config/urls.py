from django.urls import include, path

from glasshouse.config.api import api
from glasshouse.ingest.api import agent_api

urlpatterns = [
    path("", include("glasshouse.core.urls")),
    path("accounts/", include("glasshouse.accounts.urls")),
    path("org/", include("glasshouse.org.urls")),
    path("audit/", include("glasshouse.audit.urls")),
    path("monitoring/", include("glasshouse.activity.urls")),
    path("api/v1/", api.urls),
    path("devices/", include("glasshouse.devices.urls")),
    path("controls/", include("glasshouse.controls.urls")),
    path("reports/", include("glasshouse.reports.urls")),
    path("alerts/", include("glasshouse.alerts.urls")),
    path("api/agent/v1/", agent_api.urls),
]

handler403 = "glasshouse.core.views.permission_denied"
handler404 = "glasshouse.core.views.page_not_found"
