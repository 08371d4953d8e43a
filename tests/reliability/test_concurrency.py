"""Two nightly runs of one article started directly (`progattr nightly`, not through the
deployment and its concurrency limit) at the same moment: one trains, the other does nothing and exits
75 naming the holder. (Two approvals racing on one model:
tests/ops/test_approvals.py::test_racing_approvals_leave_aliases_and_log_consistent.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from progattr_core.locks import hold
from tests.paths import ROOT
from tests.support import FLOW_ARTICLE, flow_store, make_project

pytestmark = pytest.mark.flows
ONE_ATTRIBUTE = ["taxonomy.jeans={fade: [no-fade, light-fade, heavy-fade]}", "baselines.methods=[]"]


def _project(folder):
    """A tiny one-attribute project: the winning run holds the lock for the tens of seconds its training takes."""
    params_path, overrides = make_project(folder, n=40)
    manifest = folder / "data/raw/mini/jeans/manifest.parquet"
    pd.read_parquet(manifest).drop(columns=["shade", "distress"]).to_parquet(manifest)
    return params_path, [*overrides, *ONE_ATTRIBUTE]


def test_two_nightly_runs_started_at_once_one_runs_the_other_exits_cleanly(tmp_path, prefect_harness):
    params_path, overrides = _project(tmp_path / "p")
    cmd = [sys.executable, "-m", "progattr", "nightly", "--article", FLOW_ARTICLE, "--source", "data/raw/mini",
           "--params", str(params_path), *[a for o in overrides for a in ("--set", o)]]
    env = {**os.environ, "PREFECT_API_URL": prefect_harness}
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 75], "\n\n".join(out + err[-3000:] for out, err in outs)
    winner, loser = sorted(range(2), key=lambda i: procs[i].returncode)

    result = json.loads(outs[winner][0][outs[winner][0].index("{"):])
    assert result["skipped"] is False and result["registry"]["version"] == "1"
    message = outs[loser][1].strip().splitlines()[-1]
    lock = params_path.parent / "outputs" / FLOW_ARTICLE / "nightly.lock"
    assert re.fullmatch(rf"progattr nightly: the nightly run of '{FLOW_ARTICLE}' is already running \(pid "
                        rf"{procs[winner].pid} on \S+, started \S+; lock {re.escape(str(lock))}\); this run did nothing",
                        message), message
    assert "Traceback" not in outs[loser][1]
    assert json.loads(outs[loser][0][outs[loser][0].index("{"):])["reason"] == "busy"

    assert [str(v.version) for v in flow_store(params_path, overrides).client.search_model_versions()] == ["1"]
    with hold(lock, "a later run"):  # the winner let it go on exit
        pass
