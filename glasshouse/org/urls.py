"""Pages of the organisation app; names are used by the navigation and the role matrix test."""

from django.urls import URLPattern, path

from glasshouse.org import views

app_name = "org"
urlpatterns: list[URLPattern] = [
    path("people/", views.people, name="people"),
    path("people/new/", views.person_new, name="person_new"),
    path("people/export.csv", views.export, name="export"),
    path("people/<int:pk>/", views.person, name="person"),
    path("people/<int:pk>/edit/", views.person_edit, name="person_edit"),
    path("teams/", views.teams, name="teams"),
    path("teams/new/", views.team_new, name="team_new"),
    path("teams/<int:pk>/edit/", views.team_edit, name="team_edit"),
    path("offices/", views.offices, name="offices"),
    path("offices/new/", views.office_new, name="office_new"),
    path("chart/", views.chart, name="chart"),
    path("chart/<int:pk>/children/", views.chart_children, name="chart_children"),
    path("my-team/", views.my_team, name="my_team"),
    path("import/", views.import_people, name="import"),
    path("import/template.csv", views.import_template, name="import_template"),
    path("import/<int:pk>/", views.import_status, name="import_status"),
]
