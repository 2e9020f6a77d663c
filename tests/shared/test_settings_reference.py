from __future__ import annotations

from dataclasses import Field, fields
from pathlib import Path

from shared import settings_doc
from shared.settings import (
    Settings,
    boolean,
    comma_separated,
    number,
    postgres_dsn,
    redis_address,
    text,
    var_of,
    whole_number,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = {
    text: "sample",
    whole_number: "7",
    number: "7.5",
    boolean: "true",
    comma_separated: "whsec_aaaaaaaaaaaaaaaa, whsec_bbbbbbbbbbbbbbbb",
    postgres_dsn: "postgresql://db.example:6543/sample",
    redis_address: "redis://redis.example:6380/3",
}


def test_the_reference_is_generated_from_settings() -> None:
    committed = (ROOT / settings_doc.REFERENCE).read_text(encoding="utf-8")
    assert committed == settings_doc.render(), (
        "docs/reference/settings.md is out of date: run python -m shared.settings_doc"
    )


def test_every_setting_has_one_variable_and_a_description_in_the_reference() -> None:
    reference = (ROOT / settings_doc.REFERENCE).read_text(encoding="utf-8")
    names = [var_of(f).env for f in fields(Settings)]
    assert len(names) == len(set(names))
    for f in fields(Settings):
        spec = var_of(f)
        assert spec.doc.strip(), f.name
        assert f"| `{spec.env}` |" in reference, f.name


def _variable(f: Field[object]) -> str:
    """The variable a sample is given in: a family's (`..._<NAME>`) with the name `SAMPLE`."""
    spec = var_of(f)
    return spec.prefix + "SAMPLE" if spec.family else spec.env


def test_every_documented_variable_is_read_into_its_field() -> None:
    for f in fields(Settings):
        assert var_of(f).parse in SAMPLES, f"{f.name}: add a sample value for its parser"
    env = {_variable(f): SAMPLES[var_of(f).parse] for f in fields(Settings)}
    settings = Settings.from_mapping(env)
    for f in fields(Settings):
        spec = var_of(f)
        value = getattr(settings, f.name)
        parsed = spec.parse(spec.env, env[_variable(f)])
        if spec.family:
            assert value == {"sample": parsed}, spec.env
            assert f.default == {}, spec.env
        else:
            assert value == parsed, spec.env
            assert value != f.default, spec.env


def test_the_check_mode_says_when_the_file_is_stale(tmp_path: Path) -> None:
    stale = tmp_path / "settings.md"
    stale.write_text(settings_doc.render().replace("PostgreSQL DSN", "a database"))
    assert settings_doc.main(["--check", str(stale)]) == 1
    assert settings_doc.main([str(stale)]) == 0
    assert settings_doc.main(["--check", str(stale)]) == 0
    assert stale.read_text() == settings_doc.render()
