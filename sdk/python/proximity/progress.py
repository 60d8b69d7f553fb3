"""Progress steps and log lines in the job's event stream (always granted)."""

from wit_world.imports import progress as wit


def step(name):
    """Announce that a new step begins (the previous one is done)."""
    wit.step(str(name))


def debug(message):
    wit.log(wit.Level.DEBUG, str(message))


def info(message):
    wit.log(wit.Level.INFO, str(message))


def warn(message):
    wit.log(wit.Level.WARN, str(message))


def error(message):
    wit.log(wit.Level.ERROR, str(message))
