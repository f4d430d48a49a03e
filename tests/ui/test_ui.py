"""The Dagster UI tells the truth (issue 20), read from the pages that headless Chromium renders.

`make dev` serves the code location on a tiny corpus that `gtzan run` built (1 and 5 s features,
``timbre_logreg``, the report); the tests read the pages a user reads: a job page's automation tag,
each check's status against its last evaluation, the report's figures in their dialog, and a
model trained before a new song was ingested and its features rebuilt. ``make test-ui`` only.
"""

from __future__ import annotations

import os
import re
import time
from unittest import mock

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.timeout(600)]

LAST_EVALUATION = """
query($key: AssetKeyInput!, $name: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: 1) { status evaluation { success description } } }
"""
AUTOMATION_RUNS = """
{ runsOrError(filter: {tags: [{key: "gtzan/trigger", value: "automation"}]}) {
  ... on Runs { results { runId jobName tags { key value } } } } }
"""
#: What a check's detail panel calls an evaluation that passed, or not.
RESULT = {True: "Passed", False: "Failed"}


def visit(page, stack, path: str, wait_for: str):
    """Open ``path`` of the UI, wait for ``wait_for`` on it, and close Dagster's newsletter pop-up."""
    page.goto(stack["server"].base + path)
    page.get_by_text(wait_for, exact=False).first.wait_for()
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=3000)
        skip.click()
    except Exception:  # noqa: BLE001 - no pop-up this time
        pass
    return page


def body(page) -> str:
    return page.inner_text("body")


def last_evaluation(stack, asset: str, check: str) -> dict:
    out = stack["server"].gql(LAST_EVALUATION, {"key": {"path": [asset]}, "name": check})
    [ex] = out["assetCheckExecutions"]
    return ex


def test_job_page_says_automation_is_on(stack, page):
    assert stack["server"].gql("{ instance { autoMaterializePaused } }")["instance"]["autoMaterializePaused"] is False
    visit(page, stack, f"/locations/{stack['location']}/jobs/features_job", "Auto-materialize")
    page.wait_for_function("() => (document.body.innerText.match(/\\d+ \\/ \\d+ Passed/g) || []).length >= 2")
    text = body(page)
    assert "Auto-materialize on" in text and "Auto-materialize off" not in text
    # both views' blocking checks passed on their last (partitioned) evaluation: no "0 / 1 Passed"
    assert re.findall(r"\d+ / \d+ Passed", text) == ["1 / 1 Passed"] * 2, text


@pytest.mark.parametrize("asset,check", [("mel_features", "features_sane"), ("timbre_features", "timbre_sane"),
                                         ("genre_models", "model_above_chance")])
def test_each_check_shows_its_last_evaluation(stack, page, asset, check):
    last = last_evaluation(stack, asset, check)
    assert last["status"] == "SUCCEEDED" and last["evaluation"]["success"], last
    visit(page, stack, f"/assets/{asset}?view=checks&checkDetail={check}", "Evaluation result")
    text = body(page)
    shown = re.search(r"Evaluation result\s+(\w+)", text)
    assert shown and shown[1] == RESULT[last["evaluation"]["success"]], text
    assert last["evaluation"]["description"] in text
    assert "Not evaluated" not in text and "Not Evaluated" not in text


def test_report_figures_fit_the_dialog(stack, page):
    visit(page, stack, "/assets/evaluation_report", "[Show Markdown]")
    page.get_by_text("[Show Markdown]").first.click()
    page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('[role=dialog] img')];"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }")
    fit = page.evaluate(
        """() => { const d = document.querySelector('[role=dialog]'); const box = d.getBoundingClientRect();
           return {dialog: [box.left, box.right], scroll: [d.scrollWidth, d.clientWidth],
                   imgs: [...d.querySelectorAll('img')].map(i => { const r = i.getBoundingClientRect();
                     return {alt: i.alt, natural: i.naturalWidth, width: r.width, left: r.left, right: r.right}; })}; }""")
    assert len(fit["imgs"]) == 4, fit  # accuracy, confusions, costs, mel spectrograms (with its dB bar)
    left, right = fit["dialog"]
    for img in fit["imgs"]:
        assert left <= img["left"] and img["right"] <= right, (img, fit["dialog"])  # nothing cut off
        assert img["natural"] <= 880, img  # figures are drawn to fit the dialog, not scaled down to it
    assert fit["scroll"][0] <= fit["scroll"][1], fit  # nothing to scroll sideways


def _ingest_a_new_song_and_rebuild_features(stack) -> None:
    """A new song in the corpus, then ingest and the 1 and 5 s features, recorded in the UI's instance."""
    import dagster as dg

    from pipelines.definitions import build_defs
    from pipelines.resources import make_resources
    from pipelines.settings import Settings

    blues = stack["corpus"] / "blues"
    data = bytearray(sorted(blues.iterdir())[0].read_bytes())
    data[-2:] = b"\x07\x00"  # another file: another sha256
    (blues / "blues.00099.wav").write_bytes(bytes(data))
    settings = Settings.from_env(stack["env"])
    defs = build_defs(make_resources(settings), settings)
    # runs of a persistent instance check their folders against the roots of the process's
    # own settings (its environment), so this process takes the UI's
    gtzan_env = {k: v for k, v in stack["env"].items() if k.startswith("GTZAN_")}
    with mock.patch.dict(os.environ, gtzan_env), dg.DagsterInstance.from_config(str(stack["home"])) as instance:
        assert defs.resolve_job_def("ingest_job").execute_in_process(instance=instance).success
        for clip in ("1", "5"):
            assert defs.resolve_job_def("features_job").execute_in_process(instance=instance, partition_key=clip).success


def graph_checks(page, stack) -> list[str]:
    """What the training group's graph says of genre_models' checks ("2 / 2 Passed")."""
    visit(page, stack, f"/locations/{stack['location']}/asset-groups/training", "genre_models")
    page.wait_for_function("() => /\\d+ \\/ 2 Passed/.test(document.body.innerText)")
    return re.findall(r"\d+ / 2 Passed", body(page))


def test_model_shows_out_of_date_after_a_new_song(stack, page):
    before = last_evaluation(stack, "genre_models", "models_current")
    assert before["evaluation"]["success"], before
    assert graph_checks(page, stack) == ["2 / 2 Passed"]  # model_above_chance and models_current
    _ingest_a_new_song_and_rebuild_features(stack)
    deadline = time.monotonic() + 240  # the automation sensor ticks every 30 s, then runs the check
    while time.monotonic() < deadline:
        last = last_evaluation(stack, "genre_models", "models_current")
        if last["evaluation"] and not last["evaluation"]["success"]:
            break
        time.sleep(5)
    assert last["evaluation"] and not last["evaluation"]["success"], last
    assert "timbre_logreg 1 s" in last["evaluation"]["description"]
    visit(page, stack, "/assets/genre_models?view=checks&checkDetail=models_current", "Evaluation result")
    text = body(page)
    assert re.search(r"Evaluation result\s+Failed", text), text
    assert "2 of 2 trained models out of date" in text
    # and the graph says so on the model's node, without opening a partition
    assert graph_checks(page, stack) == ["1 / 2 Passed"]
    # the check's run was launched by automation: Dagster names it __ASSET_JOB, its tags say what it is
    runs = stack["server"].gql(AUTOMATION_RUNS)["runsOrError"]["results"]
    assert runs and all(r["jobName"] == "__ASSET_JOB" for r in runs), runs
    visit(page, stack, "/runs?q%5B%5D=tag%3Agtzan%2Ftrigger%3Dautomation", runs[0]["runId"][:8])
    assert runs[0]["runId"][:8] in body(page)
