"""What every model admin of the back office shares: writes go through `accounts.services` only.

- The services record every write in the admin history (`accounts.audit`), so the admin's own entries are off, and
  there is no delete (it would bypass the seat bookkeeping, the key-check memory and the history).
- A service that refuses a save the form allowed (a lost race) raises `ServiceRefused` from `save_model`: the
  admin's transaction rolls back, staff see the service's own words, and the page is shown again.
- Actions that act on a selection after a confirmation page all run through `confirmed_action`, and call a service
  per object through `each`, so one refusal is reported and never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from django.contrib import admin, messages
from django.contrib.admin.utils import get_fields_from_path
from django.db.models import Q, QuerySet
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from accounts.admin.pages import confirmation
from accounts.exceptions import AccountsError
from accounts.wording import plural

T = TypeVar("T")

# Above this many selected objects an action asks staff to narrow the selection: the confirmation page lists them
# all, and a key page with hundreds of keys helps nobody.
MAX_ACTION_OBJECTS = 500

REVOKE_PERMISSION = "accounts.revoke_key"
ROTATE_PERMISSION = "accounts.rotate_key"


class YesNoFilter(admin.SimpleListFilter):
    """A list filter with "Yes" (the rows matching `condition()`) and "No" (the others)."""

    def condition(self) -> Q:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(self.condition())
        if self.value() == "no":
            return queryset.exclude(self.condition())
        return queryset


def record_fieldsets(fieldsets: Any, obj: Any) -> list[Any]:
    """A page's fieldsets with its "Record" section (when made and changed) showing the legacy customer id only for a
    row the legacy conversion made: on every other page it was an empty "Legacy customer id: -"."""
    if getattr(obj, "legacy_customer_id", None):
        return list(fieldsets)
    return [
        (name, {**options, "fields": tuple(f for f in options["fields"] if f != "legacy_customer_id")})
        for name, options in fieldsets
    ]


class ReadOnlyAdmin:
    """Mixed in first into the model admin of rows only their own writer makes (the meter report ledger, the alerts
    sent): nobody adds, changes or deletes them here, whatever their model permissions."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ServiceRefused(Exception):
    """A service refused a save after the form validated: roll back, say why, show the page again."""


class ServiceAdmin(admin.ModelAdmin):
    # Query-string lookups a changelist accepts besides its list filters' own (links from other pages).
    extra_lookups: tuple[str, ...] = ()

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        """Only the lookups the list filters offer (and `extra_lookups`). Django allows any lookup on a model field,
        so staff who may only view could filter by a prefix of a stored key hash and recover it a character at a
        time; a lookup not offered is refused (HTTP 400)."""
        return lookup in self._offered_lookups()

    def _offered_lookups(self) -> frozenset[str]:
        offered = set(self.extra_lookups)
        for entry in self.list_filter:
            if isinstance(entry, type) and issubclass(entry, admin.SimpleListFilter):
                offered.add(entry.parameter_name)
                continue
            path = entry[0] if isinstance(entry, tuple | list) else entry
            field = get_fields_from_path(self.model, path)[-1]
            exact = f"{path}__id__exact" if field.is_relation else f"{path}__exact"
            offered |= {exact, f"{path}__isnull"}
        return frozenset(offered)

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> None:
        return None

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> None:
        return None

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_revoke_key_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(REVOKE_PERMISSION)

    def has_rotate_key_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(ROTATE_PERMISSION)

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRefused as exc:
            # The atomic block around the view has rolled everything back.
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    @staticmethod
    def through_service(service: Callable[..., T], **kwargs: Any) -> T:
        """Call a service from `save_model`; a refusal becomes `ServiceRefused` (see the module's docstring)."""
        try:
            return service(**kwargs)
        except AccountsError as exc:
            raise ServiceRefused(exc.message) from exc

    def confirmed_action(
        self,
        request: HttpRequest,
        objects: QuerySet | Sequence[Any],
        *,
        perform: Callable[[list[Any], dict[str, Any]], HttpResponse | None],
        title: str,
        question: str,
        submit: str,
        action: str | None,
        form_class: type[Form] | None = None,
        details: Callable[[Any], str] | None = None,
        hidden: Iterable[tuple[str, str]] = (),
        danger: bool = False,
        limit: int = MAX_ACTION_OBJECTS,
        cancel_url: str | None = None,
    ) -> HttpResponse | None:
        """An action (or button) that asks first: the confirmation page, then — once posted back with `post=yes` and
        its form valid — `perform(objects, form data)`, whose answer (None: back to the list) is the response.

        `action`: the changelist action's name (None for a button on one object's page). Selections larger than
        `limit` are refused with a message.
        """
        count = objects.count() if isinstance(objects, QuerySet) else len(objects)
        if count > limit:
            self.message_user(
                request, f"Select at most {limit} at a time for this action ({count} selected).", messages.WARNING
            )
            return None
        objects = list(objects)
        confirmed = request.method == "POST" and request.POST.get("post") == "yes"
        form = form_class(request.POST if confirmed else None) if form_class is not None else None
        if confirmed and (form is None or form.is_valid()):
            return perform(objects, form.cleaned_data if form is not None else {})
        return confirmation(
            self,
            request,
            title=title,
            question=question,
            objects=objects,
            details=[details(obj) for obj in objects] if details else (),
            submit=submit,
            action=action,
            form=form,
            hidden=hidden,
            danger=danger,
            cancel_url=cancel_url,
        )

    def each(
        self, request: HttpRequest, objects: Iterable[T], write: Callable[[T], Any], *, name: Callable[[T], str] = str
    ) -> list[tuple[T, Any]]:
        """`write(obj)` for each object; a refusal becomes an error message naming the object, and the others go on.
        Returns the objects written, with what `write` returned."""
        done = []
        for obj in objects:
            try:
                done.append((obj, write(obj)))
            except AccountsError as exc:
                self.message_user(request, f"{name(obj)}: {exc.message}", messages.ERROR)
        return done

    def report(self, request: HttpRequest, verb: str, count: int, noun: str, suffix: str = ".") -> None:
        """ "Revoked 3 keys." as a success message."""
        self.message_user(request, f"{verb} {plural(count, noun)}{suffix}", messages.SUCCESS)
