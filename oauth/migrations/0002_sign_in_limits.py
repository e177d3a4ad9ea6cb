"""The email sign-in's limits (issue 26, item 2): `SignInEvent` (codes made and codes tried, per address and client
address, counted by every worker) and `SignInCode.email_key` (an address's unused codes, ended by a new start)."""

from django.db import migrations, models
from django.db.models.functions import Lower


def fill_email_keys(apps, schema_editor):
    apps.get_model("oauth", "SignInCode").objects.update(email_key=Lower("email"))


class Migration(migrations.Migration):
    dependencies = [
        ("oauth", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="SignInEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("kind", models.CharField(choices=[("code", "code made"), ("guess", "code tried")], max_length=5)),
                ("email_key", models.CharField(max_length=254)),
                ("client_ip", models.GenericIPAddressField(blank=True, null=True)),
                ("wrong", models.BooleanField(default=False)),
                ("created_at", models.DateTimeField()),
            ],
            options={
                "indexes": [
                    models.Index(fields=["email_key", "kind", "created_at"], name="oauth_signinevent_address"),
                    models.Index(fields=["client_ip", "kind", "created_at"], name="oauth_signinevent_client"),
                    models.Index(fields=["created_at"], name="oauth_signinevent_created"),
                ],
            },
        ),
        migrations.AddField(
            model_name="signincode",
            name="email_key",
            field=models.CharField(default="", help_text="The address in lower case.", max_length=254),
        ),
        migrations.RunPython(fill_email_keys, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="signincode",
            index=models.Index(fields=["email_key", "used_at"], name="oauth_signincode_email_key"),
        ),
    ]
