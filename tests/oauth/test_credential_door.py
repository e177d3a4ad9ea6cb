"""The credential door (`accounts.credentials`): the configured backends in order, keys and access tokens alike, and
the two checks reading their rows by name (a field added to the developer part moves nothing either reads)."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Iterator

import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from accounts import check_cache, credentials, developer_check, services
from accounts.authentication import authenticate_key
from accounts.credentials import API_KEY, OAUTH, Caller, aauthenticate, authenticate
from accounts.exceptions import KeyRefused
from oauth import authentication as token_check
from oauth.authentication import authenticate_token, mcp_resource, token_checksum
from tests.factories import DeveloperFactory
from tests.support.oauth import issue_token

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_client_names(monkeypatch):
    monkeypatch.setattr(token_check, "_client_names", {})  # client ids come again after a rollback


def refused(credential: str, **kinds) -> KeyRefused:
    with pytest.raises(KeyRefused) as caught:
        authenticate(credential, **kinds)
    return caught.value


def test_a_key_and_a_token_each_reach_their_backend_through_the_one_door():
    developer = DeveloperFactory()
    token = issue_token(developer, mcp_resource(), client_name="Door client")
    by_key = authenticate(developer.plain_key)
    assert by_key == Caller(authenticate_key(developer.plain_key), API_KEY)
    by_token = authenticate(token)
    assert (by_token.kind, by_token.client_name) == (OAUTH, "Door client")
    assert by_token.principal == by_key.principal
    assert asyncio.run(aauthenticate(token)) == by_token
    assert asyncio.run(aauthenticate(developer.plain_key)) == by_key


def test_where_only_keys_are_accepted_a_token_is_an_invalid_key():
    developer = DeveloperFactory()
    token = issue_token(developer, mcp_resource())
    assert authenticate(developer.plain_key, kinds=(API_KEY,)).principal.developer_id == developer.pk
    error = refused(token, kinds=(API_KEY,))
    assert error.code == KeyRefused.INVALID_KEY
    assert error.message.startswith("This API key is not valid.")  # the key backend's words, not the token's
    assert refused("not-a-token").message.startswith("This access token is not valid")


def test_the_backends_come_from_the_setting_and_follow_its_changes(settings):
    developer = DeveloperFactory()
    token = issue_token(developer, mcp_resource())
    assert [backend.kind for backend in credentials.backends()] == [API_KEY, OAUTH]
    settings.HOTCROSS_CREDENTIAL_BACKENDS = ["accounts.authentication.KeyBackend"]
    assert [backend.kind for backend in credentials.backends()] == [API_KEY]
    assert refused(token).message.startswith("This API key is not valid.")
    settings.HOTCROSS_CREDENTIAL_BACKENDS = ["oauth.authentication.TokenBackend", "accounts.authentication.KeyBackend"]
    assert refused(developer.plain_key).message.startswith("This access token is not valid")  # first one asked


# --- rows read by name ----------------------------------------------------------------------------------------------


@pytest.fixture
def developer_part_reshaped() -> Iterator[None]:
    """The developer part with one field more, first, and the others in reverse order: every column a check reads by
    position would move. The compiled statements are dropped before and after."""
    original = dict(developer_check.DEVELOPER_FIELDS)
    reshaped = {"added_field": "organization__name", **dict(reversed(original.items()))}
    connections[DEFAULT_DB_ALIAS].__dict__.pop("_hotcross_credential_checks", None)
    developer_check.DEVELOPER_FIELDS.clear()
    developer_check.DEVELOPER_FIELDS.update(reshaped)
    try:
        yield
    finally:
        developer_check.DEVELOPER_FIELDS.clear()
        developer_check.DEVELOPER_FIELDS.update(original)
        connections[DEFAULT_DB_ALIAS].__dict__.pop("_hotcross_credential_checks", None)


def test_the_token_check_reads_its_rows_by_name(developer_part_reshaped):
    developer = DeveloperFactory(organization__name="Named Columns Ltd", email="named@columns.test")
    expiry = timezone.now() + datetime.timedelta(days=3)
    services.set_key_expiry(developer=developer, expires_at=expiry)
    token = issue_token(developer, mcp_resource(), client_name="Named client")
    caller = authenticate_token(token)
    statement_columns = connections[DEFAULT_DB_ALIAS].__dict__["_hotcross_credential_checks"]["oauth_token"].columns
    assert statement_columns[0] == "added_field"  # the reshaped developer part was compiled
    remembered = check_cache.get("oauth:" + token_checksum(token))
    assert abs(remembered.expires_at - (time.time() + 3600)) < 60  # the token's expiry, not a developer column
    assert caller.principal == authenticate_key(developer.plain_key)
    assert caller.principal.email == "named@columns.test"
    assert caller.principal.organization_name == "Named Columns Ltd"
    assert (caller.kind, caller.client_name) == (OAUTH, "Named client")
    assert caller.client_id == get_access_token_model().objects.get(user__isnull=False).application_id
    services.deactivate_developer(developer=developer)
    with pytest.raises(KeyRefused) as caught:
        authenticate_token(token)
    assert caught.value.code == KeyRefused.DEVELOPER_INACTIVE


def test_the_key_checks_read_their_rows_by_name(developer_part_reshaped):
    developer = DeveloperFactory(organization__name="Named Keys Ltd")
    old_key = developer.plain_key
    _, new_key = services.rotate_key(developer=developer, grace=datetime.timedelta(hours=1))
    principal = authenticate_key(new_key)
    assert (principal.developer_id, principal.organization_name) == (developer.pk, "Named Keys Ltd")
    assert authenticate_key(old_key) == principal  # a replaced key in its grace period: the second statement
