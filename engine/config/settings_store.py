"""Settings the console's Settings page edits: what to show, how to check, where to save.

- ``editable_fields()`` describes every setting for a form: label, group, kind, help, the
  value in force and where it comes from (secrets only say *whether* they are set).
- ``validate(values)`` checks what the operator typed with the same parsers every process
  uses, plus checks across settings; it answers setting name -> what to do.
- ``save(values)`` writes the config file every process reads (``config.toml`` or
  ``RELAYDESK_CONFIG_FILE``): atomically, mode 0600, keeping every key it was not given.
  Secrets go to the system keyring when there is one (the file's ``[keyring]`` table lists
  them) and into the 0600 file otherwise.

Values are the text the operator typed, keyed by environment-variable name. For a
non-secret, an empty text means "back to the default" (the key leaves the file). For a
secret, an empty text means "unchanged"; to remove a secret, name it in ``clear``. A URL
whose password is shown masked (``redis://:****@host``) keeps the password in force.
Integer settings are written as TOML integers, everything else as strings (so a price such
as ``0.0079`` is kept exactly). ``save`` rewrites the file, so comments in it are lost.
Values in the environment or an env file (``--env-file``) still win over the file: ``save``
reports which of the saved values they hide.

What each setting is (label, section, kind, help, checks) comes from the one settings table,
``engine.config.settings.Settings``; nothing here lists settings.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from filelock import FileLock

from engine.config.config_document import toml_document, write_private_file
from engine.config.masking import MASK, restore_masked_url, still_masked
from engine.config.settings import (
    GROUPS,
    INSPECTOR_REFUSED,
    KEYRING_TABLE,
    SETTINGS,
    Kind,
    Setting,
    Settings,
    SettingsError,
    Source,
    config_file_path,
    default_settings_text,
    keyring_service,
    load_settings,
    masked_value,
    raw_values,
    usable_keyring,
)

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

log = logging.getLogger(__name__)

SecretStore = Literal["keyring", "config file"]

_SHADOWING: tuple[Source, ...] = ("command line", "environment", "env file")
_FIELDS = {s.name: s for s in SETTINGS}
_PROVIDER_NAMES = {"http": "the generic HTTP gateway", "twilio": "Twilio",
                   "africastalking": "Africa's Talking"}


@dataclass(frozen=True)
class FieldInfo:
    """One setting as a form shows it. ``value`` never holds a secret: it is "" for
    secrets (see ``is_set``) and URLs show their password masked."""

    name: str  # the environment-variable name, the key for validate() and save()
    label: str
    group: str
    kind: Kind
    secret: bool
    help: str
    example: str  # a sample value, e.g. for a placeholder
    choices: tuple[str, ...]
    minimum: float | None
    maximum: float | None
    providers: tuple[str, ...]  # only these SMS providers use it (empty: every one)
    default: str  # the built-in default as text, "" when it is unset
    value: str  # the value in force as text
    is_set: bool  # a source other than the defaults sets it
    source: Source  # where the value in force comes from


@dataclass(frozen=True)
class SavedSettings:
    """What save() did. Holds names and places, never a value."""

    path: Path
    written: tuple[str, ...]  # settings whose value the file now holds anew
    removed: tuple[str, ...]  # settings taken out of the file: back to their default
    secrets: dict[str, SecretStore] = field(default_factory=dict)  # where each secret went
    cleared: tuple[str, ...] = ()  # secrets removed from the file and the keyring
    shadowed: dict[str, Source] = field(default_factory=dict)  # saved but overridden by
    keyring_service: str | None = None  # the keyring service holding this file's secrets


class SettingsValidationError(SettingsError):
    """save() was given values that do not pass validate(); ``errors`` has the details."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("settings not saved: " + " ".join(errors.values()))


def _environ(environ: Mapping[str, str] | None, config_path: Path | None) -> Mapping[str, str]:
    environ = os.environ if environ is None else environ
    if config_path is None:
        return environ
    return {**environ, "RELAYDESK_CONFIG_FILE": str(config_path)}


def _shown(name: str, raw: str) -> str:
    if _FIELDS[name].secret:
        return ""
    return str(masked_value(_FIELDS[name], raw) or "")


def editable_fields(environ: Mapping[str, str] | None = None,
                    config_path: Path | None = None) -> dict[str, FieldInfo]:
    """Every setting, grouped in GROUPS order, with the value in force and its source.
    Reads the environment, the env file and config file but never the keyring (no prompt,
    fast)."""
    env = _environ(environ, config_path)
    current = raw_values(environ=env, read_keyring=False)
    defaults = default_settings_text()
    infos: dict[str, FieldInfo] = {}
    for group in GROUPS:
        for spec in SETTINGS:
            if spec.group != group:
                continue
            raw, source = current.get(spec.name, (defaults[spec.name], "default"))
            infos[spec.name] = FieldInfo(
                name=spec.name, label=spec.label, group=group, kind=spec.kind,
                secret=spec.secret, help=spec.help, example=spec.example,
                choices=spec.choices, minimum=spec.minimum, maximum=spec.maximum,
                providers=spec.providers, default=defaults[spec.name],
                value=_shown(spec.name, raw), is_set=source != "default", source=source)
    return infos


def preview_settings(values: Mapping[str, str], *, clear: Collection[str] = (),
                     environ: Mapping[str, str] | None = None,
                     config_path: Path | None = None) -> Settings:
    """The settings as they would be with the form's values in force (unsaved), e.g. for
    ``connection_checks.check_provider``. Same conventions as ``save``; reads secrets not
    typed on the form from their sources, the keyring included. Raises SettingsError for a
    value validate() would reject."""
    env = _environ(environ, config_path)
    current = raw_values(environ=env, read_keyring=False)
    defaults = default_settings_text()
    overrides: dict[str, str] = {}
    for name, typed in values.items():
        spec = _FIELDS.get(name)
        if spec is None or (spec.secret and not typed):
            continue
        text = typed
        if spec.url:
            text = restore_masked_url(text, current.get(name, ("", "default"))[0])
        overrides[name] = text if text.strip() else defaults[name]
    overrides.update({name: "" for name in clear if name in _FIELDS})
    return load_settings(overrides, env)


# --- validation --------------------------------------------------------------------------

_PYTHON_NUMBER_ERRORS = ("invalid literal", "could not convert")


def _parse_error(spec: Setting, exc: Exception) -> str:
    reason = str(exc)
    if reason.startswith(_PYTHON_NUMBER_ERRORS) or not reason:
        if spec.kind == "int":
            reason = "must be a whole number"
        elif spec.kind == "float":
            reason = "must be a number"
        else:
            reason = "is not in a form RelayDesk can read"
        if spec.example:
            reason += f", e.g. {spec.example}"
    return reason


def _check_one(name: str, text: str) -> str | None:
    spec = _FIELDS[name]
    try:
        spec.parse(text)
    except (ValueError, ArithmeticError) as exc:
        reason = _parse_error(spec, exc)
        got = "" if spec.secret or spec.url else f" (you entered {text.strip()!r})"
        return f"{spec.label} {reason}{got}."
    problem = spec.check(text.strip()) if spec.check else None
    return f"{spec.label} {problem}." if problem else None


def _after_save(values: Mapping[str, str], clear: Collection[str],
                current: dict[str, tuple[str, Source]]) -> tuple[dict[str, str], set[str]]:
    """The settings texts in force once saved (the environment and env file still win), and
    the names that would then be set."""
    texts = {n: raw for n, (raw, _) in current.items()}
    is_set = set(current)
    for name, raw in values.items():
        if name not in _FIELDS or (name in current and current[name][1] in _SHADOWING):
            continue
        if _FIELDS[name].secret and not raw:
            continue
        if raw.strip():
            texts[name] = raw
            is_set.add(name)
        else:
            texts.pop(name, None)
            is_set.discard(name)
    for name in clear:
        if name in current and current[name][1] not in _SHADOWING:
            texts.pop(name, None)
            is_set.discard(name)
    return texts, is_set


def _parsed(texts: dict[str, str], name: str) -> Any:
    text = texts.get(name) or default_settings_text()[name]
    try:
        return _FIELDS[name].parse(text)
    except (ValueError, ArithmeticError):
        return None


def _cross_problems(texts: dict[str, str],
                    is_set: set[str]) -> list[tuple[tuple[str, ...], str]]:
    """Problems between settings: (the settings involved, message)."""
    problems: list[tuple[tuple[str, ...], str]] = []
    provider = _parsed(texts, "RELAYDESK_SMS_PROVIDER")
    for spec in SETTINGS:
        if provider not in spec.required_for:
            continue
        name = spec.name
        if name not in is_set or (not spec.secret and not texts.get(name, "").strip()):
            problems.append(((name,), f"To send with {_PROVIDER_NAMES[provider]}, enter "
                                      f"{spec.label} (or choose another SMS provider)."))
    low, high = _parsed(texts, "RELAYDESK_MIN_PROCESSES"), _parsed(texts,
                                                                   "RELAYDESK_MAX_PROCESSES")
    if low is not None and high is not None and low > high:
        problems.append((("RELAYDESK_MIN_PROCESSES", "RELAYDESK_MAX_PROCESSES"),
                         f"Fewest processes ({low}) is more than most processes ({high}): "
                         "lower the fewest or raise the most."))
    if (_parsed(texts, "RELAYDESK_INSPECTOR") == "on"
            and _parsed(texts, "RELAYDESK_ENV") == "production"):
        problems.append((("RELAYDESK_INSPECTOR", "RELAYDESK_ENV"),
                         "The job inspector cannot be on in production: "
                         f"{INSPECTOR_REFUSED}"))
    base, cap = _parsed(texts, "RELAYDESK_RETRY_BACKOFF"), _parsed(texts,
                                                                  "RELAYDESK_RETRY_BACKOFF_MAX")
    if base is not None and cap is not None and base > cap:
        problems.append((("RELAYDESK_RETRY_BACKOFF_MAX", "RELAYDESK_RETRY_BACKOFF"),
                         f"Longest retry wait ({cap:g} s) is shorter than the first retry "
                         f"wait ({base:g} s): raise it, or shorten the first wait."))
    return problems


def validate(values: Mapping[str, str], *, clear: Collection[str] = (),
             environ: Mapping[str, str] | None = None,
             config_path: Path | None = None) -> dict[str, str]:
    """Setting name -> what is wrong and what to do; empty when ``save`` would accept it.

    Checks each given value with the parser every process uses, then the settings together
    as they would be in force after saving (e.g. Twilio needs its SID, token and sender,
    whether typed now or saved before)."""
    env = _environ(environ, config_path)
    current = raw_values(environ=env, read_keyring=False)
    errors: dict[str, str] = {}
    prepared: dict[str, str] = {}
    for name, typed in values.items():
        if name not in _FIELDS:
            errors[name] = f"{name} is not a RelayDesk setting."
            continue
        raw = typed
        if _FIELDS[name].url:
            raw = restore_masked_url(raw, current.get(name, ("", "default"))[0])
        prepared[name] = raw
        if not raw.strip():
            continue  # non-secret: back to the default; secret: unchanged
        problem = _check_one(name, raw)
        if not problem and _FIELDS[name].url and still_masked(raw):
            problem = (f"{_FIELDS[name].label} holds {MASK} where a password or key belongs: "
                       "the saved one is kept only for the same server, so type it again.")
        if problem:
            errors[name] = problem
    for name in clear:
        if name not in _FIELDS or not _FIELDS[name].secret:
            errors[name] = f"{name} is not a secret setting; to reset it, save it empty."
    for names, problem in _cross_problems(*_after_save(prepared, clear, current)):
        # Shown next to the field the operator just changed, when there is one.
        name = next((n for n in names if n in values), names[0])
        errors.setdefault(name, problem)
    return errors


# --- saving --------------------------------------------------------------------------------

def _read_document(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid TOML ({exc}); fix or delete it "
                            "before saving settings.") from None


def _file_value(spec: Setting, text: str) -> str | int:
    return int(text.strip()) if spec.kind == "int" else text


@dataclass
class _Plan:
    """The edit of one config document, as save() builds it."""

    data: dict[str, Any]
    keyring_names: list[str]
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    secrets: dict[str, SecretStore] = field(default_factory=dict)
    cleared: list[str] = field(default_factory=list)


def _keyring_call(action: str, name: str, call: Any, *args: str) -> bool:
    try:
        call(*args)
    except Exception as exc:
        log.warning("could not %s %s in the system keyring (%s)", action, name,
                    type(exc).__name__)
        return False
    return True


def _store_secret(plan: _Plan, name: str, value: str, service: str,
                  backend: KeyringBackend | None) -> None:
    if backend is not None and _keyring_call("store", name, backend.set_password, service,
                                             name, value):
        plan.data.pop(name, None)  # the file must not keep an old copy that would win
        if name not in plan.keyring_names:
            plan.keyring_names.append(name)
        plan.secrets[name] = "keyring"
        return
    plan.data[name] = value
    if name in plan.keyring_names:
        plan.keyring_names.remove(name)
        if backend is not None:
            _keyring_call("delete", name, backend.delete_password, service, name)
    plan.secrets[name] = "config file"


def _clear_secret(plan: _Plan, name: str, service: str,
                  backend: KeyringBackend | None) -> None:
    plan.data.pop(name, None)
    if name in plan.keyring_names:
        plan.keyring_names.remove(name)
        if backend is not None:
            _keyring_call("delete", name, backend.delete_password, service, name)
    plan.cleared.append(name)


def _set_plain(plan: _Plan, name: str, text: str, current: dict[str, tuple[str, Source]],
               defaults: dict[str, str]) -> None:
    if not text.strip():
        if name in plan.data:
            del plan.data[name]
            plan.removed.append(name)
        return
    in_force = current.get(name, (defaults[name], "default"))[0]
    if name not in plan.data and text == in_force:
        return  # unchanged: don't pin a default or copy an environment value into the file
    value = _file_value(_FIELDS[name], text)
    if plan.data.get(name) != value:
        plan.data[name] = value
        plan.written.append(name)


def save(values: Mapping[str, str], config_path: Path | None = None, *,
         clear: Collection[str] = (), environ: Mapping[str, str] | None = None) -> SavedSettings:
    """Validate, then write ``values`` to the config file (secrets to the keyring when one
    is usable). Raises SettingsValidationError (with ``.errors``) and changes nothing when
    validate() finds a problem; keys of the file not in ``values`` stay as they are."""
    env = _environ(environ, config_path)
    errors = validate(values, clear=clear, environ=env)
    if errors:
        raise SettingsValidationError(errors)
    path = config_file_path(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with FileLock(str(path.with_name(path.name + ".lock")), timeout=10):
        current = raw_values(environ=env, read_keyring=False)
        data = _read_document(path)
        table = data.pop(KEYRING_TABLE, None)
        table = table if isinstance(table, dict) else {}
        service = str(table.get("service") or keyring_service(path))
        plan = _Plan(data, [str(n) for n in table.get("secrets", [])])
        secrets = {n: v for n, v in values.items() if _FIELDS[n].secret and v}
        backend = usable_keyring() if secrets or clear else None
        defaults = default_settings_text()
        for name, typed in values.items():
            if _FIELDS[name].secret:
                if typed:
                    _store_secret(plan, name, typed, service, backend)
                continue
            text = typed
            if _FIELDS[name].url:
                text = restore_masked_url(text, current.get(name, ("", "default"))[0])
            _set_plain(plan, name, text, current, defaults)
        for name in clear:
            _clear_secret(plan, name, service, backend)
        if plan.keyring_names:
            plan.data[KEYRING_TABLE] = {**table, "service": service,
                                        "secrets": plan.keyring_names}
        document = toml_document(plan.data)
        tomllib.loads(document)  # never replace a good file with one no process can read
        write_private_file(path, document)
    changed = [*plan.written, *plan.secrets]
    shadowed: dict[str, Source] = {n: current[n][1] for n in changed
                                   if n in current and current[n][1] in _SHADOWING}
    return SavedSettings(path=path, written=tuple(plan.written), removed=tuple(plan.removed),
                         secrets=plan.secrets, cleared=tuple(plan.cleared), shadowed=shadowed,
                         keyring_service=service if plan.keyring_names else None)
