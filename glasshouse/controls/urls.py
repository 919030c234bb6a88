from django.urls import path, register_converter

from glasshouse.controls import views


class ScopeConverter:
    """ "default" (the organisation default policy) or a team id."""

    regex = "default|[0-9]{1,18}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: object) -> str:
        return str(value)


register_converter(ScopeConverter, "scope")

app_name = "controls"
urlpatterns = [
    path("", views.overview_view, name="overview"),
    path("usb/<scope:scope>/", views.usb_view, name="usb"),
    path("usb/<scope:scope>/allow/", views.usb_allow_add_view, name="usb_allow_add"),
    path("usb/<scope:scope>/allow/<int:pk>/remove/", views.usb_allow_remove_view, name="usb_allow_remove"),
    path("usb/<scope:scope>/delete/", views.usb_delete_view, name="usb_delete"),
    path("usb/<scope:scope>/history/", views.usb_history_view, name="usb_history"),
    path("web/<scope:scope>/", views.web_view, name="web"),
    path("web/<scope:scope>/rules/", views.web_rule_add_view, name="web_rule_add"),
    path("web/<scope:scope>/rules/<int:pk>/remove/", views.web_rule_remove_view, name="web_rule_remove"),
    path("web/<scope:scope>/delete/", views.web_delete_view, name="web_delete"),
    path("categories/", views.categories_view, name="categories"),
    path("categories/<int:pk>/", views.category_view, name="category"),
    path("categories/<int:pk>/delete/", views.category_delete_view, name="category_delete"),
    path(
        "categories/<int:pk>/domains/<int:domain_pk>/remove/",
        views.category_domain_remove_view,
        name="category_domain_remove",
    ),
    path("apps/<scope:scope>/", views.apps_view, name="apps"),
    path("apps/<scope:scope>/add/", views.app_add_view, name="app_add"),
    path("apps/<scope:scope>/<int:pk>/remove/", views.app_remove_view, name="app_remove"),
    path("apps/<scope:scope>/delete/", views.apps_delete_view, name="apps_delete"),
    path("usb-requests/", views.usb_requests_view, name="usb_requests"),
    path("usb-requests/<int:pk>/decide/", views.usb_request_decide_view, name="usb_request_decide"),
    path("offline-code/", views.offline_code_view, name="offline_code"),
    path("events/", views.events_view, name="events"),
]
