"""Outside systems failing, injected into real processes on loopback: the MLflow tracking server down
at start, coming up late, and dying mid-run; the S3 endpoint refusing or cutting connections during
ingestion, and answering 503 or hanging during `dvc push`. Each either recovers within its bounded retries or fails with one clear line, leaving no
half-registered model version and no partial dataset version."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from mlflow import MlflowClient

from tests.paths import ROOT
from tests.support import (
    FLOW_ARTICLE,
    MLFLOW_HTTP_NO_RETRIES,
    TWO_ATTRIBUTE_STAGES,
    bucket_with_catalogue,
    free_port,
    make_project,
    two_attribute_project,
)

pytestmark = pytest.mark.flows


def _progattr(project, *argv: str, env: dict, overrides: tuple[str, ...] = ()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "progattr", *argv, "--params", str(project / "params.yaml"),
           "--set", *overrides]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **MLFLOW_HTTP_NO_RETRIES, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _ingest(project, uri: str, retries: int, delay: float, source: str = "data/raw/mini") -> subprocess.Popen:
    return _progattr(project, "pipeline", "ingest", "--article", FLOW_ARTICLE, "--source", source,
                     env={"MLFLOW_TRACKING_URI": uri}, overrides=(f"mlflow.retries={retries}",
                                                                  f"mlflow.retry_delay_s={delay}"))


def test_mlflow_down_for_good_fails_with_one_line_and_ingests_nothing(tmp_path):
    make_project(tmp_path / "p", n=12)
    uri = f"http://ci:hunter2-db-password@127.0.0.1:{free_port()}"
    proc = _ingest(tmp_path / "p", uri, retries=2, delay=0.1)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 7, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"progattr: error: MLflow at http://ci:***@{uri.split('@')[1]} failed 3 time(s)")
    assert "giving up (params mlflow.retries=2)" in last and "Connection refused" in last
    assert out.count("retry 1 in 0.1s") == 1 and out.count("retry 2 in 0.2s") == 1  # backoff doubles
    assert "hunter2" not in out and "Traceback" not in out
    assert not (tmp_path / "p/outputs").exists()


def test_mlflow_coming_up_late_is_waited_for_with_backoff(tmp_path, mlflow_control):
    make_project(tmp_path / "p", n=12)
    proc = _ingest(tmp_path / "p", mlflow_control.url, retries=8, delay=0.5)  # waits up to ~2 minutes
    time.sleep(3)
    mlflow_control.start()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert "retry 1 in 0.5s" in out and "12 images" in out
    (run,) = MlflowClient(mlflow_control.url).search_runs(
        [MlflowClient(mlflow_control.url).get_experiment_by_name("progattr").experiment_id])
    assert run.info.status == "FINISHED"


def test_mlflow_dying_mid_training_fails_cleanly_then_the_rerun_resumes(tmp_path, mlflow_control, prefect_harness,
                                                                        monkeypatch):
    from flows.train_flow import train_flow

    params_path, overrides = two_attribute_project(tmp_path / "p")
    overrides = [o for o in overrides if not o.startswith("mlflow.")] + ["mlflow.retries=3", "mlflow.retry_delay_s=0.2"]
    mlflow_control.start()
    client = MlflowClient(mlflow_control.url)
    cmd = [sys.executable, "-m", "progattr", "pipeline", "run", "--article", FLOW_ARTICLE, "--source", "data/raw/mini",
           "--params", str(params_path), *[a for o in overrides for a in ("--set", o)]]
    env = {**os.environ, **MLFLOW_HTTP_NO_RETRIES, "MLFLOW_TRACKING_URI": mlflow_control.url, "PREFECT_API_URL": prefect_harness}
    with open(tmp_path / "flow.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_stage(client, proc, 1)
            mlflow_control.stop()  # the tracking server dies during stage 1 and stays down
            assert proc.wait(timeout=300) != 0
        finally:
            if proc.poll() is None:
                proc.kill()
    text = (tmp_path / "flow.log").read_text()
    assert "TrackingUnavailableError" in text and "giving up (params mlflow.retries=3)" in text, text[-3000:]

    mlflow_control.start()
    assert client.search_registered_models() == [] and client.search_model_versions() == []  # nothing half-registered
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_control.url)
    for key, value in MLFLOW_HTTP_NO_RETRIES.items():
        monkeypatch.setenv(key, value)
    resumed = train_flow(FLOW_ARTICLE, "data/raw/mini", str(params_path), overrides)
    assert resumed["stages_trained"] == list(range(1, TWO_ATTRIBUTE_STAGES))  # stage 0's checkpoint was still usable
    (version,) = client.search_model_versions(f"name = 'progattr-{FLOW_ARTICLE}'")
    assert version.version == "1"


def _wait_for_stage(client: MlflowClient, proc: subprocess.Popen, index: int) -> None:
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        exp = client.get_experiment_by_name("progattr")
        if exp is not None:
            runs = client.search_runs([exp.experiment_id], f"tags.`progattr.stage_index` = '{index}'")
            if runs:
                return
        time.sleep(0.3)
    raise AssertionError(f"the flow never reached stage {index} (exit {proc.poll()})")


# ---------------------------------------------------------------- S3


class LoopbackFront:
    """A TCP listener on loopback in front of the S3 server (`upstream`): each connection is handed to
    `_handle` in its own thread."""

    def __init__(self, upstream: str):
        self.host, self.port = upstream.split("//")[1].split(":")
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()


class FaultyProxy(LoopbackFront):
    """A TCP proxy that cuts the first `cut` object downloads half-way (a reset mid-body), or every one
    when `cut` is None; listings pass through."""

    def __init__(self, upstream: str, cut: int | None):
        self.cut, self.cuts = cut, 0
        super().__init__(upstream)

    def _handle(self, client: socket.socket) -> None:
        with client, socket.create_connection((self.host, int(self.port))) as up:
            while True:
                request = client.recv(65536)
                if not request:
                    return
                up.sendall(request)
                is_get_object = request.startswith(b"GET ") and b"list-type" not in request.split(b"\r\n")[0]
                response = self._read_response(up, head_only=request.startswith(b"HEAD "))
                if is_get_object and (self.cut is None or self.cuts < self.cut):
                    self.cuts += 1
                    client.sendall(response[: len(response) - 40])  # headers + part of the body, then reset
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return
                client.sendall(response)

    @staticmethod
    def _read_response(up: socket.socket, head_only: bool) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            data += up.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
        while not head_only and len(body) < length:
            body += up.recv(65536)
        return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("cut, ok", [(2, True), (None, False)], ids=["two-cuts-recovered", "always-cut-fails"])
def test_s3_downloads_cut_mid_body_retry_then_fail_without_a_dataset_version(tmp_path, s3_server, cut, ok):
    n_files = bucket_with_catalogue(s3_server, tmp_path, f"flaky-{'ok' if ok else 'bad'}")
    proxy = FaultyProxy(s3_server, cut)
    project = tmp_path / "p"
    project.mkdir()
    (project / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    try:
        proc = _progattr(project, "pipeline", "ingest", "--article", FLOW_ARTICLE, "--source",
                         f"s3://flaky-{'ok' if ok else 'bad'}/cat", env={"AWS_ENDPOINT_URL": proxy.url},
                         overrides=(f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",))
        out, _ = proc.communicate(timeout=300)
    finally:
        proxy.close()
    raw = project / "data/raw/cat"
    landed = [f for f in raw.rglob("*") if f.is_file() and f.name != ".s3sync-state.json"]
    assert not [f for f in landed if ".part-" in f.name], "a partial download was left in place"
    if ok:
        assert proc.returncode == 0 and "8 images" in out, out[-3000:]
        assert len(landed) == n_files and proxy.cuts == 2
    else:
        assert proc.returncode == 1 and proxy.cuts == 5, out[-3000:]  # 5 attempts (s3transfer), then give up
        last = out.strip().splitlines()[-1]
        assert last.startswith("progattr: error: s3://flaky-bad/cat/") and "download failed" in last, out[-3000:]
        assert not (project / "outputs/jeans/data_version.json").exists()  # no dataset version recorded
        assert landed == []


def test_an_s3_endpoint_refusing_connections_fails_with_one_line(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    endpoint = f"http://127.0.0.1:{free_port()}"
    proc = _progattr(project, "pipeline", "ingest", "--article", FLOW_ARTICLE, "--source", "s3://gone/cat",
                     env={"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"},
                     overrides=(f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",))
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-3000:]
    assert out.strip().splitlines()[-1].startswith(f"progattr: error: s3://gone/cat: EndpointConnectionError: "
                                                   f"Could not connect to the endpoint URL: \"{endpoint}/gone")
    assert not (project / "outputs").exists() or not list((project / "outputs").rglob("data_version.json"))


# ---------------------------------------------------------------- DVC push


class SwitchableS3(LoopbackFront):
    """`up` pipes bytes through, `down` answers each request 503 Service Unavailable, `hang` accepts and
    never answers (a slow endpoint). Counts the connections it refused."""

    def __init__(self, upstream: str, mode: str):
        self.mode, self.refused, self.held = mode, 0, []
        super().__init__(upstream)

    def _handle(self, client: socket.socket) -> None:
        if self.mode == "up":
            up = socket.create_connection((self.host, int(self.port)))
            threading.Thread(target=_pipe, args=(up, client), daemon=True).start()
            _pipe(client, up)
            return
        self.refused += 1
        if self.mode == "hang":
            self.held.append(client)  # open, never answered, until the test ends
            return
        with client:
            request = client.recv(65536)
            body = b"<?xml version='1.0'?><Error><Code>ServiceUnavailable</Code><Message>down</Message></Error>"
            client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"
                           b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                           + (b"" if request.startswith(b"HEAD ") else body))

    def close(self) -> None:
        super().close()
        for held in self.held:
            held.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.mark.parametrize("mode", ["down", "hang"])
def test_dvc_push_to_a_failing_s3_endpoint_gives_up_naming_the_remote_then_pushes_when_it_is_back(
        tmp_path, s3_server, monkeypatch, mode):
    """503s: botocore's attempts (AWS_MAX_ATTEMPTS), then a failure. A hung endpoint: each attempt ends at
    the remote's read_timeout and s3fs repeats it 5 times. Nothing local changes; the next push succeeds."""
    import boto3

    from tasks import dvc_store

    root = tmp_path / "project"
    (root / "data/raw/mini").mkdir(parents=True)
    for i in range(3):
        (root / f"data/raw/mini/{i}.txt").write_text(str(i) * 100)
    dvc_store.run_dvc(root, "init", "--no-scm", "-q")
    version = dvc_store.track(root, root / "data/raw/mini")
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=f"dvc-{mode}")
    proxy = SwitchableS3(s3_server, mode)
    secret = "hunter2-s3-secret-key"
    # what `dvc remote add -d` and `dvc remote modify [--local]` would write (a subprocess each)
    (root / ".dvc/config").write_text(f"[core]\n    no_scm = True\n    remote = store\n['remote \"store\"']\n"
                                      f"    url = s3://dvc-{mode}/store\n    endpointurl = {proxy.url}\n"
                                      "    read_timeout = 1\n    connect_timeout = 1\n")
    (root / ".dvc/config.local").write_text(f"['remote \"store\"']\n    access_key_id = AKIATESTING\n"
                                            f"    secret_access_key = {secret}\n")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2" if mode == "down" else "1")
    dvc_meta = (root / "data/raw/mini.dvc").read_text()
    try:
        start = time.monotonic()
        with pytest.raises(dvc_store.DvcError) as failed:
            dvc_store.push(root)
        elapsed = time.monotonic() - start
        message = str(failed.value)
        assert message.startswith(f"push to remote 'store' (s3://dvc-{mode}/store, {proxy.url}) failed: `dvc push`")
        assert ("(503) when calling the HeadObject operation (reached max retries: 1)" in message if mode == "down"
                else f"Read timeout on endpoint URL: \"{proxy.url}/dvc-{mode}/store/" in message), message
        assert proxy.refused == (2 if mode == "down" else 5), proxy.refused  # bounded: attempts x (s3fs 5 if timed out)
        assert elapsed < 60
        assert secret not in message and "AKIATESTING" not in message and "Having any troubles" not in message

        if mode == "hang":  # the caller's bound on the whole push: the dvc process is stopped
            with pytest.raises(dvc_store.DvcError, match=r"`dvc push` in .* did not finish within 2s; stopped"):
                dvc_store.push(root, timeout=2)
        assert (root / "data/raw/mini.dvc").read_text() == dvc_meta  # the dataset version is untouched
        proxy.mode = "up"
        dvc_store.push(root)
    finally:
        proxy.close()
    assert "in sync" in dvc_store.run_dvc(root, "status", "-c").lower()
    assert dvc_store.tracked_hash(root / "data/raw/mini") == version
