from django.urls import path

from api import views

app_name = "api"

urlpatterns = [
    path("keys/verify", views.verify_key, name="verify_key"),
    path("usage", views.report_usage, name="report_usage"),
]
