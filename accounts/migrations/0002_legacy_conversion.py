# Placeholder: the RunPython conversion of legacy `customers` rows (issue 3) goes here.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = []
