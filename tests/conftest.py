"""Shared pytest set-up: the lab fixtures (real services) are a plugin of their own."""

pytest_plugins = ["tests.lab.fixtures"]
