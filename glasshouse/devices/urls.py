from django.urls import path

from glasshouse.devices import views

app_name = "devices"
urlpatterns = [
    path("", views.inventory_view, name="inventory"),
    path("<uuid:pk>/revoke/", views.device_revoke_view, name="device_revoke"),
    path("<uuid:pk>/assign/", views.device_assign_view, name="device_assign"),
    path("tokens/", views.tokens_view, name="tokens"),
    path("tokens/<int:pk>/revoke/", views.token_revoke_view, name="token_revoke"),
    path("policies/", views.policies_view, name="policies"),
    path("policies/default/", views.policy_edit_view, name="policy_default"),
    path("policies/team/<int:team_pk>/", views.policy_edit_view, name="policy_team"),
    path("policies/team/<int:team_pk>/delete/", views.policy_delete_view, name="policy_delete"),
]
