"""`model.init` read once: the one place its forms are told apart (no torch here: the data steps that
check a backbone's lineage import it too)."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError

REGISTERED = "models:/"  # model.init naming a registered backbone: models:/<name>/<version>, @<alias> or /latest


@dataclass(frozen=True)
class ModelInit:
    """What `model.init` says a model starts from, in one of four forms:

    - `scratch`: random weights drawn from the model's seed;
    - `imagenet`: torchvision's ImageNet weights for the architecture (one file per architecture);
    - `registered`: a `models:/...` reference; the pipeline fetches it to a file when a run starts
      (tasks.context.make_context), so the library only ever meets the file;
    - `file`: a saved progattr model or a ResNet state_dict (model_file.backbone_state reads either)."""

    text: str
    kind: str

    @classmethod
    def parse(cls, text: str) -> ModelInit:
        kind = text if text in ("scratch", "imagenet") else "registered" if text.startswith(REGISTERED) else "file"
        return cls(text, kind)

    @property
    def path(self) -> Path:
        """The file (kind `file`), which must exist."""
        if self.kind == "registered":
            raise ModelError(f"model.init={self.text}: a registered backbone, which a pipeline run fetches to a file "
                             "when it starts (tasks.context.make_context); the library reads that file")
        if self.kind != "file":
            raise ModelError(f"model.init={self.text!r} is not a file")
        path = Path(self.text)
        if not path.is_file():
            raise ModelError(f"model.init={self.text!r} is neither 'scratch', 'imagenet', a {REGISTERED} reference "
                             "nor an existing file")
        return path

    def identity(self) -> str:
        """What a model starts from, as part of a training's identity: `scratch` and `imagenet` as they
        are (torchvision names one ImageNet weight file per architecture), a file by the sha256 of its
        content, so a backbone pretrained again at the same path makes a new training, not a resume."""
        if self.kind in ("scratch", "imagenet"):
            return self.kind
        stat = self.path.stat()
        return _file_sha256(str(self.path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    """A run asks for its backbone's identity several times (training and baseline keys, the
    registered version's tags): hashed once per file version (its mtime and size are in the key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"
