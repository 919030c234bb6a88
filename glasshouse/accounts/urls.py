from django.urls import path

from glasshouse.accounts import views

app_name = "accounts"
urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("login/code/", views.login_otp_view, name="login_otp"),
    path("logout/", views.logout_view, name="logout"),
    path("security/", views.security_view, name="security"),
    path("password/", views.password_change_view, name="password_change"),
    path("2fa/setup/", views.totp_setup_view, name="totp_setup"),
    path("2fa/disable/", views.totp_disable_view, name="totp_disable"),
    path("roles/", views.roles_view, name="roles"),
    path("roles/<int:pk>/<str:op>/", views.role_change_view, name="role_change"),
]
