# Placeholder: the "Support" staff group data migration (issue 6) goes here.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_legacy_conversion")]

    operations = []
