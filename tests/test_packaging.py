"""The project as a user installs it: a wheel built from this tree, installed into a fresh
virtualenv outside the checkout, migrates a new database and reports its version on its own.

The fresh virtualenv gets the project's dependencies from this test run's environment (a `.pth`
line naming its site-packages, whose own `.pth` files, the editable install's among them, are
not run), so nothing is downloaded and only the wheel's copy of our packages can be imported.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from shared.db import with_database
from tests.databases import ADMIN_URL

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ingest", "shared", "stripe_ingest", "worker")
SHIPPED = ("*.py", "*.lua", "*.sql", "*.html", "*.css")
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".data", "__pycache__", "*.egg-info", "build", ".*_cache", ".work"
)
_CREATE_TABLE = re.compile(r"\bCREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    site: Path
    workdir: Path

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A program of the fresh virtualenv, from an empty directory, with no PYTHONPATH."""
        base = {k: os.environ[k] for k in ("HOME", "LANG", "TMPDIR") if k in os.environ}
        base["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        return subprocess.run(
            [str(self.venv / "bin" / args[0]), *args[1:]],
            env={**base, **(env or {})},
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )


def _check(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    assert not base.is_relative_to(ROOT)
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)  # the build writes into its tree
    dist = base / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _check([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), "."], source)
    (wheel,) = dist.glob("stripe_ingest-*.whl")
    shutil.rmtree(source)

    venv = base / "venv"
    _check([sys.executable, "-m", "venv", "--without-pip", str(venv)], base)
    python = str(venv / "bin" / "python")
    _check([*pip, "--python", python, "install", "--no-deps", "--no-index", str(wheel)], base)
    site = Path(
        _check(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], base
        ).strip()
    )
    (site / "_project_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    workdir = base / "work"
    workdir.mkdir()
    return Installed(wheel=wheel, venv=venv, site=site, workdir=workdir)


@pytest.fixture
def new_database_url() -> Iterator[str]:
    """The URL of a database that does not exist yet; dropped afterwards if something made it."""
    name = f"si_pkg_{uuid.uuid4().hex[:10]}"
    yield with_database(ADMIN_URL, name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _exists(url: str) -> bool:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(ADMIN_URL) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            is not None
        )


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {row[0] for row in rows}


def _versions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def _sources() -> set[str]:
    """What the wheel must hold: every file of our packages, the migrations as shared.migrations."""
    found = {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for pattern in SHIPPED
        for path in (ROOT / package).rglob(pattern)
    }
    found |= {f"shared/migrations/{p.name}" for p in (ROOT / "migrations").iterdir() if p.is_file()}
    return found


def test_the_wheel_holds_every_module_and_migration_under_our_own_top_level_names(
    installed: Installed,
) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = [n for n in wheel.namelist() if ".dist-info/" not in n]
        top_level = wheel.read(
            next(n for n in wheel.namelist() if n.endswith(".dist-info/top_level.txt"))
        ).decode()

    assert set(names) == _sources()
    assert {n for n in names if n.endswith(".sql")} == {
        f"shared/migrations/{p.name}" for p in (ROOT / "migrations").glob("*.sql")
    }
    assert sorted(top_level.split()) == sorted(PACKAGES)  # no `cli`, no `migrations`


def test_the_installed_copy_is_what_runs_not_the_checkout(installed: Installed) -> None:
    result = installed.run(
        "python",
        "-c",
        "import ingest.app, shared.migrate, stripe_ingest.cli.main, worker.actors\n"
        "for m in (ingest.app, shared.migrate, stripe_ingest.cli.main, worker.actors):\n"
        "    print(m.__file__)\n"
        "print(shared.migrate.discover()[0].path)",
    )

    assert result.returncode == 0, result.stderr
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert len(paths) == 5
    for path in paths:
        assert path.is_relative_to(installed.site), path
    assert paths[-1].parent == installed.site / "shared" / "migrations"


def test_the_installed_command_migrates_a_new_database_and_finds_every_table(
    installed: Installed, database_url: str, new_database_url: str
) -> None:
    """`database_url` is migrated from the checkout: the installed command makes the same."""
    result = installed.run("stripe-ingest", "migrate", env={"DATABASE_URL": new_database_url})

    assert result.returncode == 0, result.stderr
    files = sorted((ROOT / "migrations").glob("*.sql"))
    assert result.stdout == (
        f"applied {len(files)} migration(s): {', '.join(p.stem for p in files)}\n"
    )
    created = {name for p in files for name in _CREATE_TABLE.findall(p.read_text())}
    assert {"stripe_events", "dead_letters", "customers"} <= created
    tables = _tables(new_database_url)
    assert created | {"schema_migrations"} <= tables
    assert tables == _tables(database_url)
    assert _versions(new_database_url) == _versions(database_url) == [p.name[:4] for p in files]

    again = installed.run("stripe-ingest", "migrate", env={"DATABASE_URL": new_database_url})
    assert (again.returncode, again.stdout) == (0, "applied 0 migration(s)\n")


def test_migrate_fails_loudly_when_the_installation_has_no_migrations(
    installed: Installed, new_database_url: str
) -> None:
    shipped = installed.site / "shared" / "migrations"
    aside = installed.workdir / "aside"
    aside.mkdir()
    moved = [shutil.move(p, aside / p.name) for p in shipped.glob("*.sql")]
    try:
        result = installed.run("stripe-ingest", "migrate", env={"DATABASE_URL": new_database_url})
    finally:
        for path in moved:
            shutil.move(path, shipped / Path(path).name)
        aside.rmdir()

    assert len(moved) == len(list((ROOT / "migrations").glob("*.sql")))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: no migration files")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not _exists(new_database_url)  # it stopped before creating anything


def test_the_version_has_one_source_and_the_command_prints_it(installed: Installed) -> None:
    with open(ROOT / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]

    result = installed.run("stripe-ingest", "--version")
    module = installed.run("python", "-c", "import stripe_ingest; print(stripe_ingest.__version__)")

    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"stripe-ingest {version}\n",
        "",
    )
    assert module.stdout == f"{version}\n"
    assert installed.wheel.name.startswith(f"stripe_ingest-{version}-")


def test_the_installed_console_serves_its_pages_and_stylesheet(installed: Installed) -> None:
    """Templates and the stylesheet ship as package data and are found from the installed copy."""
    result = installed.run(
        "python",
        "-c",
        "from starlette.testclient import TestClient\n"
        "from shared.settings import Settings\n"
        "from stripe_ingest.console.app import create_app\n"
        "app = create_app(Settings(console_token='t' * 20))\n"
        "with TestClient(app) as c:\n"
        "    print(c.get('/login').status_code, c.get('/static/console.css').status_code)\n"
        "import stripe_ingest.console.app as m; print(m.__file__)",
    )
    assert result.returncode == 0, result.stderr
    codes, path = result.stdout.splitlines()
    assert codes == "200 200"
    assert Path(path).is_relative_to(installed.site)
