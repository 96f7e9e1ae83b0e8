from engine.domain.formatting import format_bytes, format_duration


def test_durations_read_naturally() -> None:
    assert [format_duration(s) for s in (0, 42.4, 185, 7620, 3 * 86400 + 4 * 3600 + 59)] == [
        "0 s", "42 s", "3 min 05 s", "2 h 07 min", "3 d 4 h"]


def test_sizes_in_powers_of_1024() -> None:
    assert [format_bytes(b) for b in (512, 1536, 264_000_000, 3_500_000_000)] == [
        "512 B", "1.5 KB", "251.8 MB", "3.3 GB"]
