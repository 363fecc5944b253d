"""The release: what the sdist and the wheel hold, and that an installed wheel works.

``python -m build`` makes both distributions (the wheel from the sdist, as PyPI users
get it); the wheel goes into a fresh virtualenv with only its declared dependencies,
and a site written in a scratch directory outside the checkout migrates, checks,
renders the Postfix configuration and classifies a bounce from it. The build tests
need the network (or pip's cache) for setuptools and Django; they run once, in the
SQLite pass, and are ``long``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from django.db import connection

import bounce_tracker
from tests import settings as suite_settings

ROOT = Path(__file__).resolve().parent.parent
# The interpreter `make` builds virtualenvs from (see the Makefile).
BASE_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")
DIST_NAME = "django_bounce_tracker"
VERSION = bounce_tracker.__version__
BOUNCE_DOMAIN = "bounces.example.com"

# The build tests run once per suite run: in its SQLite pass.
sqlite_pass_only = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="builds once, in the SQLite pass"
)

CHANGELOG_MD_HEADING_RE = re.compile(r"^## (?P<version>\S+) \((?P<when>[^)]+)\)$", re.MULTILINE)
CHANGELOG_RST_HEADING_RE = re.compile(r"^(?P<version>\d\S*) \((?P<when>[^)]+)\)\n-+$", re.MULTILINE)
VERSION_RE = re.compile(r"(?P<release>\d+\.\d+\.\d+)(?P<dev>\.dev\d+)?")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def source_files(directory: Path, *, skip: tuple[str, ...] = ()) -> set[str]:
    """Files under ``directory``, relative to it, without bytecode or skipped folders."""
    found = set()
    for path in directory.rglob("*"):
        relative = path.relative_to(directory).as_posix()
        if (
            path.is_file()
            and "__pycache__" not in path.parts
            and path.suffix != ".pyc"
            and not relative.startswith(skip)
        ):
            found.add(relative)
    return found


def run(argv, *, cwd, env=None, stdin=None, timeout=300):
    result = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result


# -- Version and changelogs: pure file reading ------------------------------------------


def test_changelog_md_names_the_same_releases_as_docs_changelog():
    markdown = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    rst = (ROOT / "docs" / "changelog.rst").read_text(encoding="utf-8")
    md_releases = [
        match.group("version", "when") for match in CHANGELOG_MD_HEADING_RE.finditer(markdown)
    ]
    rst_releases = [
        match.group("version", "when") for match in CHANGELOG_RST_HEADING_RE.finditer(rst)
    ]
    assert rst_releases
    assert md_releases == rst_releases


def test_version_is_the_top_changelog_entry_dated_once_released():
    version = VERSION_RE.fullmatch(VERSION)
    assert version, f"{VERSION!r} is not X.Y.Z or X.Y.Z.devN"
    rst = (ROOT / "docs" / "changelog.rst").read_text(encoding="utf-8")
    top = CHANGELOG_RST_HEADING_RE.search(rst)
    assert top
    assert top["version"] == version["release"]
    if version["dev"]:
        assert top["when"] == "unreleased"
    else:
        assert DATE_RE.fullmatch(top["when"]), f"{VERSION} is released: date its entry"


# -- The distributions ------------------------------------------------------------------


# Not copied into the tree the distributions are built from: VCS data, virtualenvs,
# caches, and the checkout's *.egg-info, whose SOURCES.txt setuptools merges into the
# sdist (so a file MANIFEST.in no longer names would stay in it unnoticed).
NOT_COPIED = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "*.egg-info",
    "build",
    "dist",
    ".*_cache",
    ".hypothesis",
    ".coverage",
    "htmlcov",
    "_build",
    "corpus",
    "crashes",
    "__pycache__",
    "*.pyc",
    "*.sqlite3",
)
# What a working checkout holds besides its sources, planted in the copy: none of it
# may reach the sdist.
GENERATED = [
    ".venv/bin/python3",
    "build/lib/bounce_tracker/stale.py",
    "dist/django_bounce_tracker-0.0.1.tar.gz",
    "docs/_build/html/index.html",
    "fuzz/corpus/0a1b2c3d",
    "fuzz/crashes/crash-0a1b2c3d",
    "tests/__pycache__/conftest.cpython-311.pyc",
    "bounce_tracker/__pycache__/models.cpython-311.pyc",
    "example_project/demo.sqlite3",
]


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory):
    """A copy of the checkout as a developer's working tree has it (see GENERATED).

    Symbolic links stay links, as git checks them out: the top-level
    ``postfix_templates`` is one, to ``bounce_tracker/postfix_templates``.
    """
    tree = tmp_path_factory.mktemp("source") / "django-bounce-tracker"
    shutil.copytree(ROOT, tree, ignore=NOT_COPIED, symlinks=True)
    assert (tree / "postfix_templates").is_symlink()
    for name in GENERATED:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(b"generated")
    return tree


@pytest.fixture(scope="module")
def built(source_tree, tmp_path_factory):
    """``python -m build``'s sdist and wheel (built from the sdist), and its output."""
    outdir = tmp_path_factory.mktemp("dist")
    result = run([sys.executable, "-m", "build", "--outdir", outdir, source_tree], cwd=source_tree)
    sdists = list(outdir.glob("*.tar.gz"))
    wheels = list(outdir.glob("*.whl"))
    assert [path.name for path in sdists] == [f"{DIST_NAME}-{VERSION}.tar.gz"]
    assert [path.name for path in wheels] == [f"{DIST_NAME}-{VERSION}-py3-none-any.whl"]
    return {"sdist": sdists[0], "wheel": wheels[0], "log": result.stdout + result.stderr}


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if not name.endswith("/")}


def sdist_files(sdist: Path) -> set[str]:
    """Every member but the directories: a link (broken once unpacked elsewhere, or a
    second copy of what it points to) is listed too, and fails the test."""
    prefix = f"{DIST_NAME}-{VERSION}/"
    with tarfile.open(sdist) as archive:
        members = [member for member in archive.getmembers() if not member.isdir()]
    links = [member.name for member in members if not member.isfile()]
    assert links == [], f"links in the sdist: {links}"
    names = [member.name for member in members]
    assert all(name.startswith(prefix) for name in names)
    return {name[len(prefix) :] for name in names}


def app_files(tree: Path) -> dict[str, str]:
    """Where each file of the app lands in the wheel, by its path in the source tree."""
    return {
        f"bounce_tracker/{name}": f"bounce_tracker/{name}"
        for name in source_files(tree / "bounce_tracker")
    }


@pytest.mark.long
@sqlite_pass_only
def test_build_succeeds_without_setuptools_deprecation_or_package_warnings(built):
    log = built["log"]
    assert "SetuptoolsDeprecationWarning" not in log
    assert "Package would be ignored" not in log
    assert "License classifiers are deprecated" not in log


@pytest.mark.long
@sqlite_pass_only
def test_wheel_holds_every_module_migration_template_postfix_template_and_the_license(
    built, source_tree
):
    files = wheel_files(built["wheel"])
    dist_info = f"{DIST_NAME}-{VERSION}.dist-info"
    expected = set(app_files(source_tree).values())
    assert {"bounce_tracker/py.typed", "bounce_tracker/migrations/0001_initial.py"} <= expected
    assert any(name.startswith("bounce_tracker/templates/") for name in expected)
    assert {name for name in expected if name.startswith("bounce_tracker/postfix_templates/")} >= {
        f"bounce_tracker/postfix_templates/{name}"
        for name in ("main.cf", "master.cf", "transport", "lmtp_main.cf", "lmtp_master.cf")
    }

    assert files == expected | {
        f"{dist_info}/{name}"
        for name in ("METADATA", "WHEEL", "RECORD", "top_level.txt", "licenses/LICENSE")
    }
    with zipfile.ZipFile(built["wheel"]) as archive:
        assert archive.read(f"{dist_info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
        top_level = archive.read(f"{dist_info}/top_level.txt").decode().split()
        metadata = Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
    assert top_level == ["bounce_tracker"]
    assert metadata["Name"] == "django-bounce-tracker"
    assert metadata["Version"] == VERSION
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert metadata["License-File"] == "LICENSE"
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata.get_all("Requires-Dist")[0] == "Django>=4.2"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().strip() == (ROOT / "README.md").read_text("utf-8").strip()


@pytest.mark.long
@sqlite_pass_only
def test_sdist_holds_the_app_docs_tests_and_examples_and_nothing_generated(built, source_tree):
    files = sdist_files(built["sdist"])
    expected = set(app_files(source_tree)) | {
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "MANIFEST.in",
        "Makefile",
        "pyproject.toml",
    }
    for directory, skip in [
        ("docs", ("_build/",)),
        ("tests", ()),
        ("example_project", ()),
        ("benchmarks", ()),
        ("fuzz", ("corpus/", "crashes/")),
    ]:
        expected |= {
            f"{directory}/{name}"
            for name in source_files(source_tree / directory, skip=skip)
            if not name.endswith(".sqlite3")
        }
    generated = {"PKG-INFO", "setup.cfg"} | {
        name for name in files if name.startswith(f"{DIST_NAME}.egg-info/")
    }
    assert files - generated == expected
    assert not files & {*GENERATED, ".ci/run", ".gitignore"}
    # The Postfix templates once, in the package: not the checkout's top-level link,
    # nor a copy of what it points to.
    templates = {name for name in files if "postfix_templates/" in name}
    assert templates == {
        f"bounce_tracker/postfix_templates/{name}"
        for name in source_files(ROOT / "bounce_tracker" / "postfix_templates")
    }
    assert "bounce_tracker/postfix_templates/main.cf" in templates


@pytest.mark.long
@sqlite_pass_only
def test_installed_wheel_migrates_checks_and_runs_its_commands_outside_the_checkout(
    built, tmp_path
):
    venv = tmp_path / "venv"
    site = tmp_path / "site"
    site.mkdir()
    # Nothing from this run's environment: not the checkout, not its settings.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV", "PYTHONHOME"}
    }
    run([BASE_PYTHON, "-m", "venv", venv], cwd=tmp_path, env=env)
    # Only the wheel and what it declares (Django and its dependencies), from PyPI or
    # pip's cache: a missing dependency fails here instead of hiding.
    run(
        [venv / "bin/python", "-m", "pip", "install", "--quiet", built["wheel"]],
        cwd=tmp_path,
        env=env,
    )

    # The suite's own apps, middleware and templates (tests/settings.py), written out:
    # the site can't import the checkout.
    (site / "site_settings.py").write_text(
        f"""\
SECRET_KEY = "packaging-test-only"
USE_TZ = True
DATABASES = {{
    "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {str(tmp_path / "db.sqlite3")!r}}}
}}
INSTALLED_APPS = {suite_settings.INSTALLED_APPS!r}
MIDDLEWARE = {suite_settings.MIDDLEWARE!r}
ROOT_URLCONF = "site_urls"
TEMPLATES = {suite_settings.TEMPLATES!r}
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
BOUNCE_TRACKER = {{"BOUNCE_DOMAIN": {BOUNCE_DOMAIN!r}}}
"""
    )
    (site / "site_urls.py").write_text(
        "from django.contrib import admin\nfrom django.urls import path\n\n"
        'urlpatterns = [path("admin/", admin.site.urls)]\n'
    )
    (site / "manage.py").write_text(
        "import sys\n\nfrom django.core.management import execute_from_command_line\n\n"
        "execute_from_command_line(sys.argv)\n"
    )
    message = site / "bounce.eml"
    message.write_text(
        "From: MAILER-DAEMON@mx.example.net\n"
        "To: bounces+abc123@bounces.example.com\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n'
        "\n"
        "--B\n"
        "Content-Type: text/plain\n"
        "\n"
        "<nobody@example.org>: host mx.example.org said: 550 5.1.1 No such user\n"
        "--B\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; mx.example.net\n"
        "\n"
        "Final-Recipient: rfc822; nobody@example.org\n"
        "Action: failed\n"
        "Status: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: No such user\n"
        "--B--\n"
    )
    env |= {"DJANGO_SETTINGS_MODULE": "site_settings", "PYTHONPATH": str(site)}
    python = venv / "bin/python"
    django_admin = venv / "bin/django-admin"

    imported = run(
        [python, "-c", "import bounce_tracker; print(bounce_tracker.__file__)"], cwd=site, env=env
    )
    assert Path(imported.stdout.strip()).is_relative_to(venv)
    assert not Path(imported.stdout.strip()).is_relative_to(ROOT)

    run([django_admin, "migrate", "--noinput"], cwd=site, env=env)
    run([django_admin, "check", "--fail-level", "WARNING"], cwd=site, env=env)

    template = run(
        [
            django_admin,
            "shell",
            "-c",
            "from django.template.loader import get_template; "
            "print(get_template('admin/bounce_tracker/dashboard.html').origin.name)",
        ],
        cwd=site,
        env=env,
    )
    # The last line: Django 5.2's shell first reports its automatic imports.
    assert Path(template.stdout.splitlines()[-1]).is_relative_to(venv)

    # bounce_postfix_config names the manage.py it runs as, so it runs as one here.
    config = run([python, site / "manage.py", "bounce_postfix_config"], cwd=site, env=env)
    assert "handle_bounce -- ${sender} ${recipient}" in config.stdout
    # The interpreter runs the launcher the wheel installed, which runs this manage.py.
    argv = next(line for line in config.stdout.splitlines() if "argv=" in line)
    words = argv.split("argv=", 1)[1].split()
    assert words[:3] == [str(python), "-I", "-S"]
    launcher = Path(words[3])
    assert launcher.name == "pipe_launcher.py"
    assert launcher.is_relative_to(venv)
    assert launcher.is_file()
    assert f" {site / 'manage.py'} handle_bounce -- " in argv
    assert "DJANGO_SETTINGS_MODULE=site_settings" in config.stdout
    assert BOUNCE_DOMAIN in config.stdout

    inspected = run([django_admin, "inspect_bounce", "--json", message], cwd=site, env=env)
    report = json.loads(inspected.stdout)
    assert (report["kind"], report["status"]) == ("hard", "5.1.1")

    handled = run(
        [django_admin, "handle_bounce", "--", "", f"bounces+abc123@{BOUNCE_DOMAIN}"],
        cwd=site,
        env=env,
        stdin=message.read_text(),
    )
    assert handled.stdout == handled.stderr == ""
