"""The one settings table (engine.config.settings.Settings) is what every part reads: the
loader, `relaydesk settings`, the config-file editor and the README. Each test here walks the
table, so a setting added anywhere but the table, or left out of one of them, fails."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields
from pathlib import Path

import keyring
import keyring.core
import pytest
from keyring.backends import fail

from engine.config.settings import (
    GROUPS,
    LEGACY_NAMES,
    SETTINGS,
    Setting,
    Settings,
    default_settings_text,
    load_settings,
)
from engine.config.settings_store import editable_fields, save, validate

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True)
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """No system keyring (as in CI), and never the developer's real one."""
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)  # restored after the test
    keyring.set_keyring(fail.Keyring())


def sample(setting: Setting) -> str | None:
    """A value other than the default for ``setting``, taken from the table itself."""
    default = default_settings_text()[setting.name]
    others = [c for c in setting.choices if c != default]
    if others:
        return others[0]
    return setting.example if setting.example and setting.example != default else None


def samples() -> dict[str, str]:
    found = {s.name: sample(s) for s in SETTINGS if not s.secret}
    return {name: text for name, text in found.items() if text is not None}


def test_the_table_describes_every_field_of_the_settings_object() -> None:
    assert [s.attr for s in SETTINGS] == [f.name for f in fields(Settings)]
    names = [s.name for s in SETTINGS]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"RELAYDESK_[A-Z0-9_]+", n) for n in names)
    assert {s.group for s in SETTINGS} == set(GROUPS)
    assert all(s.label and s.help for s in SETTINGS)
    # Grouped: the settings of a section are declared together, in the sections' order.
    groups = [s.group for s in SETTINGS]
    assert groups == sorted(groups, key=list(GROUPS).index)
    # An old unprefixed name is migrated to a setting that still exists.
    assert set(LEGACY_NAMES.values()) <= set(names)


def test_each_default_is_what_its_parser_reads_from_the_default_text() -> None:
    defaults, texts = Settings(), default_settings_text()
    for setting in SETTINGS:
        assert setting.parse(texts[setting.name]) == getattr(defaults, setting.attr), \
            setting.name


def test_every_setting_is_loaded_from_its_environment_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    values = samples()
    assert len(values) > len(SETTINGS) / 2  # most settings, not a few
    for name, text in values.items():
        monkeypatch.setenv(name, text)
    settings = load_settings()
    shown = settings.describe()
    assert list(shown) == [s.name for s in SETTINGS]
    for setting in SETTINGS:
        if setting.name in values:
            expected = setting.parse(values[setting.name])
            assert getattr(settings, setting.attr) == expected, setting.name


def test_the_config_file_editor_offers_every_setting_as_the_table_says() -> None:
    shown = editable_fields()
    assert list(shown) == [s.name for s in SETTINGS]
    defaults = default_settings_text()
    for setting in SETTINGS:
        info = shown[setting.name]
        assert (info.label, info.group, info.kind, info.secret, info.help, info.example,
                info.choices, info.minimum, info.maximum, info.providers) == (
            setting.label, setting.group, setting.kind, setting.secret, setting.help,
            setting.example, setting.choices, setting.minimum, setting.maximum,
            setting.providers), setting.name
        assert info.default == defaults[setting.name]


def test_the_config_file_editor_saves_every_setting_under_its_name(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Else the environment would hide the saved ones.
    monkeypatch.delenv("RELAYDESK_DATA_DIR")
    monkeypatch.delenv("RELAYDESK_TIMEZONE")
    values = samples()
    assert validate(values) == {}
    saved = save(values)
    assert set(saved.written) == set(values)
    written = tomllib.loads((tmp_path / "config.toml").read_text(encoding="utf-8"))
    assert set(written) == set(values)
    settings = load_settings()
    for setting in SETTINGS:
        if setting.name in values:
            expected = setting.parse(values[setting.name])
            assert getattr(settings, setting.attr) == expected, setting.name


def test_the_readme_documents_every_setting() -> None:
    readme = README.read_text(encoding="utf-8")
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in readme]
    assert missing == []
