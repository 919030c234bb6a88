from __future__ import annotations

from django import forms

from glasshouse.core.roles import ASSIGNABLE_ROLES


class LoginForm(forms.Form):
    email = forms.EmailField(
        label="Work e-mail", widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True})
    )
    password = forms.CharField(
        label="Password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )


class TokenForm(forms.Form):
    token = forms.CharField(
        label="6-digit code from your authenticator app",
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


class DisableTotpForm(forms.Form):
    password = forms.CharField(label="Your password", strip=False, widget=forms.PasswordInput)


class RoleChangeForm(forms.Form):
    role = forms.ChoiceField(choices=[(r.value, r.label) for r in ASSIGNABLE_ROLES])
