"""The bounce dashboard in the admin: bounces per day by kind, and totals.

Support staff see at a glance whether bouncing is normal today: messages to the
bounce address per day by kind for the last 30 or 90 days (a server-rendered SVG
chart, see :mod:`bounce_tracker.admin.charts`, with the same numbers as a table), how
many addresses are not sent to now, how many messages the classifier failed on
wait for review, and which recipient domains and reporting MTAs bounce most.

The page costs the same handful of queries whatever the amount of data: each
figure is one aggregate query.

Days are calendar days in the current time zone. On MySQL/MariaDB that needs the
server's time zone tables (``mysql_tzinfo_to_sql``) whenever the time zone is not
UTC; without them the database can't place events on a day, and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.core.exceptions import PermissionDenied
from django.db.models import CharField, Count, F, Func, QuerySet, Value
from django.db.models.functions import Coalesce, Lower, NullIf, StrIndex, Substr, TruncDate
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from bounce_tracker.admin.charts import Series, stacked_bar_chart
from bounce_tracker.core.kinds import COUNTED_KINDS, BounceKind
from bounce_tracker.core.settings import get_settings
from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage
from bounce_tracker.policy import AddressState, address_state_q

#: The periods the dashboard offers, in days; the first is the default.
PERIOD_CHOICES = (30, 90)
DEFAULT_PERIOD_DAYS = PERIOD_CHOICES[0]
#: How many recipient domains and reporting MTAs the top lists show.
TOP_LIMIT = 10
#: The "bounces this week" card counts this many days, today included.
RECENT_DAYS = 7
#: The order kinds are stacked (bottom-up) and listed in: what needs attention first.
KIND_ORDER = (
    BounceKind.HARD,
    BounceKind.SOFT,
    BounceKind.COMPLAINT,
    BounceKind.DELAYED,
    BounceKind.AUTO_REPLY,
    BounceKind.DELIVERED,
    BounceKind.NOT_BOUNCE,
)
TEMPLATE_NAME = "admin/bounce_tracker/dashboard.html"
#: The permission the page needs: it shows what the bounce history holds.
REQUIRED_PERMISSION = "bounce_tracker.view_bounceevent"


@dataclass(frozen=True)
class KindCounts:
    """The number of events of one kind on each day of the period."""

    kind: str
    label: str
    per_day: list[int]

    @property
    def total(self) -> int:
        """Events of this kind in the whole period."""
        return sum(self.per_day)


@dataclass(frozen=True)
class DailyCounts:
    """Events per day by kind over a period of whole days ending today.

    ``kinds`` lists every known kind (in :data:`KIND_ORDER`) and then any other
    value found in the database, each with one count per entry of ``days``.
    ``undated`` counts events the database could not place on a day (MySQL or
    MariaDB without time zone tables, when the time zone is not UTC).
    """

    days: list[date]
    kinds: list[KindCounts]
    undated: int

    @property
    def total(self) -> int:
        """Events of every kind in the period."""
        return sum(kind.total for kind in self.kinds)

    @property
    def summary(self) -> str:
        """E.g. "1 hard bounce, 13 soft bounce": the kinds that occurred, with counts."""
        return ", ".join(f"{kind.total} {kind.label}" for kind in self.kinds if kind.total)

    def total_of(self, kinds: frozenset[BounceKind], last_days: int | None = None) -> int:
        """Events of ``kinds`` in the period, or in its last ``last_days`` days."""
        start = len(self.days) - last_days if last_days is not None else 0
        return sum(sum(k.per_day[max(start, 0) :]) for k in self.kinds if k.kind in kinds)

    def rows(self) -> list[tuple[date, list[int], int]]:
        """One ``(day, counts in the order of kinds, total)`` per day, for the data table."""
        rows = []
        for index, day in enumerate(self.days):
            counts = [kind.per_day[index] for kind in self.kinds]
            rows.append((day, counts, sum(counts)))
        return rows


@dataclass(frozen=True)
class SuppressionTotals:
    """Addresses not sent to now, by why (addresses ignoring bounces are never counted)."""

    #: Marked suppressed: hard bounce, complaint or staff.
    marked: int
    #: Not marked, but over the soft-bounce threshold (the policy's time-based rule).
    soft_threshold: int

    @property
    def total(self) -> int:
        """Every address the default policy would not send to now."""
        return self.marked + self.soft_threshold


@dataclass(frozen=True)
class TopEntry:
    """A name (domain or host) and how many bounces it had in the period."""

    name: str
    count: int


def parse_period_days(request: HttpRequest) -> int:
    """The ``days`` query parameter when it is one of :data:`PERIOD_CHOICES`, else the default."""
    value = request.GET.get("days", "")
    return int(value) if value in {str(days) for days in PERIOD_CHOICES} else DEFAULT_PERIOD_DAYS


def _local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def period_bounds(days: int, now: datetime | None = None) -> tuple[list[date], datetime, datetime]:
    """The ``days`` calendar days ending today (current time zone), and their start and end.

    The end is the start of tomorrow, so events stamped later today are included.
    """
    today = timezone.localdate(now or timezone.now())
    day_list = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    return day_list, _local_midnight(day_list[0]), _local_midnight(today + timedelta(days=1))


def events_in_period(start: datetime, end: datetime) -> QuerySet[BounceEvent]:
    """Bounce events received from ``start`` up to (not including) ``end``."""
    return BounceEvent.objects.filter(received_at__gte=start, received_at__lt=end)


def daily_counts_by_kind(days: int, now: datetime | None = None) -> DailyCounts:
    """Events per day and kind for the last ``days`` days, missing days as zero; one query."""
    day_list, start, end = period_bounds(days, now)
    grouped = (
        events_in_period(start, end)
        .annotate(day=TruncDate("received_at", tzinfo=timezone.get_current_timezone()))
        .values("day", "kind")
        .annotate(events=Count("pk"))
        .order_by()  # the model's default ordering would split the groups
    )
    position = {day: index for index, day in enumerate(day_list)}
    per_kind: dict[str, list[int]] = {kind.value: [0] * days for kind in KIND_ORDER}
    undated = 0
    for row in grouped:
        index = position.get(row["day"])
        if index is None:
            undated += row["events"]
            continue
        per_kind.setdefault(row["kind"], [0] * days)[index] += row["events"]
    known = {kind.value: kind.label for kind in KIND_ORDER}
    unknown = sorted(set(per_kind) - set(known))
    kinds = [KindCounts(value, known.get(value, value), per_kind[value]) for value in known]
    kinds += [KindCounts(value, value, per_kind[value]) for value in unknown]
    return DailyCounts(days=day_list, kinds=kinds, undated=undated)


def suppression_totals(now: datetime | None = None) -> SuppressionTotals:
    """How many addresses are not sent to now, marked and over the soft threshold; two queries.

    The soft-threshold figure uses the rule the admin's state filter uses
    (:func:`bounce_tracker.policy.address_state_q`), so the two always agree.
    """
    soft = address_state_q(AddressState.SUPPRESSED_SOFT_THRESHOLD, get_settings(), now)
    return SuppressionTotals(
        marked=EmailAddressTracker.objects.suppressed().count(),
        soft_threshold=EmailAddressTracker.objects.filter(soft).count(),
    )


def messages_needing_review() -> int:
    """Messages the classifier failed on, kept in unmatched mail for review; one query.

    All of them, not only the period's: each is a bounce not counted until staff
    attach it (see :func:`bounce_tracker.core.events.store_for_review`).
    """
    return UnmatchedMessage.objects.filter(needs_review=True).count()


def _top(queryset: QuerySet[BounceEvent], name: Func, limit: int) -> list[TopEntry]:
    """The ``limit`` most frequent values of ``name`` (ties by name), with their counts."""
    rows = queryset.values(name=name).annotate(bounces=Count("pk")).order_by("-bounces", "name")
    return [TopEntry(row["name"], row["bounces"]) for row in rows[:limit]]


def top_recipient_domains(start: datetime, end: datetime, limit: int = TOP_LIMIT) -> list[TopEntry]:
    """The recipient domains with the most hard and soft bounces in the period; one query.

    The domain is taken from the failed recipient the report names, or from the
    tracked address when the report names none.
    """
    address = Coalesce(
        NullIf(F("recipient"), Value("")), F("tracker__email"), output_field=CharField()
    )
    queryset = (
        events_in_period(start, end)
        .filter(kind__in=[kind.value for kind in COUNTED_KINDS])
        .annotate(address=address)
        .filter(address__contains="@")
    )
    return _top(queryset, Lower(Substr("address", StrIndex("address", Value("@")) + 1)), limit)


def top_reporting_mtas(start: datetime, end: datetime, limit: int = TOP_LIMIT) -> list[TopEntry]:
    """The reporting MTAs (hosts) with the most hard and soft bounces in the period; one query."""
    queryset = (
        events_in_period(start, end)
        .filter(kind__in=[kind.value for kind in COUNTED_KINDS])
        .exclude(reporting_mta="")
    )
    return _top(queryset, Lower("reporting_mta"), limit)


def _day_label(day: date) -> str:
    return date_format(day, "j M")


def chart_description(counts: DailyCounts) -> str:
    """The chart's summary in words, e.g. ``"… 1 Apr to 30 Apr: 12 hard bounce, …"``."""
    period = (
        f"Messages to the bounce address per day for the last {len(counts.days)} days, "
        f"{_day_label(counts.days[0])} to {_day_label(counts.days[-1])}"
    )
    if not counts.total:
        return f"{period}: none."
    by_kind = counts.summary
    busiest_index = max(
        range(len(counts.days)), key=lambda i: sum(k.per_day[i] for k in counts.kinds)
    )
    busiest_total = sum(kind.per_day[busiest_index] for kind in counts.kinds)
    return (
        f"{period}: {by_kind}; {counts.total} in all. "
        f"Busiest day {_day_label(counts.days[busiest_index])} with {busiest_total}."
    )


def bounce_chart_svg(counts: DailyCounts) -> SafeString:
    """The stacked bar chart of ``counts`` as inline SVG."""
    return stacked_bar_chart(
        categories=[_day_label(day) for day in counts.days],
        series=[Series(kind.label, kind.per_day) for kind in counts.kinds],
        title=f"Messages to the bounce address per day by kind, last {len(counts.days)} days",
        description=chart_description(counts),
        x_axis_label="Day",
        y_axis_label="Messages",
        id_prefix="bounce-chart",
        empty_text="none",
    )


def dashboard_context(days: int, now: datetime | None = None) -> dict[str, object]:
    """Everything the dashboard template shows, for a period of ``days`` days."""
    now = now or timezone.now()
    counts = daily_counts_by_kind(days, now)
    _, start, end = period_bounds(days, now)
    changelist = reverse("admin:bounce_tracker_emailaddresstracker_changelist")
    domains = [
        (entry, f"{changelist}?{urlencode({'q': '@' + entry.name})}")
        for entry in top_recipient_domains(start, end)
    ]
    return {
        "days": days,
        "period_choices": PERIOD_CHOICES,
        "counts": counts,
        "chart": bounce_chart_svg(counts),
        "suppression": suppression_totals(now),
        "needs_review": messages_needing_review(),
        "review_url": reverse("admin:bounce_tracker_unmatchedmessage_changelist")
        + "?"
        + urlencode({"needs_review__exact": "1"}),
        "recent_days": RECENT_DAYS,
        "recent_bounces": counts.total_of(COUNTED_KINDS, last_days=RECENT_DAYS),
        "top_domains": domains,
        "top_mtas": top_reporting_mtas(start, end),
        "changelist_url": changelist,
    }


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """The dashboard page (admin-wrapped by EmailAddressTrackerAdmin.get_urls).

    Needs the permission to view bounce events; ``?days=90`` shows 90 days instead of 30.
    """
    user = request.user
    if not (user.is_active and user.is_staff and user.has_perm(REQUIRED_PERMISSION)):
        raise PermissionDenied
    # Imported here: the admin site is only needed when the page is shown.
    from django.contrib.admin import site

    days = parse_period_days(request)
    context = {
        **site.each_context(request),
        "title": "Bounce dashboard",
        "opts": EmailAddressTracker._meta,
        **dashboard_context(days),
    }
    return TemplateResponse(request, TEMPLATE_NAME, context)
