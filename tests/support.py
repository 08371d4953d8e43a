"""The helpers several test directories share, in one place: import them from here, never from another
test module or another directory's conftest. (Fixtures every directory needs, the Prefect harness and the
S3 server, are in tests/conftest.py.)"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.paths import ROOT

if TYPE_CHECKING:
    import torch

    from tracking.store import Store

# Servers and processes on loopback


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop(proc: subprocess.Popen, group: bool = False) -> None:
    """Stop a server a test started: SIGTERM; a second one after 5 s if it is still finishing (`prefect
    worker start` turns the first into a graceful SIGINT of its worker and the second into a SIGKILL of
    it; uvicorn, under `prefect server start`, exits at once on the second); SIGKILL after 30 s more.
    `group`: signal its whole process group (a server started with start_new_session=True that spawns
    workers), whose other members may outlive it."""
    def send(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        except ProcessLookupError:
            pass

    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        if proc.poll() is not None and not group:
            return
        send(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class MlflowServer:
    """The project's mlflow/start-server.sh on a loopback port (its own process group: the server's workers go
    with it), SQLite and artifacts under `folder` unless `backend`/`artifacts` name others; a test can stop it
    and start it again on the same port."""

    def __init__(self, folder: Path, backend: str | None = None, artifacts: str | None = None,
                 env: dict[str, str] | None = None):
        self.folder, self.port = Path(folder), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {}),
                    "MLFLOW_BACKEND_STORE_URI": backend or f"sqlite:///{self.folder}/server.db",
                    "MLFLOW_ARTIFACTS_DESTINATION": artifacts or str(self.folder / "server-artifacts"),
                    "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(self.port),
                    "MLFLOW_BIN": str(Path(sys.executable).parent / "mlflow")}
        self.log = self.folder / "mlflow-server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> MlflowServer:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([str(ROOT / "mlflow" / "start-server.sh")], env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            try:
                wait_http(f"{self.url}/health", self.proc, timeout=240)  # minutes under heavy load
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}; mlflow server log:\n{self.log.read_text()[-3000:]}") from None
        return self

    def stop(self) -> None:
        """SIGKILL to the server's process group: a server dying (what the outage tests need), and at once
        (`stop(proc, group=True)` would wait for a graceful exit)."""
        if self.proc is not None:
            try:  # the whole group, also when the server itself has exited: its workers may outlive it
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        self.proc = None


def processes_with(marker: str) -> dict[int, str]:
    """Live processes whose environment holds `marker` (a run's processes inherit it): pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


# MLflow's own HTTP layer retries 7 times with long backoff: leave retrying to ours (params mlflow.retries).
MLFLOW_HTTP_NO_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


# A tiny project for the flow tests (tests/flows, tests/reliability)

FLOW_ARTICLE = "jeans"


def tiny_overrides(tmp_path: Path) -> list[str]:
    return [
        "model.image_size=32", "model.split_point=layer4.1", "train.batch_size=32", "train.epochs_first=1",
        "train.epochs_add=1", "train.epochs_finetune=1", "train.epochs_final=1", "baselines.epochs=1",
        "validation.min_class_count=1", "validation.min_label_coverage=0.3",
        f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "mlflow.retry_delay_s=0.1",
        # a 1-epoch 32 px model on ~100 images answers mostly the majority class: the learning gate
        # would refuse every version these tests promote; test_train_flow turns it back on
        "gates.min_adjusted_balanced_accuracy=-1",
    ]


def make_project(folder: Path, n: int = 120) -> tuple[Path, list[str]]:
    """A project folder: params.yaml, a synthetic catalogue in data/raw/mini; flow-test overrides."""
    from progattr_core.config import load_params
    from progattr_core.data.synth import generate_catalogue

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "params.yaml", folder / "params.yaml")
    p = load_params(folder / "params.yaml")
    raw = folder / "data" / "raw" / "mini"
    generate_catalogue(FLOW_ARTICLE, n, raw, p.taxonomy, 32, p.synth.full_label_fraction, p.synth.label_rate,
                       p.synth.label_noise, 0, p.data.split, root=raw, workers=1)
    return folder / "params.yaml", tiny_overrides(folder)


TWO_ATTRIBUTES = ["taxonomy.jeans={fade: [no-fade, light-fade, heavy-fade], shade: [light, medium, dark, black]}",
                  "baselines.methods=[]"]
TWO_ATTRIBUTE_STAGES = 4  # first:fade, add:shade, finetune:fade+shade, final


def two_attribute_project(folder):
    import pandas as pd

    params_path, overrides = make_project(folder, n=60)
    manifest = folder / "data/raw/mini/jeans/manifest.parquet"
    pd.read_parquet(manifest).drop(columns=["distress"]).to_parquet(manifest)
    return params_path, [*overrides, *TWO_ATTRIBUTES]


def flow_store(params_path: Path, overrides: list[str]) -> Store:
    from tasks.context import make_context
    from tracking.store import Store

    return Store(make_context(params_path, FLOW_ARTICLE, overrides).store)


def stage_runs(store: Store) -> dict[int, list[str]]:
    runs: dict[int, list[str]] = {}
    for r in store.search({"kind": "stage"}):
        runs.setdefault(int(r.data.tags["progattr.stage_index"]), []).append(r.info.status)
    return runs


def stage_weights(path: Path) -> dict[str, torch.Tensor]:
    from progattr_core.model_file import read

    return read(path)["state_dict"]


def bucket_with_catalogue(s3_server: str, tmp_path, bucket: str) -> int:
    import boto3

    from progattr_core.config import load_params
    from progattr_core.data.synth import generate_catalogue

    p = load_params(ROOT / "params.yaml")
    local = tmp_path / "catalogue"
    generate_catalogue(FLOW_ARTICLE, 8, local, p.taxonomy, 32, 0.5, 0.8, 0.0, 0, p.data.split, root=local, workers=1)
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket=bucket)
    files = [f for f in local.rglob("*") if f.is_file()]
    for f in files:
        s3.upload_file(str(f), bucket, f"cat/{f.relative_to(local).as_posix()}")
    return len(files)


# A densely labelled catalogue in the Kaggle layout (tests/unit/test_pretrain.py, tests/flows/test_pretrain_flow.py)

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
TYPES = ["Watches", "Jeans", "Tshirts"]  # Tshirts: excluded by the committed params
COLOURS = ["Black", "Blue", "Red"]


def kaggle_folder(tmp_path, n: int = 36):
    """styles.csv + images/<id>.jpg: n rows cycling over three article types and colours; one rare
    colour (below any min_class_count > 1) and one literal NA."""
    from tests.unit.data_helpers import write_image

    folder = tmp_path / "kaggle"
    lines = [HEADER]
    for i in range(1, n + 1):
        colour = "Fluorescent Green" if i == 1 else "NA" if i == 2 else COLOURS[i % 3]
        kind = TYPES[(i // 3) % 3]
        pattern = ("Striped", "Solid", "Printed", "")[i % 4]  # a fine detail in the name, or none
        lines.append(f"{i},{'Men' if i % 2 else 'Women'},Apparel,Topwear,{kind},{colour},Summer,2012,Casual,"
                     f"{pattern} Item {i}")
        write_image(folder / "images" / f"{i}.jpg", seed=i, fmt="JPEG")
    (folder / "styles.csv").write_text("\n".join(lines) + "\n")
    return folder
