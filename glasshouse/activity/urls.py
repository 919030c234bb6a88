from django.urls import path

from glasshouse.activity import views

app_name = "activity"
urlpatterns = [
    path("people/", views.people_view, name="people"),
    path("people/<int:pk>/", views.person_view, name="person"),
    path("people/<int:pk>/timeline/", views.timeline_view, name="timeline"),
    path("live/", views.live_view, name="live"),
    path("live/status/", views.live_status_view, name="live_status"),
    path("me/", views.mine_view, name="mine"),
]
