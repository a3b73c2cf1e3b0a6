"""issue 14 (Service): the published OpenAPI schema and the answers agree. Schemathesis,
with every check it has, generates at least 1,000 requests from `/docs.json` against a
real `omni serve` and finds nothing (not only no 5xx: no answer outside the schema, no
schema-valid request refused, no schema-invalid request accepted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from service_helpers import omni_serve, stop

pytestmark = pytest.mark.slow
TOKEN = "schema-token"
EXAMPLES = 300  # per operation and phase: about 1,800 requests, ~20 s


# issue 14: 400 `detail` was a list where the schema says string; /recommend answered
# "channel": null / "store_id": null where the schema says string; `{}` to
# /next_best_channel is valid per schema but was answered 400.
def test_schemathesis_with_all_checks_finds_nothing(trained_home, tmp_path):
    proc, url = omni_serve(trained_home, tmp_path / "logs", OMNI_API_TOKEN=TOKEN)
    try:
        cli = Path(sys.executable).parent / "schemathesis"
        run = subprocess.run(
            [
                str(cli), "run", f"{url}/docs.json",
                "--checks", "all",
                # issue 17: /events is tested on its own (tests/test_live_service.py): the
                # contract's rules (time range, ids) are more than a schema says, and
                # accepted events would change the shared home
                "--exclude-path", "/events",
                "--header", f"Authorization: Bearer {TOKEN}",
                "--max-examples", str(EXAMPLES),
                "--seed", "14",
                "--continue-on-failure",
                "--generation-database", "none",
                "--request-timeout", "10",
                "--workers", "2",
                "--no-color",
                "--report", "json",
                "--report-json-path", str(tmp_path / "report.json"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )  # fmt: skip
    finally:
        stop(proc)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["failures"] == [] and report["errors"] == []
    assert report["test_cases"]["generated"] >= 1000, report["test_cases"]
    assert (
        report["phases"]["coverage"]["status"] == report["phases"]["fuzzing"]["status"] == "success"
    )
