"""The README stays true: the settings table is generated from the code and current."""


from devtools.docs import README, readme_with_settings
from shared.settings import ENV_PREFIX, Settings

TEXT = README.read_text()


def test_settings_table_is_current():
    assert readme_with_settings(TEXT) == TEXT, "run `make docs` to regenerate the README settings table"


def test_every_setting_is_in_the_readme():
    missing = [f"{ENV_PREFIX}{n.upper()}" for n in Settings.model_fields if f"`{ENV_PREFIX}{n.upper()}`" not in TEXT]
    assert not missing


def test_readme_names_the_two_commands():
    assert "make run" in TEXT and "make test" in TEXT
