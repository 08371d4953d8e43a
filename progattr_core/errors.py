"""The core's error hierarchy: callers and the CLI map these to exit codes and readable messages."""


class ProgattrError(Exception):
    """Base class of every error the core raises on purpose."""

    exit_code = 1


class ConfigError(ProgattrError):
    """params.yaml (or an override) is malformed: unknown/missing key, wrong type, bad value."""

    exit_code = 2


class DataValidationError(ProgattrError):
    """Input data (annotations, images, manifest) breaks a rule; the message names the row/file."""

    exit_code = 3


class ModelError(ProgattrError):
    """A model is asked to do something its description does not allow (unknown attribute, bad input)."""

    exit_code = 4


class WeightsUnavailableError(ModelError):
    """Pre-trained weights cannot be loaded (e.g. offline with no cached file)."""

    exit_code = 5
