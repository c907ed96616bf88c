"""Shared pytest set-up: the lab fixtures (real services, hung storage) are plugins."""

pytest_plugins = ["tests.lab.fixtures", "tests.lab.hangfs"]
