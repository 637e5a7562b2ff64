"""Broken model versions are proven in a child process and refused; the service never dies.

Every artifact here is really broken and really registered in a SQLite MLflow store (a copy of
the session's quickstart store), then promoted to `champion` and reloaded through
`POST /admin/reload` on one live server, while a load loop posts /v1/predict and /v1/bid
throughout. `proof.prove` is also tested on bundle directories directly, and a service is
started with a broken champion.

`model.txt` is cut at points placed by the file's own structure, not by byte counts (so a
retrained model is cut at the same kinds of place): mid `feature_names=`, mid `tree_sizes=`,
right after the first tree, mid the first and the last tree's `leaf_value=`, mid a `threshold=`
line a third and two thirds of the way through the trees (the latter in pCTR and in pCVR), and
inside the `parameters:` trailer. On LightGBM 4.7 a cut in the header raises `LightGBMError`
(refused with "not a LightGBM model"); every other cut, from `tree_sizes=` through the trees
into `parameters:`, kills the parsing process in native code (SIGABRT from std::terminate
after `Model format error`, or SIGSEGV: the parser reads past the end of the string, and what
it prints from there is not UTF-8). Cuts that lose nothing LightGBM needs (just before
`end of trees`, or inside `feature_importances:` or `pandas_categorical`) load a complete
model: those are not broken and not used here.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from features.bundle import CALIBRATOR_FILE, META_FILE, MODEL_FILE, SPEC_FILE
from serving.models import proof
from tests.helpers.serving import API_KEY, Server, run_server

pytestmark = pytest.mark.integration

MODELS = {"ctr": "bidopt-ctr", "cvr": "bidopt-cvr"}
IMP = {"event_time": "2025-06-01T14:05:00Z", "channel": "web"}
BID_BODY = {
    "impressions": [{**IMP, "impression_id": "i1", "floor_price": 0.1, "auction_type": "second"}],
    "campaigns": [
        {"campaign_id": "c1", "goal": "cpm", "target": 1.0, "max_bid": 2.0, "creative_ids": ["cr"]}
    ],
}
NATIVE_DEATH = "the proof process was killed by SIG"
NOT_LIGHTGBM = "not a LightGBM model"
INVALID_JSON = "invalid JSON contract"
PAUSE_S = 0.01  # between the load loop's requests: leave the 2-core CI host to the proofs
RELOAD_TIMEOUT_S = 240.0  # a proof is a Python start plus LightGBM: slow on a busy CI host


# -- the store and the artifacts ------------------------------------------------------------------


def client_for(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion(uri: str, name: str) -> str:
    return str(client_for(uri).get_model_version_by_alias(name, "champion").version)


def register(uri: str, name: str, source: Path) -> str:
    """A new version of `name` whose artifacts are the directory `source`."""
    c = client_for(uri)
    run_id = c.get_model_version_by_alias(name, "champion").run_id
    return str(c.create_model_version(name, source=source.as_uri(), run_id=run_id).version)


def promote(uri: str, name: str, version: str) -> None:
    client_for(uri).set_registered_model_alias(name, "champion", version)


def download_champion(uri: str, name: str, dst: Path) -> Path:
    """The champion's whole logged model (MLmodel and artifacts/) as a local directory."""
    import mlflow.artifacts

    c = client_for(uri)
    src = c.get_model_version_download_uri(name, champion(uri, name))
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=src, dst_path=str(dst)))


def bundle_path(model_dir: Path) -> Path:
    """The bundle directory inside a downloaded logged model: where its model.txt is."""
    (found,) = model_dir.rglob(MODEL_FILE)
    return found.parent


def copy_store(serving_store: tuple[str, Path], dst_dir: Path) -> str:
    uri, _ = serving_store
    dst = dst_dir / "mlflow.db"
    shutil.copyfile(uri.removeprefix("sqlite:///"), dst)
    return f"sqlite:///{dst}"


# -- ways to break a bundle -----------------------------------------------------------------------


def _mid_line(text: str, prefix: str, nth: int = 0) -> int:
    """An offset halfway along the `nth` line starting with `prefix` (negative counts back)."""
    starts = [m.start() for m in re.finditer("(?m)^" + re.escape(prefix), text)]
    start = starts[nth]
    return (start + text.index("\n", start)) // 2


def _tree_line(text: str, fraction: float) -> int:
    """Halfway along the `threshold=` line of the tree `fraction` of the way through."""
    count = len(re.findall("(?m)^threshold=", text))
    return _mid_line(text, "threshold=", int(count * fraction))


# name -> (where to cut model.txt, what the refusal says). Placed by structure, not by byte
# counts, so a retrained quickstart model is cut at the same kind of place.
CUTS: dict[str, tuple[Callable[[str], int], str]] = {
    "feature_names": (lambda t: _mid_line(t, "feature_names="), NOT_LIGHTGBM),
    "tree_sizes": (lambda t: _mid_line(t, "tree_sizes="), NATIVE_DEATH),
    "after_first_tree": (lambda t: t.index("\nTree=1\n") + 1, NATIVE_DEATH),
    "first_tree_leaf_values": (lambda t: _mid_line(t, "leaf_value="), NATIVE_DEATH),
    "a_third_of_the_trees": (lambda t: _tree_line(t, 1 / 3), NATIVE_DEATH),
    "two_thirds_of_the_trees": (lambda t: _tree_line(t, 2 / 3), NATIVE_DEATH),
    "last_tree_leaf_values": (lambda t: _mid_line(t, "leaf_value=", -1), NATIVE_DEATH),
    "parameters": (lambda t: t.index("\nparameters:") + 40, NATIVE_DEATH),
}
CVR_CUT = "two_thirds_of_the_trees"  # the same kind of cut, in the pCVR model only
START_CUT = "after_first_tree"  # the broken champion a service is started with


def truncate(name: str) -> Callable[[Path], None]:
    where, _ = CUTS[name]

    def cut(bundle: Path) -> None:
        text = (bundle / MODEL_FILE).read_text()
        (bundle / MODEL_FILE).write_text(text[: where(text)])

    return cut


def garbage_bytes(bundle: Path) -> None:
    size = (bundle / MODEL_FILE).stat().st_size
    (bundle / MODEL_FILE).write_bytes(random.Random(12).randbytes(size))


def tree_sizes(text: str) -> list[int]:
    starts = [m.start() for m in re.finditer(r"(?m)^Tree=\d+$", text)]
    return [b - a for a, b in zip(starts, [*starts[1:], text.index("end of trees")], strict=True)]


def nan_leaves(bundle: Path) -> None:
    """Every leaf of the first tree is NaN, so every row scores NaN. `tree_sizes=` is rewritten
    to match, else LightGBM would die on the length change instead (which the cuts cover)."""
    text = (bundle / MODEL_FILE).read_text()
    start = text.index("\nleaf_value=") + 1
    end = text.index("\n", start)
    leaves = len(text[start:end].split("=", 1)[1].split())
    text = text[:start] + "leaf_value=" + " ".join(["nan"] * leaves) + text[end:]
    sizes = " ".join(map(str, tree_sizes(text)))
    text = re.sub(r"(?m)^tree_sizes=.*$", "tree_sizes=" + sizes, text)
    (bundle / MODEL_FILE).write_text(text)


def broken_json(file: str) -> Callable[[Path], None]:
    def breaks(bundle: Path) -> None:
        text = (bundle / file).read_text()
        (bundle / file).write_text(text[: len(text) // 2])  # cut mid-document: not JSON

    return breaks


@dataclass(frozen=True)
class Case:
    id: str
    key: str  # ctr or cvr: the one model broken
    brk: Callable[[Path], None] | None  # None: the version points at a directory that is gone
    says: str
    remove_bundle: bool = False


CASES = [
    *(
        Case(f"ctr-cut-{name}", "ctr", truncate(name), says)
        for name, (_, says) in CUTS.items()
        if name != START_CUT
    ),
    Case(f"cvr-cut-{CVR_CUT}", "cvr", truncate(CVR_CUT), CUTS[CVR_CUT][1]),
    Case("ctr-garbage-bytes", "ctr", garbage_bytes, "model.txt: not UTF-8 text"),
    Case("ctr-nan-leaves", "ctr", nan_leaves, "smoke check failed on input_example[0]"),
    # ModelBundle.load says which directory, not which of the three JSON files
    Case(
        "ctr-broken-calibrator",
        "ctr",
        broken_json(CALIBRATOR_FILE),
        f"{CALIBRATOR_FILE}: {INVALID_JSON}",
    ),
    Case("cvr-broken-spec", "cvr", broken_json(SPEC_FILE), f"{SPEC_FILE}: {INVALID_JSON}"),
    Case("ctr-no-bundle-dir", "ctr", None, "no bundle directory", remove_bundle=True),
    Case("ctr-no-artifacts-at-all", "ctr", None, "download failed"),
]


def broken_version(case: Case, uri: str, good: dict[str, Path], work: Path) -> str:
    """Register the broken copy of `case.key`'s champion; returns its version."""
    model_dir = work / "model"
    shutil.copytree(good[case.key], model_dir)
    bundle = bundle_path(model_dir)
    if case.remove_bundle:
        shutil.rmtree(bundle)
    elif case.brk is None:
        shutil.rmtree(model_dir)  # registered, then its artifacts vanish
    else:
        case.brk(bundle)
    return register(uri, MODELS[case.key], model_dir)


# -- the load loop --------------------------------------------------------------------------------


@dataclass
class LoadLoop:
    """Posts /v1/predict and /v1/bid in turn (about 50 a second), recording every answer."""

    base_url: str
    seen: list[tuple[str, int, tuple[str, str] | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=60) as c:
            while not self.stop.is_set():
                for path, body in (("/v1/predict", {"impressions": [IMP]}), ("/v1/bid", BID_BODY)):
                    try:
                        r = c.post(path, json=body)
                    except httpx.HTTPError as e:  # a dropped connection is a failed request
                        self.seen.append((path, -1, (type(e).__name__, "")))
                        continue
                    models = r.json().get("models") if r.status_code == 200 else None
                    pair = (models["ctr"]["version"], models["cvr"]["version"]) if models else None
                    self.seen.append((path, r.status_code, pair))
                    time.sleep(PAUSE_S)


@pytest.fixture(scope="module")
def store(serving_store: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    return copy_store(serving_store, tmp_path_factory.mktemp("proof-store"))


@pytest.fixture(scope="module")
def good(store: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The champions' logged models, downloaded once: the originals every case breaks."""
    base = tmp_path_factory.mktemp("proof-good")
    return {key: download_champion(store, name, base / key) for key, name in MODELS.items()}


@pytest.fixture(scope="module")
def served(store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"BIDOPT_RELOAD_INTERVAL_S": "3600"}  # only /admin/reload moves it: one attempt each
    with run_server(store, tmp_path_factory.mktemp("proof-server"), env=env) as server:
        yield server


@pytest.fixture(scope="module")
def loop(served: Server) -> Iterator[LoadLoop]:
    load = LoadLoop(served.base_url)
    worker = threading.Thread(target=load.run, daemon=True)
    worker.start()
    yield load
    load.stop.set()
    worker.join(timeout=60)


def counter(metrics: str, key: str, outcome: str) -> float:
    line = f'bidopt_model_reloads_total{{model="{key}",outcome="{outcome}"}} '
    values = [float(ln[len(line) :]) for ln in metrics.splitlines() if ln.startswith(line)]
    return values[0] if values else 0.0


def reload_counters(server: Server) -> dict[tuple[str, str], float]:
    text = server.client.get("/metrics").text
    return {(k, o): counter(text, k, o) for k in MODELS for o in ("success", "failure")}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# -- the cases, against one live server -----------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_version_is_refused_while_the_old_pair_serves(
    case: Case, served: Server, store: str, good: dict[str, Path], loop: LoadLoop, tmp_path: Path
) -> None:
    pair = (champion(store, MODELS["ctr"]), champion(store, MODELS["cvr"]))
    before = served.client.get("/v1/models").json()
    assert before["ready"] is True
    assert (before["models"]["ctr"]["version"], before["models"]["cvr"]["version"]) == pair
    counts = reload_counters(served)
    wait_for(lambda: len(loop.seen) > 0, 60, "the load loop's first answer")
    start = len(loop.seen)

    bad = broken_version(case, store, good, tmp_path)
    name = MODELS[case.key]
    promote(store, name, bad)
    try:
        r = served.client.post(
            "/admin/reload", headers={"X-API-Key": API_KEY}, timeout=RELOAD_TIMEOUT_S
        )
        assert r.status_code == 200, r.text
        outcome = r.json()
        answered = len(loop.seen)
        wait_for(lambda: len(loop.seen) >= answered + 4, 60, "the load loop after the reload")
    finally:
        promote(store, name, pair[0] if case.key == "ctr" else pair[1])  # the store as found

    # refused, and the reason says which model and why
    assert outcome["changed"] is False
    error = outcome["error"]
    assert error.startswith(f"refused: models:/{name}/{bad}: "), error
    assert case.says.lower() in error.lower(), error
    other = MODELS["cvr" if case.key == "ctr" else "ctr"]
    assert other not in error
    # the old pair keeps serving
    after = served.client.get("/v1/models").json()
    assert after["ready"] is True
    assert (after["models"]["ctr"]["version"], after["models"]["cvr"]["version"]) == pair
    assert after["last_reload_error"] == error
    assert after["reloads_failed"] == before["reloads_failed"] + 1
    assert after["reloads_succeeded"] == before["reloads_succeeded"]
    new = [x for x in after["refused"] if x not in before["refused"]]
    assert [(x["name"], x["version"]) for x in new] == [(name, bad)], new
    assert new[0]["reason"] == error.removeprefix("refused: ")
    # /metrics: the failure is counted against the broken model only
    moved = {k: v - counts[k] for k, v in reload_counters(served).items()}
    want = {(k, o): 1.0 if (k, o) == (case.key, "failure") else 0.0 for k, o in counts}
    assert moved == want, moved
    # the log says it, naming the version, and that the old pair still serves
    assert f"model version refused, still serving v{pair[0]}/v{pair[1]}: models:/{name}/{bad}" in (
        served.log()
    )
    # and the load loop, all through the swap attempt: every request answered 200 by the old pair
    during = loop.seen[start:]
    assert len(during) >= 4
    failed = [(path, status) for path, status, _ in during if status != 200]
    assert not failed, f"{len(failed)} of {len(during)} requests failed: {failed[:5]}"
    assert {p for _, _, p in during} == {pair}
    assert served.proc.poll() is None


def test_load_loop_never_failed(served: Server, loop: LoadLoop) -> None:
    """All of the module's load, counted: each request answered 200 (runs after the cases)."""
    wait_for(lambda: len(loop.seen) >= 20, 60, "20 answers")
    statuses = [status for _, status, _ in loop.seen]
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    print(f"load loop: {len(statuses)} requests during {len(CASES)} refused swaps, all 200")
    assert served.proc.poll() is None
    assert "Traceback" not in served.log()


# -- proof.prove on a bundle directory, no server -------------------------------------------------


def fresh_copy(good: dict[str, Path], key: str, dst: Path) -> Path:
    """A copy of `key`'s champion bundle with a unique meta.json, so no earlier proof in this
    process has seen its digest."""
    shutil.copytree(bundle_path(good[key]), dst)
    meta = json.loads((dst / META_FILE).read_text())
    meta["test_copy"] = str(dst)
    (dst / META_FILE).write_text(json.dumps(meta))
    return dst


def test_prove_passes_a_good_pair_once_and_remembers_it(
    good: dict[str, Path], tmp_path: Path
) -> None:
    ctr = fresh_copy(good, "ctr", tmp_path / "ctr")
    cvr = fresh_copy(good, "cvr", tmp_path / "cvr")
    keys = {proof.digest(ctr), proof.digest(cvr)}
    assert not keys & proof._proven
    proof.prove([("ctr", ctr), ("cvr", cvr)], timeout_s=RELOAD_TIMEOUT_S)
    assert keys <= proof._proven
    # A second proof starts no process: with a timeout no Python start can meet, it still passes.
    proof.prove([("ctr", ctr), ("cvr", cvr)], timeout_s=1e-6)
    # The cache is by content: another copy of the same files is already proven.
    shutil.copytree(ctr, tmp_path / "same-ctr")
    proof.prove([("ctr", tmp_path / "same-ctr")], timeout_s=1e-6)


def test_prove_times_out_naming_the_first_unproven_model(
    good: dict[str, Path], tmp_path: Path
) -> None:
    """The negative control of the cache test: an unproven bundle with the same tiny timeout
    fails, so that passing there means no child was started."""
    ctr = fresh_copy(good, "ctr", tmp_path / "ctr")
    with pytest.raises(proof.ProofFailed) as e:
        proof.prove([("ctr", ctr)], timeout_s=0.01)
    assert e.value.label == "ctr"
    assert str(e.value) == "the proof process did not finish within 0.01 s"
    assert proof.digest(ctr) not in proof._proven


@pytest.mark.parametrize(
    ("broken", "cut"), [("ctr", "feature_names"), ("cvr", "a_third_of_the_trees")]
)
def test_prove_names_the_model_that_failed(
    broken: str, cut: str, good: dict[str, Path], tmp_path: Path
) -> None:
    """A refusal the child explains (LightGBM raised), and a child killed in native code: both
    are a ProofFailed naming the model the child was on."""
    dirs = {key: fresh_copy(good, key, tmp_path / key) for key in MODELS}
    truncate(cut)(dirs[broken])
    with pytest.raises(proof.ProofFailed) as e:
        proof.prove([(key, dirs[key]) for key in MODELS], timeout_s=RELOAD_TIMEOUT_S)
    assert e.value.label == broken
    if CUTS[cut][1] == NOT_LIGHTGBM:
        want = f"{dirs[broken] / MODEL_FILE}: {NOT_LIGHTGBM} (Wrong size of feature_names)"
        assert want in str(e.value), str(e.value)
    else:
        assert str(e.value).startswith(NATIVE_DEATH), str(e.value)
    assert proof.digest(dirs[broken]) not in proof._proven
    # ctr is proven first: when cvr is the broken one, ctr's success is remembered
    assert (proof.digest(dirs["ctr"]) in proof._proven) is (broken == "cvr")
    assert proof.digest(dirs["cvr"]) not in proof._proven


# -- a broken champion at start -------------------------------------------------------------------


def test_start_with_a_broken_champion_stays_up_and_recovers(
    serving_store: tuple[str, Path], good: dict[str, Path], tmp_path: Path
) -> None:
    uri = copy_store(serving_store, tmp_path)
    good_ctr = champion(uri, MODELS["ctr"])
    case = Case("start", "ctr", truncate(START_CUT), NATIVE_DEATH)
    bad = broken_version(case, uri, good, tmp_path)
    promote(uri, MODELS["ctr"], bad)
    env = {"BIDOPT_RELOAD_INTERVAL_S": "2"}  # retries back off 0.5, 1, 2, 2, ... s
    with run_server(uri, tmp_path, env=env, wait_ready=False) as server:
        c = server.client
        assert c.get("/healthz").status_code == 200
        wait_for(lambda: c.get("/v1/models").json()["reloads_failed"] >= 1, 120, "a refusal")
        r = c.get("/readyz")
        assert r.status_code == 503
        reason = r.json()["reason"]
        assert reason.startswith(f"refused: models:/bidopt-ctr/{bad}: {NATIVE_DEATH}"), reason
        r = c.post("/v1/predict", json={"impressions": [IMP]})
        assert r.status_code == 503 and r.json()["detail"].startswith("models not loaded"), r.text
        # it keeps retrying, with back-off, in the same process
        wait_for(lambda: c.get("/v1/models").json()["reloads_failed"] >= 2, 120, "a retry")
        status = c.get("/v1/models").json()
        assert status["ready"] is False and status["models"] == {}
        assert {(x["name"], x["version"]) for x in status["refused"]} == {("bidopt-ctr", bad)}
        metrics = c.get("/metrics").text
        assert counter(metrics, "ctr", "failure") == status["reloads_failed"]
        assert counter(metrics, "cvr", "failure") == 0.0
        assert server.proc.poll() is None
        assert server.log().count("Started server process") == 1
        # a good champion makes it ready, without a restart
        promote(uri, MODELS["ctr"], good_ctr)
        wait_for(lambda: c.get("/readyz").status_code == 200, RELOAD_TIMEOUT_S, "ready")
        r = c.post("/v1/predict", json={"impressions": [IMP]})
        assert r.status_code == 200 and r.json()["models"]["ctr"]["version"] == good_ctr
        assert server.proc.poll() is None
        assert server.log().count("Started server process") == 1
