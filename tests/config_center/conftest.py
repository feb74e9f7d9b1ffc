"""Fixtures for the config-center tests."""

from tests.config_center.databases import database_fixture

# An empty database per test module on each of sqlite, mariadb and postgresql (see databases.py).
database_url = database_fixture()
