"""Plans cover prompts and resources (issue 28, item 6): `allows_all_prompts` / `allowed_prompts` and
`allows_all_resources` / `allowed_resources`. A plan that allows every tool keeps every prompt and resource; a plan
with a tool allow-list was sold as "these tools only", so it gets no prompt and no resource until staff list some."""

from django.db import migrations, models


def restricted_plans_get_none(apps, schema_editor):
    Plan = apps.get_model("accounts", "Plan")
    Plan.objects.filter(allows_all_tools=False).update(allows_all_prompts=False, allows_all_resources=False)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0011_meter_reports"),
    ]

    operations = [
        migrations.AddField(
            model_name="plan",
            name="allows_all_prompts",
            field=models.BooleanField(default=True, verbose_name="every prompt"),
        ),
        migrations.AddField(
            model_name="plan",
            name="allowed_prompts",
            field=models.TextField(
                blank=True,
                default="",
                help_text="When not every prompt: one prompt name or pattern per line, shell-style. None listed: no "
                "prompt (nor completions of a prompt's arguments).",
            ),
        ),
        migrations.AddField(
            model_name="plan",
            name="allows_all_resources",
            field=models.BooleanField(default=True, verbose_name="every resource"),
        ),
        migrations.AddField(
            model_name="plan",
            name="allowed_resources",
            field=models.TextField(
                blank=True,
                default="",
                help_text="When not every resource: one resource URI or pattern per line (`notes://*`), shell-style; a "
                "resource template is listed (and completed) when its URI template matches. None listed: no resource.",
            ),
        ),
        migrations.RunPython(restricted_plans_get_none, migrations.RunPython.noop, elidable=True),
    ]
