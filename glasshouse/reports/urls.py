from django.urls import path, re_path

from glasshouse.reports import views

app_name = "reports"
urlpatterns = [
    path("", views.overview_view, name="overview"),
    re_path(r"^overview\.(?P<fmt>csv|xlsx|pdf)$", views.export_view, name="export"),
    path("classification/", views.rules_view, name="rules"),
    path("classification/add/", views.rule_add_view, name="rule_add"),
    path("classification/<int:pk>/change/", views.rule_change_view, name="rule_change"),
    path("classification/<int:pk>/remove/", views.rule_remove_view, name="rule_remove"),
    path("uncategorised/", views.uncategorised_view, name="uncategorised"),
    path("uncategorised/classify/", views.classify_view, name="classify"),
]
