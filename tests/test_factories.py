"""Every model of ours (accounts, oauth, api) has a factory in `tests.factories`, and each builds a row that saves."""

from __future__ import annotations

import factory
import pytest
from django.apps import apps

from tests import factories
from tests.support.legacy import create_customers_table, drop_customers_table

APPS = ("accounts", "oauth", "api")
FACTORIES = {
    f._meta.get_model_class(): f
    for f in vars(factories).values()
    if isinstance(f, type) and issubclass(f, factory.django.DjangoModelFactory) and not f._meta.abstract
}
MODELS = [model for label in APPS for model in apps.get_app_config(label).get_models()]


def test_every_model_of_ours_has_a_factory():
    assert [model._meta.label for model in MODELS if model not in FACTORIES] == []


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS, ids=lambda model: model._meta.label)
def test_each_factory_saves_a_row(model):
    legacy = not model._meta.managed  # the old system's table exists only where a test makes it
    if legacy:
        create_customers_table()
    try:
        row = FACTORIES[model]()
        assert model.objects.filter(pk=row.pk).exists()
    finally:
        if legacy:
            drop_customers_table()
