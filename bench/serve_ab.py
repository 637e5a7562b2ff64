"""The service of two commits side by side: /v1/bid req/s against the floor, for each.

    python bench/serve_ab.py --base c094bd9 [--head REV] [--rounds 4] [--duration 8]
                             [--tracking-uri URI]

A change that moves code around (a restructure, a new middleware) must not make the service
slower. This runs the working tree's service and `--base`'s (checked out with `git worktree` in
a temporary directory, same virtual environment, same models), plus the constant-reply floor of
bench/serve_load.py, all on core 0, and wrk on core 1; each round measures floor, this tree and
the base one after another, so the three saw the same neighbours. Printed: req/s and p99 per
round, each server's ratio to that round's floor, and the medians. `--head REV` runs that
revision instead of the working tree (e.g. a restructure's last commit, before later features
that cost time by design and are measured by their own benches).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from serve_load import (  # noqa: E402  (the shared harness)
    FLOOR_APP,
    Proc,
    bid_body,
    ensure_store,
    free_port,
    venv_env,
    wrk,
)


def add_worktree(rev: str, dest: Path) -> Path:
    """`rev` checked out (detached) at `dest`, sharing this repository's objects."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(dest), rev],
        check=True,
        capture_output=True,
    )
    return dest


def remove_worktree(tree: Path) -> None:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
        check=False,
        capture_output=True,
    )


def example_body(uri: str) -> dict:
    """A one-impression /v1/bid body from the champion's stored input example."""
    import json

    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version_by_alias("bidopt-ctr", "champion")
    src = client.get_model_version_download_uri("bidopt-ctr", mv.version)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=src, dst_path=tmp))
        meta = next(local.rglob("meta.json"))
        example = json.loads(meta.read_text())["input_example"][0]
    return bid_body(example)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("--head", default=None, help="git revision to run (default: this tree)")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--rows", type=int, default=100_000, help="quickstart rows if no champion")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    args = ap.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset"):
        sys.exit("needs wrk and taskset on PATH")

    work = Path(tempfile.mkdtemp(prefix="bidopt-ab-"))
    base_tree = add_worktree(args.base, work / "base")
    head_tree = add_worktree(args.head, work / "head-tree") if args.head else ROOT
    procs: list[Proc] = []
    try:
        uri = ensure_store(args.tracking_uri, args.rows, work)
        body = example_body(uri)
        (work / "floor_app.py").write_text(FLOOR_APP)
        ports = {name: free_port() for name in ("floor", "head", "base")}
        floor_cmd = [
            sys.executable, "-m", "uvicorn", "floor_app:app", "--port", str(ports["floor"]),
            "--no-access-log", "--no-proxy-headers", "--no-server-header",
            "--log-level", "warning",
        ]  # fmt: skip
        env = venv_env(BIDOPT_TRACKING_URI=uri)
        base_env = {**env, "PYTHONPATH": str(base_tree)}
        head_env = {**env, "PYTHONPATH": str(head_tree)}
        serve = [sys.executable, "-m", "serving.cli", "serve", "--port"]
        floor = Proc(floor_cmd, env, work, work / "floor.log", "0")
        (work / "head").mkdir()  # its ledger goes there, not into the checkout
        head = Proc([*serve, str(ports["head"])], head_env, work / "head", work / "head.log", "0")
        base = Proc([*serve, str(ports["base"])], base_env, base_tree, work / "base.log", "0")
        procs = [floor, head, base]
        floor.wait_ok(f"http://127.0.0.1:{ports['floor']}/", "POST", {})
        for p, name in ((head, "head"), (base, "base")):
            p.wait_ok(f"http://127.0.0.1:{ports[name]}/v1/bid", "POST", body)
        urls = {
            "floor": f"http://127.0.0.1:{ports['floor']}/",
            "head": f"http://127.0.0.1:{ports['head']}/v1/bid",
            "base": f"http://127.0.0.1:{ports['base']}/v1/bid",
        }
        ratios: dict[str, list[float]] = {"head": [], "base": []}
        rps: dict[str, list[float]] = {"floor": [], "head": [], "base": []}
        for i in range(args.rounds):
            order = ("floor", "head", "base") if i % 2 == 0 else ("floor", "base", "head")
            got = {name: wrk(urls[name], body if name != "floor" else {}, args.duration, work)
                   for name in order}  # fmt: skip
            for name in got:
                rps[name].append(got[name]["rps"])
            for name in ("head", "base"):
                ratios[name].append(got[name]["rps"] / got["floor"]["rps"])
            print(
                f"round {i + 1}: floor {got['floor']['rps']:.0f} req/s; "
                f"head {got['head']['rps']:.0f} (p99 {got['head']['p99_ms']:.2f} ms, "
                f"{ratios['head'][-1]:.3f} of the floor, non-2xx {got['head']['non2xx']:.0f}); "
                f"base {got['base']['rps']:.0f} (p99 {got['base']['p99_ms']:.2f} ms, "
                f"{ratios['base'][-1]:.3f}, non-2xx {got['base']['non2xx']:.0f})",
                flush=True,
            )
        print(
            f"\nmedian over {args.rounds} rounds: head {args.head or 'tree'} "
            f"{statistics.median(ratios['head']):.3f} of "
            f"the floor ({statistics.median(rps['head']):.0f} req/s), base {args.base} "
            f"{statistics.median(ratios['base']):.3f} ({statistics.median(rps['base']):.0f} "
            f"req/s); head / base, pairwise: "
            + ", ".join(f"{h / b:.3f}" for h, b in zip(rps["head"], rps["base"], strict=True))
        )
    finally:
        for p in procs:
            p.stop()
        for tree in {base_tree, head_tree} - {ROOT}:
            remove_worktree(tree)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
