"""The progattr application: the `progattr` command line (`progattr.cli`), on top of the library
(`progattr_core`), the pipeline's tasks and flows (`tasks`, `flows`), serving and tracking."""
