from django.urls import path, re_path

from glasshouse.reports import schedule_views, views

app_name = "reports"
urlpatterns = [
    path("", views.overview_view, name="overview"),
    re_path(r"^overview\.(?P<fmt>csv|xlsx|pdf)$", views.export_view, name="export"),
    path("after-hours/", views.after_hours_view, name="after_hours"),
    re_path(r"^after-hours\.(?P<fmt>csv|xlsx|pdf)$", views.after_hours_export_view, name="after_hours_export"),
    path("software/", views.software_view, name="software"),
    re_path(r"^software\.(?P<fmt>csv|xlsx|pdf)$", views.software_export_view, name="software_export"),
    path("locations/", views.locations_view, name="locations"),
    re_path(r"^locations\.(?P<fmt>csv|xlsx|pdf)$", views.locations_export_view, name="locations_export"),
    path("classification/", views.rules_view, name="rules"),
    path("classification/add/", views.rule_add_view, name="rule_add"),
    path("classification/<int:pk>/change/", views.rule_change_view, name="rule_change"),
    path("classification/<int:pk>/remove/", views.rule_remove_view, name="rule_remove"),
    path("uncategorised/", views.uncategorised_view, name="uncategorised"),
    path("uncategorised/classify/", views.classify_view, name="classify"),
    path("schedules/", schedule_views.schedules_view, name="schedules"),
    path("schedules/add/", schedule_views.schedule_add_view, name="schedule_add"),
    path("schedules/<int:pk>/delete/", schedule_views.schedule_delete_view, name="schedule_delete"),
]
