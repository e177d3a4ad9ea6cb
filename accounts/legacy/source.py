"""The legacy `customers` rows still to convert, with their values normalised as the conversion rules say, as a
Django queryset over the caller's model registry (the historical models, in a migration).

Normalising: emails are trimmed and lower-cased; Stripe ids, companies and statuses trimmed, blanks as NULL; a
NULL or blank status is `incomplete`. Trimming removes spaces, tabs and line ends (what a pasted value carries), which
Django's `Trim` (spaces only) does not.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import Case, CharField, Exists, F, Func, IntegerField, OuterRef, QuerySet, Value, When
from django.db.models.functions import Cast, Coalesce, Lower, NullIf, Replace

from accounts.choices import STATUS_STANDING, SubscriptionStatus


class TrimWhitespace(Func):
    """Spaces, tabs and line ends removed from both ends of a text."""

    function = "TRIM"
    output_field = CharField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        return self.as_sql(compiler, connection, template="btrim(%(expressions)s, E' \\t\\r\\n')", **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        return self.as_sql(compiler, connection, template="trim(%(expressions)s, ' ' || char(9, 10, 13))", **extra)


@dataclass(frozen=True)
class Legacy:
    """The models the conversion reads and writes, from one registry, and the connection it runs on."""

    connection: Any
    customer: Any
    organization: Any
    developer: Any

    @classmethod
    def from_apps(cls, apps: Any, connection: Any) -> Legacy:
        return cls(
            connection=connection,
            customer=apps.get_model("accounts", "LegacyCustomer"),
            organization=apps.get_model("accounts", "Organization"),
            developer=apps.get_model("accounts", "Developer"),
        )

    def table(self, model: Any) -> str:
        return self.connection.ops.quote_name(model._meta.db_table)

    def existing_tables(self) -> set[str]:
        with self.connection.cursor() as cursor:
            return set(self.connection.introspection.table_names(cursor))

    def customers_table_exists(self) -> bool:
        return self.customer._meta.db_table in self.existing_tables()

    def targets_exist(self) -> bool:
        """False before Hotcross's own tables exist (`orgs legacy-report` on the old database, before any migrate):
        then nothing has been converted yet and nothing can collide."""
        return {self.organization._meta.db_table, self.developer._meta.db_table} <= self.existing_tables()

    def limit(self, model: Any, field: str) -> int | None:
        """A column's length limit as the registry's model declares it (None: unbounded)."""
        return model._meta.get_field(field).max_length

    def customers(self) -> QuerySet:
        return self.customer._default_manager.using(self.connection.alias).order_by()

    def pending(self) -> QuerySet:
        """Customers without a developer yet, annotated with their normalised values (`PENDING_COLUMNS`)."""
        customers = self.customers().annotate(
            customer_id=_customer_id(self.connection),
            id_text=Cast("customer_id", CharField()),
            norm_email=Lower(TrimWhitespace(Coalesce(F("email"), Value("")))),
            stripe_id=NullIf(TrimWhitespace(F("stripe_customer_id")), Value("")),
            company_name=NullIf(TrimWhitespace(F("company")), Value("")),
            status=Coalesce(
                NullIf(Lower(TrimWhitespace(F("subscription_status"))), Value("")),
                Value(SubscriptionStatus.INCOMPLETE.value),
            ),
        )
        customers = customers.annotate(
            status_rank=Case(
                *(When(status=status.value, then=Value(rank)) for rank, status in enumerate(STATUS_STANDING)),
                default=None,
                output_field=IntegerField(),
            )
        )
        if self.targets_exist():
            converted = self.developer._default_manager.filter(legacy_customer_id=OuterRef("customer_id"))
            customers = customers.filter(~Exists(converted))
        return customers


# What a pending row is made of, in order (the temporary table's columns; the INSERTs read these names).
PENDING_COLUMNS = (
    "customer_id",
    "id_text",
    "norm_email",
    "stripe_id",
    "company_name",
    "status",
    "status_rank",
    "subscription_status",
    "first_name",
    "last_name",
    "api_key_hash",
    "api_key_prefix",
    "api_key_created_at",
    "api_key_revoked_at",
    "api_key_last_used_at",
    "created_at",
)


def _customer_id(connection: Any) -> Any:
    """The customer's id as Django stores UUIDs on this database. On SQLite that is 32 hex digits; a legacy table that
    kept the dashes is accepted."""
    if connection.vendor == "sqlite":
        return Replace(Lower(Cast("id", CharField())), Value("-"), Value(""))
    return F("id")


def uuid_text(value: Any) -> str:
    """A customer id as people read it (SQLite hands back 32 hex digits)."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)
