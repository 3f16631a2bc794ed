"""Hooks for the whole suite: the chapter notebooks live outside tests/, so they are registered here."""

pytest_plugins = ["tests.suite_plan", "tests.nbcache"]
