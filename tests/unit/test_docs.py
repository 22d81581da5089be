"""The README stays true: every setting is documented."""

from pathlib import Path

from shared.settings import ENV_PREFIX, Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme():
    missing = [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields if f"`{ENV_PREFIX}{name.upper()}`" not in README]
    assert not missing, f"document these in README.md (python -m shared.settings --markdown): {missing}"


def test_readme_names_the_two_commands():
    assert "make run" in README and "make test" in README
