"""The settings reference (docs/settings.rst) can't drift from the code.

Pure file reading: no database, no Sphinx build.
"""

from __future__ import annotations

import re
from pathlib import Path

from bounce_tracker.core.settings import DEFAULTS

REPO_ROOT = Path(__file__).resolve().parent.parent
SETTINGS_DOC = REPO_ROOT / "docs" / "settings.rst"
# Each room validates its own settings, so the check IDs are spread over the package.
CHECK_SOURCES = sorted((REPO_ROOT / "bounce_tracker").rglob("*.py"))
CHECK_ID_RE = re.compile(r"bounce_tracker\.[EW]\d{3}")
# An RST section title, overlined or not: a text line followed by a line of one
# repeated punctuation character at least as long.
HEADING_RE = re.compile(r"^(?P<title>\S[^\n]*)\n(?P<rule>([=\-~^\"'`#*+])\3*)$", re.MULTILINE)
SETTING_TITLE_RE = re.compile(r"^``(?P<key>[A-Z][A-Z0-9_]*)``$")


def settings_doc() -> str:
    return SETTINGS_DOC.read_text(encoding="utf-8")


def setting_sections(text: str) -> dict[str, str]:
    """``{KEY: the section's text}`` for every section titled with a setting key."""
    headings = [
        match for match in HEADING_RE.finditer(text) if len(match["rule"]) >= len(match["title"])
    ]
    sections = {}
    for number, heading in enumerate(headings):
        key = SETTING_TITLE_RE.match(heading["title"])
        if key is None:
            continue
        end = headings[number + 1].start() if number + 1 < len(headings) else len(text)
        sections[key["key"]] = text[heading.end() : end]
    return sections


def documented_default(value: object) -> str:
    """How the page writes a default: strings in double quotes, the rest as Python reprs."""
    return f'``"{value}"``' if isinstance(value, str) else f"``{value!r}``"


def test_every_setting_has_its_own_section_and_no_section_names_an_unknown_key():
    assert set(setting_sections(settings_doc())) == set(DEFAULTS)


def test_every_setting_section_states_the_default_from_the_code():
    sections = setting_sections(settings_doc())
    wrong = {
        key: documented_default(default)
        for key, default in DEFAULTS.items()
        if f"Default: {documented_default(default)}" not in sections.get(key, "")
    }
    assert wrong == {}, "these sections should say 'Default: <value>'"


def test_the_check_ids_documented_are_exactly_the_ones_the_code_raises():
    in_code = {
        check_id
        for source in CHECK_SOURCES
        for check_id in CHECK_ID_RE.findall(source.read_text(encoding="utf-8"))
    }
    in_docs = set(CHECK_ID_RE.findall(settings_doc()))
    assert in_code, "no check IDs found in the code: has the ID format changed?"
    assert sorted(in_code - in_docs) == [], "check IDs missing from docs/settings.rst"
    assert sorted(in_docs - in_code) == [], "docs/settings.rst documents IDs the code lacks"


def test_the_section_parser_finds_setting_titles_and_skips_other_headings():
    text = (
        "Settings\n========\n\nIntro.\n\n"
        "``ALPHA``\n---------\n\nDefault: ``1``\n\n"
        "Backend keyword arguments\n-------------------------\n\nText.\n\n"
        "``BETA``\n--------\n\nDefault: ``None``\n"
    )
    sections = setting_sections(text)
    assert list(sections) == ["ALPHA", "BETA"]
    assert "Default: ``1``" in sections["ALPHA"]
    assert "Text." not in sections["ALPHA"]
