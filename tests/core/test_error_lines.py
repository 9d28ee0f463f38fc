"""The one line a runtime child (evaluate, verify) or the ONNX loader of the static profiler reports for an exception.

They all write it through ``edgecv.errors.exception_line``: a real runtime's message is passed on unchanged,
a message with a location prefix before ``error: `` (TensorFlow/MLIR style) keeps the text after it, and only
the message is cut (the exception's name is always whole). The expected lines here are written out by hand.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

LOCATED = 'loc("model/conv"): error: \'tfl.conv_2d\' op\n  has an invalid   filter ' + "x" * 600
AFTER_MARKER = "'tfl.conv_2d' op has an invalid filter " + "x" * 600


def _evaluate_child(tmp_path, art):
    from edgecv.evaluation import _child

    rc = _child.main(["inspect", str(art), str(tmp_path)])
    return rc, json.loads((tmp_path / "report.json").read_text())["error"]


def _verify_child(tmp_path, art):
    from edgecv.conversion import verify

    rc = verify._child([str(art), "-", str(tmp_path), "1"])
    return rc, json.loads((tmp_path / "report.json").read_text())["error"]


@pytest.mark.parametrize("child", [_evaluate_child, _verify_child])
def test_a_real_runtime_error_is_passed_on_unchanged(tmp_path, child):
    pytest.importorskip("ai_edge_litert")
    art = tmp_path / "garbage.tflite"
    art.write_bytes(np.random.default_rng(0).bytes(4096))
    rc, line = child(tmp_path, art)
    assert rc == 1
    assert line == "ValueError: The model is not a valid Flatbuffer buffer"


@pytest.mark.parametrize("child", [_evaluate_child, _verify_child])
def test_a_located_error_keeps_the_text_after_error_and_cuts_the_message_only(tmp_path, monkeypatch, child):
    from edgecv.conversion import verify
    from edgecv.evaluation import _child

    def located(*_a, **_k):
        raise RuntimeError(LOCATED)

    monkeypatch.setattr(_child, "_open", located)
    monkeypatch.setattr(verify, "_run_tflite", located)
    rc, line = child(tmp_path, tmp_path / "m.tflite")
    assert rc == 1
    assert line == "RuntimeError: " + AFTER_MARKER[:500]


def test_unreadable_onnx_names_the_exception(tmp_path, monkeypatch):
    onnx = pytest.importorskip("onnx")
    from edgecv.profiling import static

    art = tmp_path / "m.onnx"
    art.write_bytes(b"\x0a\xff\xff\xff\xff garbage" * 10)
    with pytest.raises(Exception) as direct:  # the parser's own words (protobuf's text differs across versions)
        onnx.load_model_from_string(art.read_bytes())
    with pytest.raises(static._Fail) as exc:
        static._load_onnx(str(art))
    assert type(direct.value).__name__ == "DecodeError" and "\n" not in str(direct.value)
    assert str(exc.value) == f"not a readable ONNX model: DecodeError: {str(direct.value)[:200]}"

    def located(_data):
        raise RuntimeError(LOCATED)

    monkeypatch.setattr(onnx, "load_model_from_string", located)
    with pytest.raises(static._Fail) as exc:
        static._load_onnx(str(art))
    assert str(exc.value) == "not a readable ONNX model: RuntimeError: " + AFTER_MARKER[:200]


def test_a_dead_childs_reason_is_the_last_line_of_its_traceback():
    """A real child that prints progress, then dies with a traceback: the reason is the exception's line (the
    traceback's last), not the progress or the stack; a child that says nothing gives its exit code."""
    import sys

    from edgecv.errors import EdgecvError
    from edgecv.profiling._child import run_child

    code = ("import sys\nprint('loading model ...', file=sys.stderr)\n"
            "def load():\n    raise RuntimeError('tensor 3 has shape [1, 0]')\nload()\n")
    with pytest.raises(EdgecvError) as err:
        run_child([sys.executable, "-c", code], 60, "m.tflite")
    assert str(err.value) == "m.tflite: RuntimeError: tensor 3 has shape [1, 0]"
    with pytest.raises(EdgecvError) as err:
        run_child([sys.executable, "-c", "raise SystemExit(3)"], 60, "m.tflite")
    assert str(err.value) == "m.tflite: exit code 3"
