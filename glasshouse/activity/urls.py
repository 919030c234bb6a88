from django.urls import path

from glasshouse.activity import views

app_name = "activity"
urlpatterns = [
    path("people/", views.people_view, name="people"),
    path("people/<int:pk>/", views.person_view, name="person"),
    path("me/", views.mine_view, name="mine"),
]
