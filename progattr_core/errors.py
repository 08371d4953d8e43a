"""The core's error hierarchy: callers and the CLI map these to exit codes and readable messages.

EXIT_CODES is the one table of what `progattr` exits with; each error class takes its code from it, and
docs/operations.md ("Exit codes") shows the same table (a test compares them)."""

EXIT_CODES = {
    0: "success",
    1: "another progattr error; `registry rebuild`: the rebuilt weights differ (an uncaught exception also exits 1, "
       "with a traceback)",
    2: "the request is malformed: params.yaml or a --set (ConfigError), or the command line itself (argparse)",
    3: "the data breaks a rule: annotations, images, the manifest's validation, leakage (DataValidationError)",
    4: "a model cannot do what was asked: unknown attribute, wrong vocabulary, bad file (ModelError)",
    5: "pretrained weights cannot be loaded, e.g. offline (WeightsUnavailableError)",
    6: "an approval the registry's state does not allow (ApprovalError)",
    7: "the tracking server kept failing after every retry; nothing was half-done (TrackingUnavailableError)",
    8: "a version cannot be rebuilt: a tag, commit or data version is gone (RebuildError)",
    75: "busy: another run holds the article's lock; nothing was done, try later (LockBusy; EX_TEMPFAIL)",
}


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
