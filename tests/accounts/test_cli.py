"""`manage.py orgs`: every verb, its --json shape, and its mistakes (clear error, exit non-zero, nothing written)."""

import io
import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accounts import keys
from accounts.authentication import authenticate_key
from accounts.models import Developer, Organization
from tests.factories import DeveloperFactory, OrganizationFactory
from tests.support.database import database_url
from tests.support.servers import ROOT

pytestmark = pytest.mark.django_db

ORG_KEYS = {"id", "name", "stripe_customer_id", "subscription_status", "max_seats", "seats_in_use", "pricing_model"}
DEV_KEYS = {
    "id",
    "organization_id",
    "email",
    "first_name",
    "last_name",
    "api_key_prefix",
    "is_active",
    "api_key_revoked_at",
    "api_key_last_used_at",
}


def orgs(*args: str) -> str:
    out = io.StringIO()
    call_command("orgs", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def orgs_json(*args: str):
    return json.loads(orgs(*args, "--json"))


def everything() -> tuple:
    return (
        sorted(Organization.objects.values_list("id", "name", "subscription_status", "max_seats")),
        sorted(Developer.objects.values_list("id", "email", "api_key_hash", "api_key_revoked_at", "is_active")),
    )


class TestOrganizations:
    def test_create_org_with_the_old_positional_arguments(self):
        data = orgs_json("create-org", "Acme Corp", "cus_123", "5")
        assert ORG_KEYS <= data.keys()
        assert data["name"] == "Acme Corp"
        assert data["stripe_customer_id"] == "cus_123"
        assert (data["max_seats"], data["seats_in_use"]) == (5, 0)
        assert data["subscription_status"] == "incomplete"
        assert Organization.objects.get(pk=data["id"]).max_seats == 5

    def test_create_org_with_name_only_and_options(self):
        data = orgs_json("create-org", "Solo", "--status", "active", "--pricing-model", "per_developer")
        assert (data["stripe_customer_id"], data["max_seats"]) == (None, 1)
        assert (data["subscription_status"], data["pricing_model"]) == ("active", "per_developer")

    def test_human_output_is_a_table(self):
        text = orgs("create-org", "Acme Corp", "cus_9", "3")
        assert "NAME" in text and "Acme Corp" in text and "0/3" in text

    def test_list_orgs(self):
        org = OrganizationFactory(name="Acme", max_seats=2)
        DeveloperFactory(organization=org)
        DeveloperFactory(organization=org, api_key_revoked_at=timezone.now())
        OrganizationFactory(name="Beta", subscription_status="canceled")
        data = orgs_json("list-orgs")
        assert [o["name"] for o in data] == ["Acme", "Beta"]
        assert all(ORG_KEYS <= o.keys() for o in data)
        assert data[0]["seats_in_use"] == 1
        assert [o["name"] for o in orgs_json("list-orgs", "--status", "canceled")] == ["Beta"]
        assert "Acme" in orgs("list-orgs")

    def test_list_orgs_when_there_are_none(self):
        assert orgs_json("list-orgs") == []
        assert "No organizations" in orgs("list-orgs")

    def test_update_status(self):
        org = OrganizationFactory(subscription_status="incomplete")
        assert "incomplete → past_due" in orgs("update-status", str(org.id), "past_due")
        # Stripe's values are accepted in any letter case and with stray spaces.
        assert orgs_json("update-status", str(org.id), " Active")["subscription_status"] == "active"
        org.refresh_from_db()
        assert org.subscription_status == "active"

    def test_update_seats_below_use_warns_and_flags(self):
        org = OrganizationFactory(max_seats=3)
        DeveloperFactory.create_batch(3, organization=org)
        err = io.StringIO()
        call_command("orgs", "update-seats", str(org.id), "1", stdout=io.StringIO(), stderr=err)
        assert "the 2 newest seat holders are refused" in err.getvalue()
        data = orgs_json("update-seats", str(org.id), "1")
        assert (data["max_seats"], data["seats_in_use"], data["over_seat_limit"]) == (1, 3, True)

    def test_show_org_lists_developers_in_seat_order_with_who_has_no_access(self):
        org = OrganizationFactory(max_seats=1)
        first = DeveloperFactory(organization=org)
        second = DeveloperFactory(organization=org)
        data = orgs_json("show-org", str(org.id))
        assert ORG_KEYS <= data.keys()
        assert [(d["id"], d["seat_rank"], d["over_seat_limit"]) for d in data["developers"]] == [
            (str(first.id), 1, False),
            (str(second.id), 2, True),
        ]
        assert all(DEV_KEYS <= d.keys() for d in data["developers"])
        assert "(no access)" in orgs("show-org", str(org.id))


class TestDevelopers:
    def test_create_dev_prints_the_key_once_and_it_works(self):
        org = OrganizationFactory(name="Acme", max_seats=2)
        data = orgs_json("create-dev", str(org.id), "Alice@Acme.com", "Alice", "Smith")
        assert DEV_KEYS | {"api_key"} <= data.keys()
        assert data["email"] == "alice@acme.com"
        assert data["api_key"].startswith("hc_live_")
        assert authenticate_key(data["api_key"]).organization_name == "Acme"
        assert Developer.objects.get(pk=data["id"]).api_key_hash == keys.hash_key(data["api_key"])

    def test_create_dev_human_output_shows_the_key(self):
        org = OrganizationFactory()
        text = orgs("create-dev", str(org.id), "bob@acme.com", "Bob", "Jones")
        key = next(word for word in text.split() if word.startswith("hc_live_"))
        assert authenticate_key(key).email == "bob@acme.com"
        assert "shown only this once" in text

    def test_list_devs_all_and_of_one_organization(self):
        a = DeveloperFactory(email="a@x.com", organization__name="A")
        DeveloperFactory(email="b@x.com", organization__name="B")
        everyone = orgs_json("list-devs")
        assert [d["email"] for d in everyone] == ["a@x.com", "b@x.com"]
        assert all(DEV_KEYS <= d.keys() and "api_key" not in d for d in everyone)
        assert [d["email"] for d in orgs_json("list-devs", str(a.organization_id))] == ["a@x.com"]

    def test_list_devs_names_each_developer_s_organization(self):
        DeveloperFactory(email="a@x.com", organization__name="Acme Corp")
        assert "Acme Corp" in orgs("list-devs").splitlines()[1]

    def test_revoke_dev(self):
        dev = DeveloperFactory()
        data = orgs_json("revoke-dev", str(dev.id))
        assert data["api_key_revoked_at"] is not None
        assert "already revoked" in orgs("revoke-dev", str(dev.id))

    def test_rotate_key(self):
        dev = DeveloperFactory()
        data = orgs_json("rotate-key", str(dev.id))
        assert DEV_KEYS | {"api_key"} <= data.keys()
        assert authenticate_key(data["api_key"]).developer_id == dev.id
        assert data["api_key_prefix"] == data["api_key"][:12] != dev.api_key_prefix

    def test_deactivate_and_activate(self):
        dev = DeveloperFactory()
        assert orgs_json("deactivate-dev", str(dev.id))["is_active"] is False
        assert "already inactive" in orgs("deactivate-dev", str(dev.id))
        assert orgs_json("activate-dev", str(dev.id))["is_active"] is True

    def test_set_key_expiry(self):
        dev = DeveloperFactory()
        data = orgs_json("set-key-expiry", str(dev.id), "2030-01-31T00:00:00+00:00")
        assert data["api_key_expires_at"] == "2030-01-31T00:00:00+00:00"
        assert orgs_json("set-key-expiry", str(dev.id), "never")["api_key_expires_at"] is None


class TestMistakes:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["show-org", "not-a-uuid"], "'not-a-uuid' is not a valid organization id"),
            (["show-org", str(uuid.UUID(int=1))], "No organization has the id"),
            (["update-status", "{org}", "bogus"], "'bogus' is not a subscription status"),
            (["update-seats", "{org}", "-2"], "whole number of 0 or more"),
            (["update-seats", "{org}", "99999999999"], "at most 2147483647"),
            (["create-org", "Huge", "cus_huge", "99999999999"], "at most 2147483647"),
            (["create-dev", "{org}", "TAKEN@example.com", "A", "B"], "taken@example.com already exists"),
            (["create-dev", "{full}", "new@example.com", "A", "B"], "uses 1 of 1 seat"),
            (["create-dev", "{org}", "not an email", "A", "B"], "email"),
            (["revoke-dev", "nope"], "'nope' is not a valid developer id"),
            (["rotate-key", str(uuid.UUID(int=2))], "No developer has the id"),
            (["create-org", "Dup", "cus_taken"], "already has the Stripe customer id cus_taken"),
            (["create-org", "Neg", "cus_new", "-1"], "max seats"),
            (["set-key-expiry", "{dev}", "tomorrow"], "is not a time"),
            (["set-key-expiry", "{dev}", "2030-01-01T00:00"], "has no offset"),
            (["update-seats", "{org}", "ten"], "invalid int value"),
            (["frobnicate"], "invalid choice"),
        ],
    )
    def test_is_refused_with_a_clear_error_and_changes_nothing(self, args, message):
        org = OrganizationFactory(stripe_customer_id="cus_taken", max_seats=5)
        full = OrganizationFactory(max_seats=1)
        DeveloperFactory(organization=full, email="taken@example.com")
        dev = DeveloperFactory(organization=org)
        args = [a.format(org=org.id, full=full.id, dev=dev.id) for a in args]
        before = everything()
        with pytest.raises(CommandError, match=message):
            call_command("orgs", *args, stdout=io.StringIO(), stderr=io.StringIO())
        assert everything() == before


@pytest.mark.django_db(transaction=True)
def test_from_a_shell_a_mistake_is_one_line_on_stderr_and_a_non_zero_exit():
    """The real process: exit code, stderr and stdout as an operator sees them."""
    org = OrganizationFactory(max_seats=1)
    DeveloperFactory(organization=org)
    env = {**os.environ, "DATABASE_URL": database_url(), "SECRET_KEY": "test", "DEBUG": "false"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "orgs", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    # None of them changes anything (each is refused, or only reads): they run at once, a few at a time, and the
    # database is checked unchanged once they are all done (at the end).
    commands = {
        "refused": ("create-dev", str(org.id), "x@example.com", "X", "Y"),
        "bad_arg": ("update-seats", str(org.id), "many"),
        "frobnicate": ("frobnicate",),
        "no_verb": (),
        "too_many": ("update-seats", str(org.id), "99999999999"),
        "listed": ("list-orgs", "--json"),
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = dict(zip(commands, pool.map(lambda args: run(*args), commands.values()), strict=True))

    refused = done["refused"]
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"CommandError: {org.name} uses 1 of 1 seat. Add seats, or revoke or deactivate a developer first."
    ]
    assert refused.stdout == ""

    bad_arg = done["bad_arg"]
    assert bad_arg.returncode == 2
    assert len(bad_arg.stderr.strip().splitlines()) == 1
    assert "invalid int value: 'many'" in bad_arg.stderr

    for mistyped in ("frobnicate", "no_verb"):
        unknown = done[mistyped]
        assert unknown.returncode == 2
        assert len(unknown.stderr.strip().splitlines()) == 1, unknown.stderr
        assert "VERB" in unknown.stderr and "--help" in unknown.stderr

    too_many = done["too_many"]
    assert too_many.returncode == 1
    assert too_many.stderr.strip().splitlines() == [
        "CommandError: max seats: a whole number of 0 or more (at most 2147483647), not 99999999999."
    ]

    listed = done["listed"]
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["seats_in_use"] == 1
    assert Developer.objects.count() == 1
    org.refresh_from_db()
    assert org.max_seats == 1


class TestHostileNames:
    """Names come from customers and from Stripe-linked data: escape sequences and line breaks in them must not reach
    the operator's terminal as such (JSON output escapes them already)."""

    CLEAR_SCREEN = "\x1b[2J\x1b[H"

    def test_tables_and_messages_escape_control_characters(self):
        org = OrganizationFactory(name=f"Evil{self.CLEAR_SCREEN}Corp\nFAKE  active  9/9", max_seats=1)
        DeveloperFactory(organization=org, first_name="Bell\a", last_name="Back\bspace")
        outputs = [
            orgs("list-orgs"),
            orgs("show-org", str(org.id)),
            orgs("list-devs"),
            orgs("update-status", str(org.id), "active"),
            orgs("update-seats", str(org.id), "0"),
        ]
        for text in outputs:
            assert "\x1b" not in text and "\a" not in text and "\b" not in text
            assert "FAKE" not in "".join(line for line in text.splitlines() if line.startswith("FAKE"))
            assert "\\x1b[2J" in text or "Bell" in text
        table = orgs("list-orgs").splitlines()
        assert len(table) == 2  # the header and one row: the name's line break did not make a second row
        assert json.loads(orgs("list-orgs", "--json"))[0]["name"] == org.name

    def test_refusal_messages_escape_names_too(self):
        org = OrganizationFactory(name=f"Full{self.CLEAR_SCREEN}Co", max_seats=0)
        with pytest.raises(CommandError) as refused:
            orgs("create-dev", str(org.id), "x@example.com", "X", "Y")
        assert "\x1b" not in str(refused.value) and "\\x1b[2J" in str(refused.value)
