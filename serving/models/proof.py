"""A model version is proven in a child process before the serving process touches it.

LightGBM parses `model.txt` in native code, and for many ways of cutting that file short it
aborts the whole process instead of raising (std::terminate, out-of-range reads): a broken
champion would kill the service, and kill it again at every restart. So the service never loads
a bundle it has not seen load in another process first: `prove(bundles)` runs
`python -m serving.models.proof DIR LABEL [DIR LABEL ...]`, which loads each bundle, builds the
single-row fast path, scores the bundle's stored input example through the fast path,
`Booster.predict` and the compiled forest, and checks that every probability is finite and in
[0, 1]. Whatever the child
dies of (an abort, a segfault, an exception, a hang past `timeout_s`), the version is refused
with that reason; only an exit with status 0 lets the parent load it.

A proof costs a Python start plus the imports (about 2-3 s for both models of a pair: one child
proves both), once per bundle content: proven
bundles are remembered by the SHA-256 of their files for the life of the process, so a restart
of the same champion, or a version seen before, does not pay again.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final

EXIT_REFUSED: Final = 3
_proven: set[str] = set()
_lock = threading.Lock()


class ProofFailed(RuntimeError):
    """The child refused the bundle `label` or died on it; the message says how, in one line."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(reason)
        self.label = label


def digest(bundle_dir: Path) -> str:
    """SHA-256 over the bundle's file names and contents (every file, sorted)."""
    h = hashlib.sha256()
    for path in sorted(p for p in bundle_dir.iterdir() if p.is_file()):
        h.update(path.name.encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _text(data: bytes | str | None) -> str:
    """A dying LightGBM may print any bytes (it reads past a cut file): never fail on them."""
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def _death(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the proof process was killed by {name} while loading the model"
    return f"the proof process exited with status {code}"


def prove(bundles: Sequence[tuple[str, Path]], timeout_s: float) -> None:
    """Return once a child process has loaded and scored every (label, bundle directory) not
    proven before; else ProofFailed naming the label whose proof failed. One child proves them
    all (one Python start and one set of imports for the pCTR and pCVR models); it says which
    bundle it is on before each, so a death is attributed to the right model."""
    keys = {label: digest(path) for label, path in bundles}
    with _lock:
        todo = [(label, path) for label, path in bundles if keys[label] not in _proven]
    if not todo:
        return
    cmd = [sys.executable, "-m", "serving.models.proof"]
    for label, path in todo:
        cmd += [str(path), label]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
        out, code, err = _text(done.stdout), done.returncode, _text(done.stderr)
    except subprocess.TimeoutExpired as e:
        out, code, err = _text(e.stdout), None, ""
    lines = out.splitlines()
    proven = {ln.removeprefix("ok ") for ln in lines if ln.startswith("ok ")}
    with _lock:
        _proven.update(keys[label] for label in proven)
    if code == 0:
        return
    on = [ln.removeprefix("proving ") for ln in lines if ln.startswith("proving ")]
    label = on[-1] if on else todo[0][0]
    said = [ln.removeprefix("refused: ") for ln in lines if ln.startswith("refused: ")]
    if code is None:
        raise ProofFailed(label, f"the proof process did not finish within {timeout_s:g} s")
    if code == EXIT_REFUSED and said:
        raise ProofFailed(label, said[-1])
    tail = " ".join(err.strip().splitlines()[-1:])[:200]
    raise ProofFailed(label, _death(code) + (f" ({tail})" if tail else ""))


def _main(argv: list[str]) -> int:
    """In the child: load, build and smoke-test each bundle in turn; exit 0, or EXIT_REFUSED
    with the reason on stdout."""
    from features.bundle import BundleError, ModelBundle
    from serving.models.predictor import LoadedModel, smoke_check_model
    from serving.models.registry import ModelRef, VersionRefused

    for bundle_dir, label in zip(argv[::2], argv[1::2], strict=True):
        print(f"proving {label}", flush=True)
        try:
            bundle = ModelBundle.load(Path(bundle_dir))
            model = LoadedModel.build(ModelRef(label, "", "", None), bundle)
            smoke_check_model(model, label)
        except (BundleError, VersionRefused) as e:
            print("refused: " + " ".join(str(e).split())[:400], flush=True)
            return EXIT_REFUSED
        except Exception as e:  # whatever a broken artifact raises is a refusal, not a crash
            print(f"refused: {type(e).__name__}: " + " ".join(str(e).split())[:400], flush=True)
            return EXIT_REFUSED
        print(f"ok {label}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
