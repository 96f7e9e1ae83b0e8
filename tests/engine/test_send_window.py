"""engine.domain.send_window: the times an operator writes, quiet hours, and a campaign's
"today" and hold judged by the zone it recorded, never by the machine's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.domain.send_window import (
    QuietHours,
    ScheduleError,
    SendWindow,
    parse_when,
    system_timezone,
    zone,
)

NOW = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")
NIGHT = QuietHours.parse("21:00-07:00")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- parse_when ----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("2030-03-05 09:00", utc(2030, 3, 5, 6, 0)),  # Nairobi is UTC+3
    ("2030-03-05 9:05", utc(2030, 3, 5, 6, 5)),
    ("2030-03-05 09:00:30", utc(2030, 3, 5, 6, 0, 30)),
    ("2030-03-05T09:00", utc(2030, 3, 5, 6, 0)),
    ("  2030-03-05 09:00  ", utc(2030, 3, 5, 6, 0)),
    # ISO 8601 with an offset names its own instant, whatever the operator's zone.
    ("2030-03-05T09:00+01:00", utc(2030, 3, 5, 8, 0)),
    ("2030-03-05T09:00:00-05:00", utc(2030, 3, 5, 14, 0)),
    ("2030-03-05T09:00Z", utc(2030, 3, 5, 9, 0)),
])
def test_parse_when_formats(text: str, expected: datetime) -> None:
    when = parse_when(text, "Africa/Nairobi", NOW)
    assert when == expected
    assert when.utcoffset() == timedelta(0), "always handed back as UTC"


@pytest.mark.parametrize("text", ["tomorrow 9am", "2030-03-05", "05/03/2030 09:00",
                                  "2030-03-05 25:00", "2030-02-30 09:00", ""])
def test_parse_when_refuses_what_it_cannot_read_and_says_how_to_write_it(text: str) -> None:
    """Never a bare ValueError: the CLI and Compose show a ScheduleError's text as it is."""
    with pytest.raises(ScheduleError, match=r"is not a time to send at: write YYYY-MM-DD "
                                            r"HH:MM \(in Africa/Nairobi\) or ISO 8601|"
                                            r"is not a time that exists \(.*\): write "
                                            r"YYYY-MM-DD HH:MM in Africa/Nairobi"):
        parse_when(text, "Africa/Nairobi", NOW)


def test_parse_when_refuses_a_past_time() -> None:
    with pytest.raises(ScheduleError, match=r"2030-03-04 11:59 is already past \(it is now "
                                            r"2030-03-04 12:00 in Africa/Nairobi\)"):
        parse_when("2030-03-04 11:59", "Africa/Nairobi", NOW)
    with pytest.raises(ScheduleError, match="already past"):  # the very instant is past too
        parse_when("2030-03-04 12:00", "Africa/Nairobi", NOW)
    assert parse_when("2030-03-04 12:01", "Africa/Nairobi", NOW) == NOW + timedelta(minutes=1)


@pytest.mark.parametrize(("text", "zone_name"), [
    ("9999-12-31 23:59", "America/New_York"),  # past datetime's range once in UTC
    ("9999-12-31T23:00-05:00", "UTC"),
    ("0001-01-01T00:30+14:00", "UTC"),  # before datetime's range once in UTC
    ("3000-01-01 00:00", "UTC"),
])
def test_parse_when_refuses_times_out_of_range_without_a_traceback(text: str,
                                                                   zone_name: str) -> None:
    with pytest.raises(ScheduleError, match="is out of range: choose a time from now to the "
                                            "end of the year 2999"):
        parse_when(text, zone_name, NOW)


def test_parse_when_refuses_an_unknown_zone() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Olympus'"):
        parse_when("2030-03-05 09:00", "Mars/Olympus", NOW)


def test_a_local_time_skipped_by_daylight_saving_is_refused() -> None:
    """Europe/London jumps from 01:00 to 02:00 on 2030-03-31: 01:30 never happens."""
    with pytest.raises(ScheduleError, match="2030-03-31 01:30 does not exist in Europe/London"):
        parse_when("2030-03-31 01:30", "Europe/London", NOW)
    assert parse_when("2030-03-31 02:30", "Europe/London", NOW) == utc(2030, 3, 31, 1, 30)


def test_a_local_time_that_happens_twice_means_the_first() -> None:
    """Europe/London goes back from 02:00 to 01:00 on 2030-10-27: 01:30 happens in summer
    time (00:30 UTC) and again in winter time (01:30 UTC); the first is meant."""
    assert parse_when("2030-10-27 01:30", "Europe/London", NOW) == utc(2030, 10, 27, 0, 30)
    assert parse_when("2030-10-27 02:30", "Europe/London", NOW) == utc(2030, 10, 27, 2, 30)


# --- quiet hours -------------------------------------------------------------------------

def local(zone_name: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone_name))  # type: ignore[misc]


@pytest.mark.parametrize(("hour", "minute", "inside"), [
    (20, 59, False), (21, 0, True), (23, 59, True), (0, 0, True), (6, 59, True),
    (7, 0, False), (12, 0, False)])
def test_quiet_hours_crossing_midnight(hour: int, minute: int, inside: bool) -> None:
    assert NIGHT is not None
    assert NIGHT.contains(local("UTC", 2030, 3, 4, hour, minute)) is inside


def test_quiet_hours_within_a_day() -> None:
    lunch = QuietHours.parse("12:00-14:00")
    assert lunch is not None
    assert [lunch.contains(local("UTC", 2030, 3, 4, h, 0)) for h in (11, 12, 13, 14)] == \
        [False, True, True, False]
    assert str(lunch) == "12:00-14:00"


def test_quiet_hours_end_after() -> None:
    assert NIGHT is not None
    # Late evening: tomorrow morning. Early morning: this morning.
    assert NIGHT.ends_after(local("UTC", 2030, 3, 4, 22, 0)) == local("UTC", 2030, 3, 5, 7, 0)
    assert NIGHT.ends_after(local("UTC", 2030, 3, 4, 6, 0)) == local("UTC", 2030, 3, 4, 7, 0)
    # At the very end the next end is a day away (the caller asks only inside the window).
    assert NIGHT.ends_after(local("UTC", 2030, 3, 4, 7, 0)) == local("UTC", 2030, 3, 5, 7, 0)


def test_quiet_hours_ending_in_a_daylight_saving_gap_end_at_a_real_instant() -> None:
    """A window ending at 01:30 on the night London skips 01:00-02:00 ends at 02:30 BST,
    the instant 01:30 GMT would have been."""
    short = QuietHours.parse("00:30-01:30")
    assert short is not None
    end = short.ends_after(local("Europe/London", 2030, 3, 31, 0, 45))
    assert end.astimezone(UTC) == utc(2030, 3, 31, 1, 30)
    assert end.astimezone(LONDON).hour == 2


@pytest.mark.parametrize(("text", "message"), [
    ("21:00", "is not a window: write START-END"),
    ("25:00-07:00", "is not a time of day: write HH:MM"),
    ("21:00-7", "is not a time of day"),
    ("21:00-21:00", "starts and ends at the same time"),
])
def test_quiet_hours_refusals(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        QuietHours.parse(text)


def test_empty_quiet_hours_are_none() -> None:
    assert QuietHours.parse("") is None
    assert QuietHours.parse("   ") is None


# --- a campaign's window, judged by its recorded zone --------------------------------------

@pytest.fixture
def machine_zone() -> Iterator[object]:
    """Sets the process's own time zone (TZ), as a worker on another machine would have."""
    import os

    before = os.environ.get("TZ")

    def set_zone(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()

    yield set_zone
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_today_is_the_campaigns_day_not_the_machines(machine_zone: object) -> None:
    instant = utc(2030, 3, 7, 22, 0)  # Friday 01:00 in Nairobi, Thursday 17:00 in New York
    nairobi, new_york = SendWindow.of("Africa/Nairobi", None), SendWindow.of("America/New_York",
                                                                             None)
    answers = set()
    for machine in ("Asia/Tokyo", "America/Los_Angeles", "UTC"):
        machine_zone(machine)  # type: ignore[operator]
        answers.add((nairobi.today(instant), new_york.today(instant)))
    assert answers == {(date(2030, 3, 8), date(2030, 3, 7))}


def test_held_until_in_two_zones_agrees_on_every_machine(machine_zone: object) -> None:
    nairobi = SendWindow.of("Africa/Nairobi", "21:00-07:00")
    new_york = SendWindow.of("America/New_York", "21:00-07:00")
    instant = utc(2030, 3, 7, 22, 0)  # 01:00 in Nairobi (quiet), 17:00 in New York (not)
    answers = set()
    for machine in ("Asia/Tokyo", "America/Los_Angeles", "UTC"):
        machine_zone(machine)  # type: ignore[operator]
        answers.add((nairobi.held_until(instant), new_york.held_until(instant)))
    assert answers == {(utc(2030, 3, 8, 4, 0), None)}  # 07:00 in Nairobi
    later = utc(2030, 3, 8, 3, 0)  # 22:00 in New York: quiet there, 06:00 in Nairobi
    assert new_york.held_until(later) == utc(2030, 3, 8, 12, 0)  # 07:00 EST
    assert nairobi.held_until(later) == utc(2030, 3, 8, 4, 0)


def test_held_until_without_quiet_hours_never_holds() -> None:
    window = SendWindow.of("Africa/Nairobi", None)
    assert all(window.held_until(NOW + timedelta(hours=h)) is None for h in range(24))


def test_describe_hold_in_the_campaigns_local_time() -> None:
    window = SendWindow.of("Africa/Nairobi", "21:00-07:00")
    assert window.describe_hold(utc(2030, 3, 8, 4, 0)) == \
        "waiting for the send window (until 07:00)"


def test_a_window_refuses_an_unknown_zone_when_made() -> None:
    with pytest.raises(ScheduleError, match="give an IANA name such as Africa/Nairobi"):
        SendWindow.of("Nairobi", None)


def test_system_timezone_is_a_usable_zone() -> None:
    zone(system_timezone())  # does not raise
