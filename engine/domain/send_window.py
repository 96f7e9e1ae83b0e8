"""When a campaign may send: its time zone, its quiet hours and the time it is scheduled for.

A campaign records the time zone and quiet-hours window it was created with, and every
worker judges it by those, so machines in different zones agree on "today", on
``#days_remain`` and on the window. Everything here is pure: the current time is always
passed in, as an aware datetime, so tests set the clock instead of waiting for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")
_LOCAL_WHEN = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?$")


class ScheduleError(ValueError):
    """A time, time zone or window that cannot be used; the text says how to write it."""


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Africa/Nairobi``); ScheduleError when unknown."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name.strip()!r}: give an IANA name such "
                            "as Africa/Nairobi, Europe/London or UTC") from None


def _clock(text: str) -> time:
    match = _CLOCK.match(text)
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ScheduleError(f"{text.strip()!r} is not a time of day: write HH:MM, e.g. 21:00")
    return time(int(match[1]), int(match[2]))


@dataclass(frozen=True)
class QuietHours:
    """A daily window, in local time, in which nothing is handed to a provider. It may
    cross midnight (``21:00-07:00``)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """``21:00-07:00``; empty means none. ScheduleError says how to write it."""
        if not text.strip():
            return None
        first, sep, second = text.partition("-")
        if not sep:
            raise ScheduleError(f"{text.strip()!r} is not a window: write START-END in "
                                "24-hour time, e.g. 21:00-07:00 (empty for none)")
        window = cls(_clock(first), _clock(second))
        if window.start == window.end:
            raise ScheduleError(f"{text.strip()!r} starts and ends at the same time: give "
                                "a window such as 21:00-07:00, or leave it empty for none")
        return window

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, local: datetime) -> bool:
        """Whether the local wall-clock time ``local`` falls inside the window."""
        now = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def ends_after(self, local: datetime) -> datetime:
        """The first end of the window after ``local`` (same time zone as ``local``)."""
        candidate = datetime.combine(local.date(), self.end, local.tzinfo)
        if candidate <= local:
            candidate = datetime.combine(local.date() + timedelta(days=1), self.end,
                                         local.tzinfo)
        return _existing(candidate)


def _existing(local: datetime) -> datetime:
    """``local`` moved past a gap left by a daylight-saving change (02:30 on the night
    clocks jump from 02:00 to 03:00 becomes 03:30), so it names a real instant."""
    round_trip = local.astimezone(UTC).astimezone(local.tzinfo)
    if round_trip.replace(tzinfo=None) == local.replace(tzinfo=None):
        return local
    return round_trip


@dataclass(frozen=True)
class SendWindow:
    """What a campaign recorded when it was created: its zone and its quiet hours."""

    timezone: str
    quiet_hours: QuietHours | None = None

    @classmethod
    def of(cls, timezone: str, quiet_hours: str | None) -> SendWindow:
        zone(timezone)  # refuse an unknown zone here, not at the first message
        return cls(timezone, QuietHours.parse(quiet_hours or ""))

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.timezone)

    def local(self, now: datetime) -> datetime:
        return now.astimezone(self.zone)

    def today(self, now: datetime) -> date:
        """The campaign's "today" at instant ``now``: what ``#days_remain`` counts from."""
        return self.local(now).date()

    def held_until(self, now: datetime) -> datetime | None:
        """When sending may go on, as aware UTC, if ``now`` is inside the quiet hours;
        None when it may send now."""
        if self.quiet_hours is None:
            return None
        local = self.local(now)
        if not self.quiet_hours.contains(local):
            return None
        return self.quiet_hours.ends_after(local).astimezone(UTC)

    def check_send_time(self, at: datetime, now: datetime, *, owner: str = "the") -> None:
        """ScheduleError when a campaign may not be set to go out at ``at``: already past at
        ``now``, or inside ``owner`` quiet hours (saying when they end)."""
        local = at.astimezone(self.zone)
        if at <= now:
            raise ScheduleError(f"{local:%Y-%m-%d %H:%M} ({self.timezone}) is already past "
                                f"(it is now {self.local(now):%Y-%m-%d %H:%M}): choose a "
                                "later time")
        held = self.held_until(at)
        if held is not None:
            raise ScheduleError(f"{local:%Y-%m-%d %H:%M} is inside {owner} quiet hours "
                                f"({self.quiet_hours}, {self.timezone}): nothing is sent "
                                "then. Choose a time outside them, e.g. "
                                f"{held.astimezone(self.zone):%Y-%m-%d %H:%M}")

    def describe_hold(self, until: datetime) -> str:
        """``waiting for the send window (until 07:00)``, in the campaign's local time."""
        return f"waiting for the send window (until {until.astimezone(self.zone):%H:%M})"


def parse_when(text: str, timezone: str, now: datetime) -> datetime:
    """The instant (aware UTC) the operator means by ``text``: ``YYYY-MM-DD HH:MM[:SS]`` in
    ``timezone``, or ISO 8601 with an offset (``2026-12-03T09:00+03:00``). ScheduleError for
    anything else, and for a time already past at ``now``."""
    raw = text.strip()
    if match := _LOCAL_WHEN.match(raw):
        year, month, day, hour, minute, second = (int(part or 0) for part in match.groups())
        tz = zone(timezone)
        try:  # by its fields: fromisoformat refuses a one-digit hour (9:05)
            local = datetime(year, month, day, hour, minute, second, tzinfo=tz)
        except ValueError as exc:  # 25:00, 30 February
            raise ScheduleError(f"{raw} is not a time that exists ({exc}): write YYYY-MM-DD "
                                f"HH:MM in {timezone}, e.g. 2026-12-03 09:00") from None
        when = _utc(raw, local)
        if when.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
            raise ScheduleError(f"{raw} does not exist in {timezone}: the clocks skip it "
                                "for daylight saving; choose another time")
    else:
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise ScheduleError(f"{raw!r} is not a time to send at: write YYYY-MM-DD HH:MM "
                                f"(in {timezone}) or ISO 8601 with an offset, e.g. "
                                "2026-12-03T09:00+03:00")
        when = _utc(raw, parsed)
    if when <= now:
        raise ScheduleError(f"{raw} is already past (it is now "
                            f"{now.astimezone(zone(timezone)):%Y-%m-%d %H:%M} in {timezone}): "
                            "choose a later time, or send now without --at")
    return when


# A send time is refused beyond this year: the date arithmetic of quiet hours and time zones
# overflows near the end of datetime's range, and no reminder is planned a millennium ahead.
LAST_YEAR = 2999


def _utc(raw: str, when: datetime) -> datetime:
    try:
        utc = when.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or utc.year > LAST_YEAR:
        raise ScheduleError(f"{raw} is out of range: choose a time from now to the end "
                            f"of the year {LAST_YEAR}")
    return utc


def system_timezone() -> str:
    """This computer's IANA time zone name, or ``UTC`` when it cannot be told."""
    try:
        import tzlocal  # imported here: only the default of one setting needs it

        name = tzlocal.get_localzone_name()
    except Exception:  # no zone configured, or an unknown one: UTC is a safe answer
        return "UTC"
    try:
        zone(name or "UTC")
    except ScheduleError:
        return "UTC"
    return name or "UTC"
