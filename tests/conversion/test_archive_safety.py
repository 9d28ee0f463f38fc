"""Untrusted .keras archives: edgecv refuses them in one line and nothing is written outside the output folder.

Two kinds of attack, fed to ``edgecv quantize``, ``edgecv profile`` and the Python API (``load_model``,
``quantize``):

- archive members that an extractor would place outside its folder: ``../name``, ``assets/../../name``, an
  absolute name, a symbolic link. edgecv rejects the archive before Keras (or anyone) extracts it.
- a config.json that asks the loader to run code: a Lambda layer holding a Python lambda (the fixture checks
  that this payload does run when loaded without safe mode), a layer class and an activation function looked
  up as ``os.system``. Keras safe mode refuses them; edgecv turns the refusal into one line.

Each case: exit code 2 (an ``EdgecvError`` from the API) with one line naming the file and what is wrong, no
traceback, no payload run, and no file created anywhere under the test's folder (which holds the working
folder, the output folder's parent and the temporary folder of every process) nor at the absolute target.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path

import pytest

from edgecv.errors import EdgecvError

SYSTEM_TMP = Path(tempfile.gettempdir())  # before any test points tempfile at its own folder

MAKE_MODELS = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras

out, marker = sys.argv[1], sys.argv[2]
x = keras.Input((32, 32, 3))
y = keras.layers.Conv2D(4, 3, name="conv")(x)
y = keras.layers.GlobalAveragePooling2D(name="pool")(y)
y = keras.layers.Dense(10, activation="softmax", name="logits")(y)
keras.Model(x, y, name="tiny").save(os.path.join(out, "base.keras"))

payload = eval(f"lambda t: (__import__('pathlib').Path({marker!r}).touch(), t)[1]")
x = keras.Input((32, 32, 3))
y = keras.layers.Lambda(payload, name="payload")(x)
y = keras.layers.GlobalAveragePooling2D(name="pool")(y)
keras.Model(x, y, name="lambda").save(os.path.join(out, "lambda.keras"))
os.remove(marker)  # building the model ran the payload once
keras.saving.load_model(os.path.join(out, "lambda.keras"), safe_mode=False)
print(json.dumps({"payload_ran": os.path.exists(marker)}))
os.remove(marker)
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A small valid model (base.keras) and one whose Lambda layer touches MARKER when it is deserialized."""
    d = tmp_path_factory.mktemp("models")
    marker = d / "payload-ran"
    res = subprocess.run([sys.executable, "-c", MAKE_MODELS, str(d), str(marker)], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.splitlines()[-1]) == {"payload_ran": True}, "the Lambda payload is not live"
    return d, marker


def _symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, str]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


def _craft(src: Path, dst: Path, extra=(), edit_config=None) -> Path:
    """``src`` with extra members and/or its config.json edited."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "config.json" and edit_config is not None:
                cfg = json.loads(data)
                edit_config(cfg)
                data = json.dumps(cfg).encode()
            zout.writestr(info, data)
        for member in extra:
            zout.writestr(*member)
    return dst


def _last_layer(cfg: dict) -> dict:
    return cfg["config"]["layers"][-1]


def _layer_is_os_system(cfg: dict) -> None:
    _last_layer(cfg).update(module="os", class_name="system", registered_name=None)


def _activation_is_os_system(cfg: dict) -> None:
    _last_layer(cfg)["config"]["activation"] = {"module": "os", "class_name": "function", "config": "system",
                                                "registered_name": "system"}


# case -> the members added to base.keras, given a unique tag and the absolute target (the member's name is what
# the error line must hold)
MEMBER_CASES = {
    "parent": lambda tag, target: (f"../{tag}.txt", "escaped"),
    "nested-parent": lambda tag, target: (f"assets/../../{tag}.txt", "escaped"),
    "absolute": lambda tag, target: (str(target), "escaped"),
    "symlink": lambda tag, target: _symlink(f"assets/{tag}", str(target)),
}
CONFIG_CASES = {
    "lambda": ("Lambda", None),
    "os-system-layer": ("'system'", _layer_is_os_system),
    "os-system-function": ("'system'", _activation_is_os_system),
}
ENTRIES = ("quantize", "profile", "api-load_model", "api-quantize")


def _tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` (symbolic links not followed) with its type and size."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_size if stat.S_ISREG(st.st_mode) else 0)
    return out


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Under tmp_path: "work" is the working folder, "work" / "out" the (empty) output folder, "tmp" the temporary
    folder of this process and its children; the absolute target of the attacks is tmp_path / "target.txt"."""
    for sub in ("in", "work", "work/out", "tmp"):  # quantize creates its output folder before reading MODEL
        (tmp_path / sub).mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path


def _run(entry: str, model: Path, out: Path) -> tuple[int, str]:
    """(exit code, stderr) of the CLI, or (2, the error) of an EdgecvError raised by the API."""
    if entry.startswith("api-"):
        from edgecv.conversion import api

        try:
            if entry == "api-load_model":
                api.load_model(str(model))
            else:
                api.quantize(str(model), "float32", output=out, verify=False)
        except EdgecvError as exc:
            assert type(exc) is EdgecvError
            return exc.exit_code, f"edgecv: error: {exc}\n"
        return 0, ""
    cmd = {"quantize": ["quantize", str(model), "--precision", "float32", "--no-verify", "-q", "-o", str(out)],
           "profile": ["profile", str(model), "--static"]}[entry]
    res = subprocess.run([sys.executable, "-m", "edgecv", *cmd], capture_output=True, text=True, timeout=600)
    return res.returncode, res.stderr


def _check_refused(sandbox: Path, entry: str, model: Path, fragment: str, tag: str | None = None) -> None:
    out, target = sandbox / "work" / "out", sandbox / "target.txt"
    before = _tree(sandbox)
    code, err = _run(entry, model, out)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1 and "Traceback" not in err, err
    assert model.name in lines[0] and fragment in lines[0], lines[0]
    assert _tree(sandbox) == before  # nothing written: not in out, its parent (the working folder), tmp, ...
    assert not target.exists() and not os.path.lexists(target)
    if tag is not None:  # a "../" member extracted from a temporary folder of the system's would land here
        assert not list(SYSTEM_TMP.glob(f"{tag}*")) and not list(SYSTEM_TMP.glob(f"*/{tag}*"))


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("case", MEMBER_CASES)
def test_archive_member_outside_the_folder_is_refused(models, sandbox, case, entry):
    d, _ = models
    tag = f"edgecv-escape-{uuid.uuid4().hex[:8]}"
    member = MEMBER_CASES[case](tag, sandbox / "target.txt")
    model = _craft(d / "base.keras", sandbox / "in" / f"{case}.keras", extra=[member])
    name = member[0].filename if isinstance(member[0], zipfile.ZipInfo) else member[0]
    _check_refused(sandbox, entry, model, name, tag)


@pytest.mark.slow  # each case starts TensorFlow in a child process (the isolated loader or the converter)
@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("case", CONFIG_CASES)
def test_config_that_runs_code_is_refused_by_safe_mode(models, sandbox, case, entry):
    d, marker = models
    fragment, edit = CONFIG_CASES[case]
    src = d / ("lambda.keras" if case == "lambda" else "base.keras")
    model = _craft(src, sandbox / "in" / f"{case}.keras", edit_config=edit)
    _check_refused(sandbox, entry, model, fragment)
    assert not marker.exists(), "the Lambda payload ran"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["../../escape-by-name", "..\\..\\escape-by-name", ".."])
def test_model_name_from_the_archive_stays_in_the_output_folder(models, sandbox, name):
    """The artifact's file name comes from the model's name in config.json: Keras refuses a name with a "/"
    (one line), edgecv replaces other unsafe characters; either way nothing lands outside the output folder."""
    d, _ = models

    def rename(cfg: dict) -> None:
        cfg["config"]["name"] = name

    model = _craft(d / "base.keras", sandbox / "in" / "named.keras", edit_config=rename)
    out = sandbox / "work" / "out"
    before = _tree(sandbox)
    code, err = _run("quantize", model, out)
    assert code in (0, 2), err
    if code == 2:  # refused by Keras (the file named) or by TensorFlow when tracing (the name quoted)
        # (the model has no known preprocessing: quantize warns about that first, then fails in one line)
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning:")]
        assert len(lines) == 1 and ("named.keras" in lines[0] or "escape-by-name" in lines[0]), err
        assert "Traceback" not in err
    new = set(_tree(sandbox)) - set(before)
    assert all(p == "work/out" or p.startswith("work/out/") for p in new), sorted(new)


# --- zip bombs: bounded by the sizes the central directory declares, before anything is decompressed ---------

BOMB_BYTES = 64 * 2**20


def _deflate_bomb(src: Path, dst: Path) -> Path:
    """``src`` plus a 64 MiB member of zeros deflated to ~64 KB (ratio ~1000)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr(zipfile.ZipInfo("assets/zeros.bin"), bytes(BOMB_BYTES), compress_type=zipfile.ZIP_DEFLATED)
    return dst


def _declared_huge(src: Path, dst: Path) -> Path:
    """``src`` plus a small stored member whose central-directory entry declares 4,294,967,280 bytes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr(zipfile.ZipInfo("assets/huge.bin"), b"x" * 1000)
    data = bytearray(dst.read_bytes())
    name = b"assets/huge.bin"
    cd = data.rfind(b"PK\x01\x02", 0, data.rfind(name))  # the member's central directory header
    assert data[cd + 46:cd + 46 + len(name)] == name
    data[cd + 24:cd + 28] = (2**32 - 16).to_bytes(4, "little")  # uncompressed size
    dst.write_bytes(bytes(data))
    return dst


BOMB_CASES = {
    "deflate-bomb": (_deflate_bomb, "EDGECV_MAX_ZIP_RATIO"),
    "declared-huge": (_declared_huge, "EDGECV_MAX_ARCHIVE_BYTES"),
}


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("case", BOMB_CASES)
def test_zip_bomb_is_refused_before_decompression(models, sandbox, case, entry):
    d, _ = models
    make, fragment = BOMB_CASES[case]
    model = make(d / "base.keras", sandbox / "in" / f"{case}.keras")
    assert zipfile.ZipFile(model).getinfo(f"assets/{'zeros' if case == 'deflate-bomb' else 'huge'}.bin").file_size \
        >= BOMB_BYTES
    _check_refused(sandbox, entry, model, fragment)


def test_zip_bomb_check_is_cheap_and_its_limit_can_be_raised(models, sandbox, monkeypatch):
    import time

    from edgecv.conversion.loading import check_keras_file

    d, _ = models
    model = _deflate_bomb(d / "base.keras", sandbox / "in" / "bomb.keras")
    t0 = time.process_time()
    with pytest.raises(EdgecvError, match=r"expands [\d,]+x .* limit of 100x"):
        check_keras_file(model)
    assert time.process_time() - t0 < 0.05  # nothing was decompressed (decompressing takes ~0.2 s of CPU)
    monkeypatch.setenv("EDGECV_MAX_ZIP_RATIO", "100000")
    check_keras_file(model)  # passes the bound, then the full checksum test
    check_keras_file(d / "base.keras")  # a model Keras saved passes under the defaults
    monkeypatch.setenv("EDGECV_MAX_ZIP_RATIO", "lots")
    with pytest.raises(EdgecvError, match="EDGECV_MAX_ZIP_RATIO: expected an integer"):
        check_keras_file(model)


def test_damaged_archive_members_are_one_line(models, tmp_path):
    """Found by fuzzing: a member with an unknown compression method (zipfile raises NotImplementedError) or a
    broken deflate stream (zlib.error) is refused in one line, not an internal error."""
    d, _ = models
    src = tmp_path / "deflated.keras"
    with zipfile.ZipFile(d / "base.keras") as zin, zipfile.ZipFile(src, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr(zipfile.ZipInfo("assets/zeros.bin"), bytes(2**19), compress_type=zipfile.ZIP_DEFLATED)
    data = src.read_bytes()
    name = b"assets/zeros.bin"
    method = bytearray(data)
    for sig, off, at in ((b"PK\x03\x04", 8, data.find(name)), (b"PK\x01\x02", 10, data.rfind(name))):
        i = data.rfind(sig, 0, at)  # the member's local and central headers: compression method 99
        method[i + off:i + off + 2] = (99).to_bytes(2, "little")
    (tmp_path / "method.keras").write_bytes(bytes(method))
    broken = bytearray(data)
    start = data.find(name) + len(name)
    broken[start + 30:start + 130] = bytes(range(100))  # inside the deflate stream
    (tmp_path / "broken.keras").write_bytes(bytes(broken))
    from edgecv.conversion.loading import check_keras_file

    check_keras_file(src)  # the undamaged archive passes
    for bad in ("method.keras", "broken.keras"):
        with pytest.raises(EdgecvError) as exc:
            check_keras_file(tmp_path / bad)
        msg = str(exc.value)
        assert bad in msg and "\n" not in msg and "limit" not in msg, msg
