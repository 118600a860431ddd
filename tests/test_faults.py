"""Fault and bad-input suite, part 1: bad files, recipes and checkpoints.

Each case runs the real CLI as a user would and asserts what issue 11 promises: exit 2, ONE line naming the
file or option, no traceback, and nothing outside ``--out`` (here: nothing at all) changed or created.
Output folders, reruns, concurrency and signals are in test_faults_runs.py.
"""

from __future__ import annotations

import pickle
import shutil
import struct

import numpy as np
import pytest
import torch
import yaml
from conftest import (
    TINY_STEPS,
    assert_one_line_error,
    assert_untouched,
    encode,
    pattern,
    run_main,
    tree_state,
    write_insightface_rec,
    write_recipe,
)


class _Exploit:
    """A pickle that would create a file when loaded: loading it must be refused, not run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _refused(tmp_path, *args, needles=()):
    """Run ``fskd ARGS`` and assert a one-line refusal that changed nothing under ``tmp_path``."""
    before = tree_state(tmp_path)
    line = assert_one_line_error(run_main(*args), *needles)
    assert_untouched(before, tmp_path)
    return line


# --- recipes: types and ranges checked when loaded, naming the file and key, before any data is read -------

RECIPE_FAULTS = [
    ({"train": {**TINY_STEPS, "log_every": 0}}, "train.log_every"),
    ({"train": {**TINY_STEPS, "momentum": -0.9}}, "train.momentum"),
    ({"train": {**TINY_STEPS, "weight_decay": -1e-4}}, "train.weight_decay"),
    ({"train": {**TINY_STEPS, "gamma": -0.1}}, "train.gamma"),
    ({"train": {**TINY_STEPS, "ckpt_every": -1}}, "train.ckpt_every"),
    ({"train": {**TINY_STEPS, "lr": float("nan")}}, "train.lr"),
    ({"train": {**TINY_STEPS, "lr": "fast"}}, "train.lr"),
    ({"train": {**TINY_STEPS, "batch_size": 0}}, "train.batch_size"),
    ({"train": {**TINY_STEPS, "milestones": [3, 2]}}, "train.milestones"),
    ({"train": {**TINY_STEPS, "milestones": [9]}}, "train.milestones"),
    ({"train": {**TINY_STEPS, "lrr": 0.1}}, "lrr"),
    ({"train": 5}, "train"),
    ({"data": {"path": "x", "workers": -2}}, "data.workers"),
    ({"distill": {"method": "f-skd", "scale": "4", "weight": -5.0}}, "distill.weight"),
    ({"distill": {"method": "f-skd", "scale": "3", "weight": 5.0}}, "distill.scale"),
    ({"device": "tpu"}, "device"),
]


@pytest.mark.parametrize(("sections", "key"), RECIPE_FAULTS, ids=[k for _, k in RECIPE_FAULTS])
def test_bad_recipe_value(tmp_path, tiny_digits, sections, key):
    recipe = write_recipe(tmp_path / "bad.yaml", tiny_digits, **{"train": TINY_STEPS, **sections})
    _refused(tmp_path, "train-teacher", "--recipe", recipe, "--out", tmp_path / "run", needles=(recipe, key))


@pytest.mark.parametrize(("text", "needle"), [(b"\x00\x9f\xff binary", "bad.yaml"), (b"- a\n- list\n", "mapping"),
                                              (b"train: {lr: [1\n", "YAML")], ids=["binary", "list", "unclosed"])
def test_recipe_that_is_not_a_recipe(tmp_path, text, needle):
    recipe = tmp_path / "bad.yaml"
    recipe.write_bytes(text)
    _refused(tmp_path, "train-teacher", "--recipe", recipe, "--out", tmp_path / "run", needles=("bad.yaml", needle))


def test_recipe_that_is_a_folder(tmp_path):
    (tmp_path / "recipe.yaml").mkdir()
    _refused(tmp_path, "train-teacher", "--recipe", tmp_path / "recipe.yaml", "--out", tmp_path / "run",
             needles=("recipe.yaml",))


def test_bad_set_override(tmp_path, tiny_recipe):
    _refused(tmp_path, "train-teacher", "--recipe", tiny_recipe, "--set", "train.momentum=-1", "--out", tmp_path / "run",
             needles=("train.momentum",))


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA on a machine without it")
def test_cuda_on_a_machine_without_it(tmp_path, tiny_digits):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, train=TINY_STEPS, device="cuda")
    _refused(tmp_path, "train-teacher", "--recipe", recipe, "--out", tmp_path / "run", needles=("cuda",))


def test_data_folder_missing(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", tmp_path / "no-such-data", train=TINY_STEPS)
    _refused(tmp_path, "train-teacher", "--recipe", recipe, "--out", tmp_path / "run", needles=("no-such-data",))


def test_prepared_manifest_corrupt(tmp_path, tiny_digits):
    data = tmp_path / "digits"
    shutil.copytree(tiny_digits, data)
    (data / "manifest.csv").write_bytes(b"\x89PNG garbage\x00\xff\n")
    recipe = write_recipe(tmp_path / "r.yaml", data, train=TINY_STEPS)
    before = tree_state(tmp_path)
    assert_one_line_error(run_main("train-teacher", "--recipe", recipe, "--out", tmp_path / "run"), "manifest.csv")
    assert_untouched(before, tmp_path, tmp_path / "run")


# --- checkpoints -------------------------------------------------------------------------------------------

def _eval(tmp_path, ckpt, data):
    return ("eval", "digits", "--ckpt", ckpt, "--data", data, "--results", tmp_path / "results.csv")


@pytest.mark.parametrize("content", [b"", b"\x00\x01 not a checkpoint " * 10, b"PK\x03\x04 truncated zip"],
                         ids=["empty", "junk", "truncated-zip"])
def test_unreadable_checkpoint(tmp_path, tiny_digits, content):
    ckpt = tmp_path / "student.pt"
    ckpt.write_bytes(content)
    _refused(tmp_path, *_eval(tmp_path, ckpt, tiny_digits), needles=("student.pt",))


def test_half_a_real_checkpoint(tmp_path, tiny_digits, tiny_teacher):
    real = (tiny_teacher / "checkpoint.pt").read_bytes()
    ckpt = tmp_path / "cut.pt"
    ckpt.write_bytes(real[: len(real) // 2])
    _refused(tmp_path, *_eval(tmp_path, ckpt, tiny_digits), needles=("cut.pt",))


def test_malicious_pickle_checkpoint_is_not_run(tmp_path, tiny_digits):
    ckpt = tmp_path / "evil.pt"
    torch.save({"arch": _Exploit(tmp_path / "pwned")}, ckpt)
    _refused(tmp_path, *_eval(tmp_path, ckpt, tiny_digits), needles=("evil.pt",))
    assert not (tmp_path / "pwned").exists()


def test_torch_file_that_is_not_an_fskd_checkpoint(tmp_path, tiny_digits):
    ckpt = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, ckpt)
    _refused(tmp_path, *_eval(tmp_path, ckpt, tiny_digits), needles=("weights.pt",))


def test_checkpoint_missing_or_a_folder_without_one(tmp_path, tiny_digits):
    _refused(tmp_path, *_eval(tmp_path, tmp_path / "nope.pt", tiny_digits), needles=("nope.pt",))
    (tmp_path / "run").mkdir()
    _refused(tmp_path, *_eval(tmp_path, tmp_path / "run", tiny_digits), needles=("run",))


def test_distill_from_a_missing_teacher(tmp_path, tiny_recipe):
    _refused(tmp_path, "distill", "--recipe", tiny_recipe, "--teacher", tmp_path / "t" / "checkpoint.pt",
             "--out", tmp_path / "s", needles=("checkpoint.pt",))


def test_eval_data_without_meta(tmp_path, tiny_teacher):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("not a prepared set")
    _refused(tmp_path, *_eval(tmp_path, tiny_teacher, tmp_path / "data"), needles=("data",))


# --- source files given to prepare -------------------------------------------------------------------------

def _rec_folder(tmp_path, n=4):
    src = tmp_path / "src"
    src.mkdir()
    write_insightface_rec(src, [(i % 2, encode(pattern(i))) for i in range(n)])
    return src


def test_rec_index_with_binary_bytes(tmp_path):
    src = _rec_folder(tmp_path)
    (src / "train.idx").write_bytes(b"\x00\xff\xfe\x01" * 8)
    _refused(tmp_path, "prepare", "rec", src, "--out", tmp_path / "out", needles=("train.idx",))


def test_rec_index_with_negative_offset(tmp_path):
    src = _rec_folder(tmp_path)
    lines = (src / "train.idx").read_text().splitlines()
    key, _ = lines[1].split("\t")
    lines[1] = f"{key}\t-64"
    (src / "train.idx").write_text("\n".join(lines) + "\n")
    _refused(tmp_path, "prepare", "rec", src, "--out", tmp_path / "out", needles=("train.idx",))


def test_rec_header_claims_more_images_than_the_index(tmp_path):
    from fskd_cli.data.readers.recordio import pack_record, write_recordio

    src = tmp_path / "src"
    src.mkdir()
    records = [(0, pack_record([1000, 1002], b"")), (1, pack_record(0, encode(pattern(1))))]
    write_recordio(src / "train.rec", src / "train.idx", records)
    _refused(tmp_path, "prepare", "rec", src, "--out", tmp_path / "out", needles=("train",))


def test_rec_header_with_nan_label(tmp_path):
    from fskd_cli.data.readers.recordio import pack_record, write_recordio

    src = tmp_path / "src"
    src.mkdir()
    records = [(0, pack_record([float("nan"), float("inf")], b"")), (1, pack_record(0, encode(pattern(1))))]
    write_recordio(src / "train.rec", src / "train.idx", records)
    _refused(tmp_path, "prepare", "rec", src, "--out", tmp_path / "out", needles=("train.rec",))


@pytest.mark.parametrize("content", [b"", b"\x80\x04 not a pickle", pickle.dumps(["only", "one"])],
                         ids=["empty", "junk", "wrong-shape"])
def test_bad_verification_bin(tmp_path, content):
    (tmp_path / "agedb_30.bin").write_bytes(content)
    _refused(tmp_path, "prepare", "agedb", tmp_path / "agedb_30.bin", "--out", tmp_path / "out",
             needles=("agedb_30.bin",))


def test_malicious_pickle_bin_is_not_run(tmp_path):
    (tmp_path / "lfw.bin").write_bytes(pickle.dumps(_Exploit(tmp_path / "pwned")))
    _refused(tmp_path, "prepare", "lfw", tmp_path / "lfw.bin", "--out", tmp_path / "out", needles=("lfw.bin",))
    assert not (tmp_path / "pwned").exists()


def test_svhn_mat_with_text_labels(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    mat = tmp_path / "train_32x32.mat"
    scipy_io.savemat(mat, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array(["one", "two"])})
    _refused(tmp_path, "prepare", "svhn", mat, "--out", tmp_path / "out", needles=("train_32x32.mat",))


def test_svhn_mat_that_is_not_a_mat(tmp_path):
    mat = tmp_path / "train_32x32.mat"
    mat.write_bytes(struct.pack("<4i", 1, 2, 3, 4))
    _refused(tmp_path, "prepare", "svhn", mat, "--out", tmp_path / "out", needles=("train_32x32.mat",))


def test_folder_with_no_usable_image_is_an_error(tmp_path):
    src = tmp_path / "photos"
    (src / "alice").mkdir(parents=True)
    (src / "alice" / "1.jpg").write_bytes(b"not a jpeg")
    (src / "alice" / "2.png").write_bytes(b"")
    before = tree_state(src)
    assert_one_line_error(run_main("prepare", "folder", src, "--out", tmp_path / "out", "--workers", "1"), "usable")
    assert_untouched(before, src)


def test_source_missing(tmp_path):
    _refused(tmp_path, "prepare", "rec", tmp_path / "nothing-here", "--out", tmp_path / "out", needles=("nothing-here",))


def test_recipe_file_key_named_in_yaml_base_chain(tmp_path, tiny_digits):
    base = write_recipe(tmp_path / "base.yaml", tiny_digits, train=TINY_STEPS)
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({"base": str(base), "train": {"momentum": -1}}))
    _refused(tmp_path, "train-teacher", "--recipe", child, "--out", tmp_path / "run", needles=("child.yaml", "momentum"))
