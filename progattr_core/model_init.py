"""`model.init` read once: the one place its forms are told apart (no torch here: the data steps that
check a backbone's lineage import it too)."""

from __future__ import annotations

import functools
import hashlib
import os
import sys
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


# torchvision's ImageNet weights for each of config.ARCHS (`ResNet<n>_Weights.DEFAULT.url`), so that `profile: auto`
# can look for the file without importing torch and torchvision (~3 s of every `progattr pipeline <step>`);
# tests/unit/test_model.py checks this table against the installed torchvision
IMAGENET_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
}


def torch_hub_dir() -> Path:
    """torch.hub.get_dir(): $TORCH_HOME/hub, $TORCH_HOME defaulting to $XDG_CACHE_HOME/torch (~/.cache/torch); the
    real call where torch is already imported (a process may have moved it with torch.hub.set_dir)."""
    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir())
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(home)) / "hub"


def imagenet_weights(arch: str) -> tuple[str, Path]:
    """(url, local file) of torchvision's ImageNet weights for `arch`: where torchvision downloads them
    to and reads them from ($TORCH_HOME/hub/checkpoints); the file may not exist yet."""
    if arch not in IMAGENET_URLS:
        raise ModelError(f"no ImageNet weights known for {arch!r}; known: {sorted(IMAGENET_URLS)}")
    url = IMAGENET_URLS[arch]
    return url, torch_hub_dir() / "checkpoints" / url.rsplit("/", 1)[-1]
