"""Static analysis of a deployed graph (.tflite or .onnx): per-op MACs, parameters, bytes, and the
peak activation memory by liveness. Never imports TensorFlow.

Counting conventions (the MobileNet/EfficientNet papers', and ``edgecv.builders.cost``'s):

- MACs: convolution ``k*k*cin/groups*cout*Hout*Wout``, depthwise ``k*k*cin*mult*Hout*Wout``, fully connected
  ``in*out`` (per output row); transposed convolution ``k*k*cin*cout*Hin*Win``; batched matmul ``out*K``.
  Element-wise ops, pooling, activations and data movement count 0 MACs.
- Parameters (the deployed count, one rule for every format): the elements of the constant weight tensor of
  each convolution and fully connected op plus one bias per output channel. The runtime's kernels always add
  a bias vector (a BatchNormalization or constant per-channel add folds into it; a converter may drop an
  all-zero bias, as tf2onnx does, or keep it, as the TFLite converter does, and LiteRT/XNNPACK then add
  zeros), so the count does not depend on what the converter wrote, nor on quantization scales and zero
  points, shape tensors or other ops' constants (normalization vectors, clip bounds): those are not
  parameters; their bytes are in ``weight_bytes``.
- Weight bytes: stored bytes of every constant tensor, attributed to its first consumer (a float16 weight
  behind a DEQUANTIZE counts its float16 bytes at the convolution that uses it).
- Activation bytes: bytes of an op's non-constant outputs. Peak activation memory: the largest sum of live
  tensors over the execution order, a tensor living from its producer (the graph input from the start) to
  its last consumer (graph outputs to the end); no in-place reuse, which is what a tensor arena must hold
  at least.

Parsing an untrusted file happens in a child process (``analyze``); ``analyze_in_process`` does the work.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field

from edgecv.errors import exception_line, one_line
from edgecv.records import OpStat, jsonable

# ---- op classification tables ----------------------------------------------------------------

TFLITE_ELEMENTWISE = {
    "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "POW", "FLOOR_DIV", "FLOOR_MOD",
    "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LEAKY_RELU", "PRELU", "LOGISTIC", "TANH", "HARD_SWISH",
    "ELU", "GELU", "EXP", "LOG", "SQRT", "RSQRT", "SQUARE", "ABS", "NEG", "SIN", "COS", "QUANTIZE", "DEQUANTIZE",
    "CAST", "FLOOR", "CEIL", "ROUND", "SIGN", "ADD_N",
}
TFLITE_POOL = {"AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D", "MEAN", "REDUCE_MAX", "REDUCE_MIN", "SUM"}

ONNX_QDQ = {"QuantizeLinear", "DequantizeLinear"}
ONNX_ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Mod", "Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid",
    "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Gelu", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Abs",
    "Neg", "Sin", "Cos", "QuantizeLinear", "DequantizeLinear", "Cast", "Floor", "Ceil", "Round", "Sign",
    "BatchNormalization", "Sum", "Mean", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu",
    "Softplus", "Mish", "Swish",
}
ONNX_POOL = {"AveragePool", "MaxPool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "ReduceMin",
             "ReduceSum", "LpPool", "QLinearAveragePool", "QLinearGlobalAveragePool"}
# ops that move, reshape, select or normalize data: 0 MACs by the convention above, and known
TFLITE_ZERO = {
    "RESHAPE", "CONCATENATION", "PAD", "PADV2", "MIRROR_PAD", "TRANSPOSE", "SOFTMAX", "LOG_SOFTMAX", "SLICE",
    "STRIDED_SLICE", "SQUEEZE", "EXPAND_DIMS", "GATHER", "GATHER_ND", "SHAPE", "PACK", "UNPACK", "SPLIT",
    "SPLIT_V", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "BROADCAST_TO",
    "BROADCAST_ARGS", "TILE", "ARG_MAX", "ARG_MIN", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL", "EQUAL",
    "NOT_EQUAL", "SELECT", "SELECT_V2", "FILL", "ZEROS_LIKE", "ONES_LIKE", "L2_NORMALIZATION",
    "LOCAL_RESPONSE_NORMALIZATION", "REDUCE_PROD", "REDUCE_ANY", "REDUCE_ALL", "CUMSUM", "TOPK_V2",
    "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "RANGE", "WHERE", "LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT",
    "REVERSE_V2", "SCATTER_ND", "SEGMENT_SUM", "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5",
    "EMBEDDING_LOOKUP", "SQUARE", "ASSIGN_VARIABLE", "READ_VARIABLE", "VAR_HANDLE",
}
ONNX_ZERO = {
    "Reshape", "Flatten", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND",
    "ScatterND", "ScatterElements", "Shape", "Size", "Squeeze", "Unsqueeze", "Pad", "Resize", "Upsample",
    "Identity", "Expand", "Tile", "Softmax", "LogSoftmax", "Hardmax", "ConstantOfShape", "Range", "Where",
    "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Not", "Xor", "ArgMax", "ArgMin",
    "TopK", "NonZero", "NonMaxSuppression", "DepthToSpace", "SpaceToDepth", "Dropout", "LRN",
    "InstanceNormalization", "LayerNormalization", "GroupNormalization", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "CumSum", "OneHot", "Trilu", "CastLike", "IsNaN",
    "IsInf", "Shrink", "ThresholdedRelu", "Softsign", "Celu", "Sinh", "Cosh", "Tan", "Asin", "Acos", "Atan",
    "BitShift", "DynamicQuantizeLinear", "QLinearConcat", "QLinearSoftmax", "QLinearReduceMean", "QLinearWhere",
    "NhwcMaxPool", "QuickGelu", "BiasGelu", "FastGelu", "MaxRoiPool", "RoiAlign", "Compress", "ReverseSequence",
    "EyeLike", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
    "Bernoulli", "StringNormalizer", "Optional", "OptionalHasElement", "OptionalGetElement",
    "SequenceConstruct", "SequenceAt", "SequenceInsert", "SequenceLength", "SplitToSequence",
    "ConcatFromSequence", "MaxUnpool", "Col2Im", "CenterCropPad", "BlackmanWindow", "HannWindow",
}
# ops that run subgraphs (ONNX: counted by their bodies; TFLite: not counted, the result is a lower bound)
ONNX_CONTROL = {"Loop", "If", "Scan"}
TFLITE_CONTROL = {"WHILE", "IF", "CALL_ONCE"}
_MAC_OPS = {"conv", "pointwise", "depthwise", "fc"}

# ---- a small format-neutral graph ------------------------------------------------------------

@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    const: bool = False
    stored_bytes: int = 0  # bytes stored in the file (const roots; const-derived: their roots' bytes)
    stored_dtype: str = ""

    @property
    def elems(self) -> int:
        return math.prod(self.shape) if self.shape is not None else 0

    @property
    def nbytes(self) -> int:
        return self.elems * _itemsize(self.dtype)


@dataclass
class Node:
    type: str
    inputs: list[int]  # tensor ids (-1: absent optional input)
    outputs: list[int]
    op_class: str = "other"
    macs: int = 0
    weight_inputs: tuple[int, ...] = ()  # positions in ``inputs`` of weights and bias
    bias_pos: int | None = None  # position of the bias input, if the op type has one
    cout: int = 0
    act_pos: int = 0  # position of the activation input
    attrs: dict = field(default_factory=dict)
    folded: bool = False
    delegated: bool | None = None  # TFLite: taken by the XNNPACK delegate of the installed LiteRT
    known: bool = True  # False: an op type this analysis does not know (listed, never counted as 0 MACs)
    extra_params: int = 0  # parameters and stored bytes of a subgraph's own weights (Loop/If/Scan bodies)
    extra_wbytes: int = 0
    dtype: str = ""  # compute dtype of a subgraph's MAC-bearing ops


@dataclass
class Notes:
    """What the totals do not cover: unknown op types and control flow counted approximately."""

    unknown: dict = field(default_factory=dict)  # op type -> count
    lines: list = field(default_factory=list)  # one line each
    lower_bound: bool = False


@dataclass
class Graph:
    format: str
    tensors: list[Tensor]
    nodes: list[Node]
    inputs: list[int]
    outputs: list[int]
    notes: Notes = field(default_factory=Notes)
    partitions: int | None = None  # TFLite: the XNNPACK delegate's partitions (None: not asked)


@dataclass(frozen=True)
class StaticAnalysis:
    """The result of ``analyze``: per-op stats in execution order, and totals."""

    path: str
    format: str  # tflite | onnx
    precision: str  # float32 | float16 | int8 | int16x8 | dynamic | mixed
    ops: tuple[OpStat, ...]
    macs: int
    params: int
    weights_bytes: int
    file_bytes: int
    peak_activation_bytes: int
    peak_op_index: int  # index of the op at which the peak occurs (-1: before the first op)
    inputs: tuple[dict, ...] = ()  # name, shape, dtype
    outputs: tuple[dict, ...] = ()
    # op types the analysis does not know, with their count: their MACs and parameters are not in the totals
    unknown_ops: dict[str, int] = field(default_factory=dict)
    # True when ``macs`` is only a lower bound (unknown ops, a loop whose trip count is known at run time only)
    macs_lower_bound: bool = False
    notes: tuple[str, ...] = ()  # one line per approximation (control flow, unknown ops)
    # TFLite: the number of subgraphs the installed LiteRT's XNNPACK delegate takes (each op says whether it
    # is one of them in ``OpStat.delegated``); None for ONNX or when the delegate could not be applied
    delegate_partitions: int | None = None

    def __post_init__(self) -> None:
        for name in ("ops", "inputs", "outputs", "notes"):  # sequences given as lists become tuples
            if not isinstance(getattr(self, name), tuple):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def to_dict(self) -> dict:
        d = jsonable(self)
        d["ops"] = [op.to_dict() for op in self.ops]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StaticAnalysis":
        """The inverse of ``to_dict`` (the child process's JSON; unknown keys ignored)."""
        kw = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        kw["ops"] = tuple(OpStat.from_dict(o) for o in d["ops"])
        return cls(**kw)


_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "uint8": 1, "int16": 2,
             "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "bool": 1, "int4": 1, "complex64": 8}


def _itemsize(dtype: str) -> int:
    return _ITEMSIZE.get(dtype, 4)


def _dtype_name(dt) -> str:
    import numpy as np

    try:
        return np.dtype(dt).name
    except TypeError:
        return str(dt)


# ---- TFLite -----------------------------------------------------------------------------------

def _load_tflite(path: str) -> Graph:
    import numpy as np

    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kw = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    except ImportError:  # tflite_runtime on 32-bit Arm
        try:
            from tflite_runtime.interpreter import Interpreter, OpResolverType

            kw = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        except ImportError:
            raise _Fail("no TFLite runtime: install ai-edge-litert") from None
    try:
        with open(path, "rb") as fh:  # bytes, not model_path: LiteRT refuses a path that is not UTF-8
            content = fh.read()
        interp = Interpreter(model_content=content, **kw)
        in_file = {d["index"] for d in interp.get_tensor_details()}  # before Prepare adds kernel temporaries
        ops = _prepare(interp)
        details = [d for d in interp.get_tensor_details() if d["index"] in in_file]
        graph_in = [d["index"] for d in interp.get_input_details()]
        graph_out = [d["index"] for d in interp.get_output_details()]
    except (ValueError, RuntimeError) as exc:
        raise _Fail(f"not a readable TFLite model: {one_line(exc)[:300]}") from None
    ntensors = max([d["index"] for d in details] + [-1]) + 1
    tensors = [Tensor(name=f"t{i}", shape=(), dtype="float32") for i in range(ntensors)]
    for d in details:
        dt = _dtype_name(d["dtype"])
        tensors[d["index"]] = Tensor(name=d["name"], shape=tuple(int(s) for s in d["shape"]), dtype=dt)
    nodes = []
    for op in ops:
        name = str(op["op_name"])
        if name == "DELEGATE":
            continue
        nodes.append(Node(type=name, inputs=[int(i) for i in np.asarray(op["inputs"]).ravel()],
                          outputs=[int(i) for i in np.asarray(op["outputs"]).ravel()]))
    produced = {o for n in nodes for o in n.outputs}
    for i, t in enumerate(tensors):  # not produced and not fed: a constant (or variable) from the file
        if i not in produced and i not in graph_in:
            t.const = True
            t.stored_bytes = t.nbytes
            t.stored_dtype = t.dtype
    split = _xnnpack_split(content, len(ops))
    if split is not None:
        taken, partitions = split
        k = 0
        for op in ops:
            if str(op["op_name"]) == "DELEGATE":
                continue
            nodes[k].delegated = int(op["index"]) in taken
            k += 1
    notes = Notes()
    for n in nodes:
        _classify_tflite(n, tensors)
        if not n.known:
            notes.unknown[n.type] = notes.unknown.get(n.type, 0) + 1
        if n.type in TFLITE_CONTROL:
            notes.lower_bound = True
    if notes.lower_bound:
        kinds = sorted({n.type for n in nodes if n.type in TFLITE_CONTROL})
        notes.lines.append(f"lower bound: the subgraphs of {', '.join(kinds)} are not counted")
    return Graph("tflite", tensors, nodes, graph_in, graph_out, notes,
                 partitions=split[1] if split is not None else None)


def _prepare(interp) -> list[dict]:
    """Allocate ``interp`` (a dynamic dimension, -1 in the shape signature, set to 1) and list its ops."""
    for d in interp.get_input_details():
        sig = d.get("shape_signature", d["shape"])
        if any(int(s) < 0 for s in sig):
            interp.resize_tensor_input(d["index"], [max(int(s), 1) for s in sig])
    interp.allocate_tensors()
    return interp._get_ops_details()


def _xnnpack_split(content: bytes, n_nodes: int) -> tuple[set[int], int] | None:
    """Ask the installed LiteRT which nodes its XNNPACK delegate takes: load the model with the default
    delegates, and for each DELEGATE node collect the original nodes between its inputs and outputs (walking
    back from its outputs, stopping at its inputs). Returns (indices of delegated nodes, partitions), or None
    if the delegate cannot be applied here."""
    import numpy as np

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            return None
    try:
        ops = _prepare(Interpreter(model_content=content, num_threads=1))
    except (ValueError, RuntimeError):
        return None
    ins = {int(op["index"]): [int(i) for i in np.asarray(op["inputs"]).ravel()] for op in ops}
    producer = {}
    for op in ops:
        if str(op["op_name"]) != "DELEGATE":
            for o in np.asarray(op["outputs"]).ravel():
                producer.setdefault(int(o), int(op["index"]))
    taken: set[int] = set()
    partitions = 0
    for op in ops:
        if str(op["op_name"]) != "DELEGATE":
            continue
        partitions += 1
        stop = set(ins[int(op["index"])])
        stack = [int(o) for o in np.asarray(op["outputs"]).ravel()]
        while stack:
            p = producer.get(stack.pop())
            if p is None or p in taken:
                continue
            taken.add(p)
            stack.extend(i for i in ins[p] if i >= 0 and i not in stop)
    return taken, partitions


def _classify_tflite(n: Node, T: list[Tensor]) -> None:
    def shape(pos):
        return T[n.inputs[pos]].shape if len(n.inputs) > pos and n.inputs[pos] >= 0 else ()

    out = T[n.outputs[0]].shape if n.outputs else ()
    t = n.type
    if t in ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D", "FULLY_CONNECTED"):
        w = shape(1)
        rows = math.prod(out[:-1]) if out else 0
        n.macs = math.prod(w) * rows if w else 0
        n.weight_inputs, n.bias_pos = (1, 2), 2
        if t == "DEPTHWISE_CONV_2D":
            n.op_class, n.cout = "depthwise", w[-1] if w else 0
        elif t == "FULLY_CONNECTED":
            n.op_class, n.cout = "fc", w[0] if w else 0
        elif t == "CONV_3D":
            n.op_class, n.cout = "conv", w[-1] if w else 0
        else:
            n.cout = w[0] if w else 0
            n.op_class = "pointwise" if len(w) == 4 and w[1] == 1 and w[2] == 1 else "conv"
    elif t == "TRANSPOSE_CONV":
        w, x = shape(1), shape(2)
        n.macs = math.prod(w) * math.prod(x[:-1]) if w and x else 0
        n.op_class, n.cout, n.act_pos = "conv", (w[0] if w else 0), 2
        n.weight_inputs, n.bias_pos = (1, 3), 3
    elif t == "BATCH_MATMUL":
        x = shape(0)
        n.macs = math.prod(out) * (x[-1] if x else 0)
        n.op_class, n.weight_inputs, n.cout = "fc", (1,), (out[-1] if out else 0)
    elif t in TFLITE_ELEMENTWISE:
        n.op_class = "elementwise"
    elif t in TFLITE_POOL:
        n.op_class = "pool"
    elif t not in TFLITE_ZERO and t not in TFLITE_CONTROL:
        n.known = False


# ---- ONNX -------------------------------------------------------------------------------------

def _load_onnx(path: str) -> Graph:
    import onnx

    try:
        with open(path, "rb") as fh:
            model = onnx.load_model_from_string(fh.read())
    except Exception as exc:  # protobuf DecodeError and friends
        raise _Fail(f"not a readable ONNX model: {exception_line(exc, 200)}") from None
    if not model.graph.node:
        raise _Fail("not a readable ONNX model: the graph has no nodes")
    _pin_batch(model)
    model = _infer_types(model)
    if _fold_shape_computations(model):
        model = _infer_types(model)
    opset = {o.domain or "": o.version for o in model.opset_import}
    return _onnx_graph(model.graph, opset, {})


# Ops that compute shapes from shapes: evaluated when all their inputs are known small integer tensors.
_SHAPE_OPS = {"Gather", "Concat", "ReduceProd", "Cast", "Unsqueeze", "Squeeze", "Slice", "Mul", "Add", "Sub",
              "Div", "Identity", "Reshape", "Range", "Max", "Min", "Expand", "Floor", "Ceil", "Equal", "Where",
              "Neg", "Abs", "Size", "ConstantOfShape"}
_SHAPE_ELEMS = 64  # a shape tensor is small


def _fold_shape_computations(model) -> bool:
    """Shape tensors computed at run time (``Shape -> Gather -> ReduceProd -> Concat -> Reshape``, e.g. TensorFlow's
    Tensordot for a Dense on an (N, H, W, C) tensor, which ONNX's data propagation leaves symbolic) are evaluated
    with ONNX's reference implementation once the input shapes are known, and the Reshapes that consume them are
    given the constant. Returns whether a Reshape changed."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    dims = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            d = vi.type.tensor_type.shape.dim
            if all(x.HasField("dim_value") for x in d):
                dims[vi.name] = [x.dim_value for x in d]
    known = {i.name: numpy_helper.to_array(i) for i in g.initializer if math.prod(i.dims) <= _SHAPE_ELEMS}
    for nd in g.node:
        if nd.op_type == "Constant" and nd.output and nd.attribute and nd.attribute[0].name == "value" \
                and math.prod(nd.attribute[0].t.dims) <= _SHAPE_ELEMS:
            known[nd.output[0]] = numpy_helper.to_array(nd.attribute[0].t)
    changed = False
    stored = {i.name for i in g.initializer}
    for nd in g.node:
        if not nd.output or nd.domain not in ("", "ai.onnx"):
            continue
        if nd.op_type == "Shape" and nd.input[0] in dims:
            attrs = {a.name: a.i for a in nd.attribute}
            shp = dims[nd.input[0]]
            known[nd.output[0]] = np.array(shp[attrs.get("start", 0):attrs.get("end", len(shp))], np.int64)
            continue
        ins = [i for i in nd.input if i]
        if nd.op_type == "Reshape" and len(nd.input) > 1 and nd.input[1] in known and nd.input[1] not in stored:
            name = nd.input[1] + "__edgecv_folded"
            if name not in stored:
                g.initializer.append(numpy_helper.from_array(known[nd.input[1]].astype(np.int64), name))
                stored.add(name)
            nd.input[1] = name
            changed = True
        if nd.op_type not in _SHAPE_OPS or not ins or not all(i in known for i in ins):
            continue
        try:
            inputs = [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(known[i].dtype), known[i].shape)
                      for i in ins]
            outs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in nd.output]
            one = helper.make_model(helper.make_graph([nd], "shape", inputs, outs), opset_imports=model.opset_import)
            vals = ReferenceEvaluator(one).run(None, {i: known[i] for i in ins})
        except Exception:  # not evaluable here: the shapes downstream stay as inference left them
            continue
        for o, v in zip(nd.output, vals):
            if o and isinstance(v, np.ndarray) and v.size <= _SHAPE_ELEMS:
                known[o] = v
    return changed


def _pin_batch(model) -> None:
    """The analysis is per sample: a symbolic (or unknown) first dimension of a graph input is set to 1, so a
    shape computed from it at run time (``Shape -> Gather -> Concat -> Reshape``, e.g. Keras' Tensordot of a
    Dense on an (N, H, W, C) tensor) resolves to per-sample sizes instead of an unknown dimension."""
    inits = {i.name for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1


def _has_shape(tp) -> bool:
    return tp is not None and tp.HasField("tensor_type") and tp.tensor_type.elem_type != 0 \
        and tp.tensor_type.HasField("shape")


def _infer_types(model):
    """Shapes and types of every tensor: ONNX's shape inference (with data propagation), then a walk in graph
    order that infers each node it left out from its inputs, with ONNX's per-node inference for standard ops and
    the rules of ONNX Runtime's contrib ops (``_contrib_types``); repeated while a round finds new shapes (the
    standard ops downstream of a contrib op). Needs no runtime and no sympy."""
    from onnx import helper, shape_inference

    def infer(m):
        try:
            return shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
        except Exception:
            return m  # shapes from value_info and the walk only

    model = infer(model)
    g = model.graph
    data = {i.name: i for i in g.initializer if math.prod(i.dims) <= 4096}
    for nd in g.node:
        if nd.op_type == "Constant" and nd.output and nd.attribute and nd.attribute[0].name == "value":
            data[nd.output[0]] = nd.attribute[0].t
    for _ in range(8):
        types = {vi.name: vi.type for vi in list(g.input) + list(g.value_info) + list(g.output)
                 if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type}
        for i in g.initializer:
            types[i.name] = helper.make_tensor_type_proto(i.data_type, list(i.dims))
        for name, t in data.items():
            types.setdefault(name, helper.make_tensor_type_proto(t.data_type, list(t.dims)))
        new = {}
        for nd in g.node:
            outs = [o for o in nd.output if o]
            if not outs or all(_has_shape(types.get(o)) for o in outs) or nd.op_type in ONNX_CONTROL:
                continue
            if any(i and not _has_shape(types.get(i)) for i in nd.input):
                continue
            try:
                res = _node_types(nd, types, data, model.opset_import)
            except Exception:  # inference refused the node: its outputs stay unknown
                continue
            for o, tp in res.items():
                if o and _has_shape(tp):
                    types[o] = new[o] = tp
        if not new:
            break
        keep = [vi for vi in g.value_info if vi.name not in new]
        del g.value_info[:]
        g.value_info.extend(keep + [helper.make_value_info(k, v) for k, v in new.items()])
        model = infer(model)
        g = model.graph
    return model


def _node_types(nd, types: dict, data: dict, opset_imports) -> dict:
    """Output types of one node from its inputs' types: ONNX's inference for standard ops, contrib rules else."""
    import onnx
    from onnx import shape_inference

    if nd.domain in ("", "ai.onnx"):
        version = next((o.version for o in opset_imports if o.domain in ("", "ai.onnx")), onnx.defs.onnx_opset_version())
        schema = onnx.defs.get_schema(nd.op_type, version, "")
        return shape_inference.infer_node_outputs(
            schema, nd, {i: types[i] for i in nd.input if i}, {i: data[i] for i in nd.input if i in data},
            opset_imports=list(opset_imports))
    return _contrib_types(nd, types, data, opset_imports)


# com.microsoft ops shaped as a standard op over some of their inputs: (standard op, input positions)
_CONTRIB_AS = {
    "QLinearAveragePool": ("AveragePool", (0,)), "FusedConv": ("Conv", (0, 1, 2)), "FusedGemm": ("Gemm", (0, 1, 2)),
    "FusedMatMul": ("MatMul", (0, 1)), "MatMulIntegerToFloat": ("MatMul", (0, 1)),
    "DynamicQuantizeMatMul": ("MatMul", (0, 1)), "NhwcMaxPool": (None, (0,)),
    "QLinearConvTranspose": ("ConvTranspose", (0, 3)), "ConvTransposeWithDynamicPads": ("ConvTranspose", (0, 1)),
}
# com.microsoft element-wise ops: output shaped as input 0, typed as the input at this position
_CONTRIB_SAME = {"QLinearSigmoid": 4, "QLinearLeakyRelu": 4, "QLinearSoftmax": 4, "QuickGelu": 0, "Gelu": 0,
                 "FastGelu": 0, "BiasGelu": 0, "QLinearReduceMean": None}


def _contrib_types(nd, types: dict, data: dict, opset_imports) -> dict:
    import numpy as np
    from onnx import TensorProto, helper

    ins = list(nd.input)
    attrs = {a.name: helper.get_attribute_value(a) for a in nd.attribute}

    def tt(i):
        return types[ins[i]].tensor_type if len(ins) > i and ins[i] and ins[i] in types else None

    def shp(i):
        t = tt(i)
        return [d.dim_value if d.HasField("dim_value") else 1 for d in t.shape.dim] if t is not None else None

    def et(i, default=TensorProto.FLOAT):
        t = tt(i)
        return t.elem_type if t is not None else default

    def out(elem, shape):
        return {nd.output[0]: helper.make_tensor_type_proto(elem, list(shape))}

    t = nd.op_type
    if t in ("QLinearAdd", "QLinearMul"):  # A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp
        return out(et(7, et(0)), np.broadcast_shapes(tuple(shp(0)), tuple(shp(3))))
    if t in _CONTRIB_SAME and _CONTRIB_SAME[t] is not None:
        return out(et(_CONTRIB_SAME[t], et(0)), shp(0))
    if t == "QLinearGlobalAveragePool":  # X, x_scale, x_zp, y_scale, y_zp
        x = shp(0)
        if attrs.get("channels_last"):
            return out(et(4, et(0)), [x[0]] + [1] * (len(x) - 2) + [x[-1]])
        return out(et(4, et(0)), x[:2] + [1] * (len(x) - 2))
    if t == "QLinearConcat":  # Y_scale, Y_zp, then (X, X_scale, X_zp) per input
        parts = [shp(k) for k in range(2, len(ins), 3)]
        axis = int(attrs.get("axis", 1)) % len(parts[0])
        shape = list(parts[0])
        shape[axis] = sum(p[axis] for p in parts)
        return out(et(1, et(2)), shape)
    if t == "QGemm":  # A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp
        a, b = shp(0), shp(3)
        m = a[1] if attrs.get("transA") else a[0]
        n = b[0] if attrs.get("transB") else b[1]
        return out(et(8) if len(ins) > 8 and ins[8] else TensorProto.FLOAT, [m, n])
    if t in _CONTRIB_AS:
        std, pos = _CONTRIB_AS[t]
        if std is None:
            raise ValueError(t)
        sub = helper.make_node(std, [ins[p] if len(ins) > p else "" for p in pos], [nd.output[0]],
                               **{k: v for k, v in attrs.items() if k not in ("activation", "activation_params",
                                                                                "channels_last")})
        res = _node_types(sub, types, data, opset_imports)
        elem = et(7, et(0)) if t.startswith("QLinear") else TensorProto.FLOAT
        return {k: helper.make_tensor_type_proto(elem, [d.dim_value for d in v.tensor_type.shape.dim])
                for k, v in res.items()}
    raise ValueError(f"no shape rule for {nd.domain}.{t}")


def _onnx_graph(g, opset: dict, outer: dict, depth: int = 0) -> Graph:
    """A Graph from an ONNX GraphProto; ``outer`` maps names visible from an enclosing graph to their Tensor."""
    import numpy as np
    from onnx import helper, numpy_helper

    ids: dict[str, int] = {}
    tensors: list[Tensor] = []
    notes = Notes()
    values: dict[str, object] = {}

    def tid(name: str) -> int:
        if name not in ids:
            ids[name] = len(tensors)
            if name in outer:  # an outer-scope value: a copy (constness and shape), not the outer's storage
                o = outer[name]
                tensors.append(Tensor(name=name, shape=o.shape, dtype=o.dtype, const=o.const))
            else:
                tensors.append(Tensor(name=name, shape=None, dtype="float32"))  # type: ignore[arg-type]
        return ids[name]

    def set_type(vi) -> None:
        tt = vi.type.tensor_type
        t = tensors[tid(vi.name)]
        if tt.elem_type:
            t.dtype = _dtype_name(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        if tt.HasField("shape"):
            t.shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in tt.shape.dim)

    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.HasField("tensor_type"):
            set_type(vi)
    for init in g.initializer:
        t = tensors[tid(init.name)]
        t.shape = tuple(int(d) for d in init.dims)
        t.dtype = _dtype_name(helper.tensor_dtype_to_np_dtype(init.data_type))
        t.const, t.stored_bytes, t.stored_dtype = True, t.nbytes, t.dtype
        if t.elems <= 16:
            try:
                values[init.name] = numpy_helper.to_array(init)
            except Exception:
                pass
    init_names = {i.name for i in g.initializer}
    graph_in = [tid(i.name) for i in g.input if i.name not in init_names and i.name not in outer]
    graph_out = [tid(o.name) for o in g.output]
    nodes = []
    for nd in g.node:
        n = Node(type=nd.op_type, inputs=[tid(i) if i else -1 for i in nd.input],
                 outputs=[tid(o) for o in nd.output if o])
        n.attrs = {a.name: helper.get_attribute_value(a) for a in nd.attribute}
        if nd.op_type == "Constant":
            val = n.attrs.get("value")
            for o in n.outputs:
                t = tensors[o]
                t.const = True
                if val is not None and hasattr(val, "dims"):
                    t.shape = tuple(int(d) for d in val.dims)
                    t.dtype = _dtype_name(helper.tensor_dtype_to_np_dtype(val.data_type))
                    if t.elems <= 16:
                        try:
                            values[nd.output[0]] = numpy_helper.to_array(val)
                        except Exception:
                            pass
                elif t.shape is None:
                    t.shape = ()
                t.stored_bytes, t.stored_dtype = t.nbytes, t.dtype
            continue
        if nd.op_type in ONNX_CONTROL and depth < 8:
            _count_subgraphs(n, nd, tensors, ids, values, opset, outer, depth, notes)
        nodes.append(n)
    for n in nodes:  # element-wise ops shape inference did not cover: the largest input's shape
        _classify_onnx(n, tensors)
        if n.op_class == "elementwise":
            known = [tensors[i].shape for i in n.inputs if i >= 0 and tensors[i].shape is not None]
            for o in n.outputs:
                if tensors[o].shape is None and known:
                    tensors[o].shape = max(known, key=math.prod)
    for t in tensors:
        if t.shape is None:
            t.shape = ()  # unknown: counted as one element
    for n in nodes:
        if n.type not in ONNX_CONTROL:
            _classify_onnx(n, tensors)
        if not n.known:
            notes.unknown[n.type] = notes.unknown.get(n.type, 0) + 1
    return Graph("onnx", tensors, nodes, graph_in, graph_out, notes)


def _count_subgraphs(n: Node, nd, tensors, ids, values, opset, outer, depth, notes: Notes) -> None:
    """MACs, parameters and weights of a Loop/Scan body (times its trip count) or an If (the branch taken when
    the condition is constant, else the larger branch), carried by the control node itself."""
    import numpy as np

    scope = dict(outer)
    for name, i in ids.items():
        if tensors[i].shape is not None or tensors[i].const:
            scope[name] = tensors[i]
    subs = {a.name: a.g for a in nd.attribute if a.type == a.GRAPH}
    summaries = {}
    for key, sub in subs.items():
        sub = _standalone(sub, nd, n, tensors, scope, opset)
        sg = _onnx_graph(sub, opset, scope, depth + 1)
        sa = _summarize(sg, None)
        summaries[key] = sa
        for k, v in sg.notes.unknown.items():
            notes.unknown[k] = notes.unknown.get(k, 0) + v
        notes.lines.extend(sg.notes.lines)
        notes.lower_bound |= sg.notes.lower_bound
    if not summaries:
        return

    def const_of(pos):
        name = nd.input[pos] if len(nd.input) > pos else ""
        return values.get(name) if name else None

    if n.type == "If":
        cond = const_of(0)
        if cond is not None and np.asarray(cond).size == 1 and "then_branch" in summaries:
            sa = summaries["then_branch" if bool(np.asarray(cond).ravel()[0]) else "else_branch"]
        else:
            sa = max(summaries.values(), key=lambda a: a.macs)
            if len({a.macs for a in summaries.values()}) > 1:
                notes.lines.append("If with a condition known only at run time: the larger branch is counted")
        trips = 1
    elif n.type == "Loop":
        sa = summaries.get("body")
        m = const_of(0)
        if m is not None and np.asarray(m).size == 1:
            trips = int(np.asarray(m).ravel()[0])
            if len(nd.input) > 1 and nd.input[1] and const_of(1) is None:
                notes.lines.append(f"Loop counted for its maximum trip count {trips}; its condition may end it sooner")
        else:
            trips = 1
            notes.lower_bound = True
            notes.lines.append("lower bound: a Loop whose trip count is known only at run time is counted once")
    else:  # Scan: one body run per element of the scanned axis
        sa = summaries.get("body")
        nin = int(n.attrs.get("num_scan_inputs", 0))
        scan_in = [i for i in n.inputs[len(n.inputs) - nin:] if i >= 0] if nin else []
        axes = list(n.attrs.get("scan_input_axes", [0] * nin)) or [0] * nin
        shape = tensors[scan_in[0]].shape if scan_in else None
        trips = int(shape[axes[0]]) if shape else 1
        if not shape:
            notes.lower_bound = True
            notes.lines.append("lower bound: a Scan of unknown length is counted once")
    if sa is None:
        return
    n.macs = sa.macs * max(trips, 0)
    n.extra_params, n.extra_wbytes = sa.params, sa.weights_bytes
    n.op_class = _dominant_class(sa) if sa.macs else "other"
    mac_dt = [o.dtype for o in sa.ops if o.macs]
    n.dtype = mac_dt[0] if mac_dt else ""


def _standalone(sub, nd, n: Node, tensors: list[Tensor], scope: dict, opset: dict):
    """A subgraph as a model of its own, its inputs typed from the control node's inputs (Loop: the carried
    values; Scan: the state values) and the outer-scope values it reads as extra inputs, shapes inferred."""
    import numpy as np
    import onnx
    from onnx import helper

    def vi(name, t: Tensor):
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype)),
                                             list(t.shape) if t.shape is not None else None)

    g = onnx.GraphProto()
    g.CopyFrom(sub)
    if n.type == "Loop":
        feed = {2 + k: n.inputs[2 + k] for k in range(len(g.input) - 2) if len(n.inputs) > 2 + k}
    elif n.type == "Scan":
        nstate = len(g.input) - int(n.attrs.get("num_scan_inputs", 0))
        feed = {k: n.inputs[k] for k in range(nstate) if len(n.inputs) > k}
    else:
        feed = {}
    for k, i in feed.items():
        if i >= 0 and tensors[i].shape is not None and not g.input[k].type.tensor_type.HasField("shape"):
            g.input[k].CopyFrom(vi(g.input[k].name, tensors[i]))
    local = {i.name for i in g.input} | {i.name for i in g.initializer} | {o for nd2 in g.node for o in nd2.output}
    used = {i for nd2 in g.node for i in nd2.input if i}
    for name in sorted(used - local):
        if name in scope and scope[name].shape is not None:
            g.input.append(vi(name, scope[name]))
    model = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opset.items()])
    return _infer_types(model).graph


def _dominant_class(sa) -> str:
    by: dict[str, int] = {}
    for o in sa.ops:
        by[o.op_class] = by.get(o.op_class, 0) + o.macs
    return max(by, key=by.get) if by else "other"


def _classify_onnx(n: Node, T: list[Tensor]) -> None:
    def shape(pos):
        return (T[n.inputs[pos]].shape or ()) if len(n.inputs) > pos and n.inputs[pos] >= 0 else ()

    out = (T[n.outputs[0]].shape or ()) if n.outputs else ()
    t = n.type
    attrs = n.attrs
    if t in ("Conv", "QLinearConv", "ConvInteger"):
        wpos = 3 if t == "QLinearConv" else 1
        w, x = shape(wpos), shape(0)
        group = int(attrs.get("group", 1))
        per_out = math.prod(out) // out[1] if len(out) > 1 and out[1] else 0  # N*Hout*Wout
        n.macs = math.prod(w) * per_out if w else 0
        n.cout = w[0] if w else 0
        cin = x[1] if len(x) > 1 else 0
        if group > 1 and len(w) > 1 and w[1] == 1 and group == cin:
            n.op_class = "depthwise"
        elif len(w) > 2 and all(k == 1 for k in w[2:]) and group == 1:
            n.op_class = "pointwise"
        else:
            n.op_class = "conv"
        n.bias_pos = {"Conv": 2, "QLinearConv": 8}.get(t)
        n.weight_inputs = (wpos,) + ((n.bias_pos,) if n.bias_pos is not None else ())
    elif t == "ConvTranspose":
        w, x = shape(1), shape(0)
        n.macs = math.prod(w) * (math.prod(x) // x[1]) if w and len(x) > 1 and x[1] else 0
        group = int(attrs.get("group", 1))
        n.op_class, n.cout = "conv", (w[1] * group if len(w) > 1 else 0)
        n.weight_inputs, n.bias_pos = (1, 2), 2
    elif t == "Gemm":
        b = shape(1)
        n.macs = math.prod(b) * (out[0] if out else 1) if b else 0
        n.op_class, n.weight_inputs, n.bias_pos = "fc", (1, 2), 2
        n.cout = out[-1] if out else 0
    elif t == "QGemm":  # com.microsoft: A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp
        b = shape(3)
        n.macs = math.prod(b) * (out[0] if out else 1) if b else 0
        n.op_class, n.weight_inputs, n.bias_pos, n.act_pos = "fc", (3, 6), 6, 0
        n.cout = out[-1] if out else 0
    elif t in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        apos, bpos = (0, 3) if t == "QLinearMatMul" else (0, 1)
        a, b = shape(apos), shape(bpos)
        k = a[-1] if a else (b[-2] if len(b) > 1 else 0)
        n.macs = math.prod(out) * k if out else 0
        n.op_class, n.weight_inputs = "fc", (bpos,)
        n.cout = out[-1] if out else 0
        if T[n.inputs[apos]].const and not T[n.inputs[bpos]].const:
            n.weight_inputs, n.act_pos = (apos,), bpos
    elif t in ONNX_ELEMENTWISE:
        n.op_class = "elementwise"
    elif t in ONNX_POOL:
        n.op_class = "pool"
    elif t not in ONNX_ZERO and t not in ONNX_CONTROL:
        n.known = False


# ---- format-neutral analysis ------------------------------------------------------------------

def _fold_constants(g: Graph) -> list[Node]:
    """Nodes whose inputs are all constant (DEQUANTIZE of float16/int8 weights, ONNX const subgraphs) are
    evaluated once at load: their outputs become constants and they leave the execution order."""
    T = g.tensors
    run = []
    for n in g.nodes:
        ins = [i for i in n.inputs if i >= 0]
        if ins and all(T[i].const for i in ins) and n.outputs and n.type not in ONNX_CONTROL:
            stored = sum(T[i].stored_bytes for i in ins)
            roots = [T[i].stored_dtype for i in ins if T[i].stored_dtype]
            big = max(ins, key=lambda i: T[i].elems)
            for k, o in enumerate(n.outputs):
                T[o].const = True
                T[o].stored_bytes = stored if k == 0 else 0
                T[o].stored_dtype = T[big].stored_dtype or (roots[0] if roots else T[o].dtype)
            n.folded = True
        else:
            run.append(n)
    return run


def _summarize(g: Graph, path: str | None) -> StaticAnalysis:
    T = g.tensors
    run = _fold_constants(g)
    consumers: dict[int, list[Node]] = {}
    for n in run:
        for i in n.inputs:
            if i >= 0:
                consumers.setdefault(i, []).append(n)
    producer_of = {o: n for n in run for o in n.outputs}

    def act_dtype(n: Node) -> str:
        acts = [i for i in n.inputs if i >= 0 and not T[i].const]
        if not acts:
            return T[n.outputs[0]].dtype if n.outputs else "float32"
        i = n.inputs[n.act_pos] if len(n.inputs) > n.act_pos and n.inputs[n.act_pos] >= 0 else acts[0]
        if T[i].const:
            i = acts[0]
        p = producer_of.get(i)
        if p is not None and p.type == "DequantizeLinear" and p.inputs and not T[p.inputs[0]].const:
            return T[p.inputs[0]].dtype  # ONNX QDQ: the op runs on the quantized tensor
        return T[i].dtype

    alias = _qdq_aliases(g, run, consumers) if g.format == "onnx" else {}

    def size(t: int) -> int:
        return T[_find(alias, t)].nbytes

    seen_const: set[int] = set()
    ops: list[OpStat] = []
    kinds: set[str] = set()
    for idx, n in enumerate(run):
        params = 0
        wbytes = 0
        for pos, i in enumerate(n.inputs):
            if i < 0 or not T[i].const:
                continue
            if i not in seen_const:
                seen_const.add(i)
                wbytes += T[i].stored_bytes
        if n.op_class in _MAC_OPS and n.type not in ONNX_CONTROL and n.weight_inputs:
            w = n.inputs[n.weight_inputs[0]] if len(n.inputs) > n.weight_inputs[0] else -1
            if w >= 0 and T[w].const:  # a weight, not a product of two activations
                params += T[w].elems + n.cout  # one bias per output channel (see the module docstring)
        params += n.extra_params
        wbytes += n.extra_wbytes
        dtype = n.dtype or act_dtype(n)
        if n.type in ONNX_CONTROL:
            if n.macs:
                kinds.add({"uint8": "int8"}.get(dtype, dtype))
        elif n.op_class in ("conv", "pointwise", "depthwise", "fc"):
            wts = [T[n.inputs[p]] for p in n.weight_inputs[:1] if len(n.inputs) > p and n.inputs[p] >= 0]
            wdt = wts[0].stored_dtype or wts[0].dtype if wts and wts[0].const else dtype
            p = producer_of.get(n.inputs[n.act_pos]) if len(n.inputs) > n.act_pos else None
            if p is not None and p.type == "DynamicQuantizeLinear":
                kinds.add("dynamic")  # ONNX Runtime's dynamic quantization: activations quantized at run time
            elif dtype in ("int8", "uint8"):
                kinds.add("int8")
            elif dtype == "int16" and wdt == "int8":
                kinds.add("int16x8")
            elif dtype.startswith("float") and wdt in ("int8", "uint8", "int4"):
                kinds.add("dynamic")
            elif wdt == "float16" or dtype == "float16":
                kinds.add("float16")
            else:
                kinds.add(dtype)
        outs = [o for o in n.outputs if not T[o].const]
        ops.append(OpStat(
            index=idx, type=n.type, op_class=n.op_class, dtype=dtype,
            output_shape=tuple(T[n.outputs[0]].shape) if n.outputs else (),
            macs=int(n.macs), params=int(params), weight_bytes=int(wbytes),
            activation_bytes=int(sum(size(o) for o in outs)),
            input_bytes=int(sum(size(i) for i in {i for i in n.inputs if i >= 0 and not T[i].const})),
            name=T[n.outputs[0]].name if n.outputs else "", delegated=n.delegated,
        ))
    # constants nobody runs on (should not happen) still ship
    folded_inputs = {i for n in g.nodes if n.folded for i in n.inputs}
    stray = sum(t.stored_bytes for i, t in enumerate(T) if t.const and i not in seen_const and i not in folded_inputs)
    peak, peak_at = _liveness_peak(g, run, alias)
    precision = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else _first_input_dtype(g))
    io = lambda ids: [{"name": T[i].name, "shape": list(T[i].shape), "dtype": T[i].dtype} for i in ids]  # noqa: E731
    notes = list(dict.fromkeys(g.notes.lines))
    if g.notes.unknown:
        notes.append("lower bound: op types this analysis does not know are not counted: "
                     + ", ".join(f"{k} x{v}" for k, v in sorted(g.notes.unknown.items())))
    return StaticAnalysis(
        path=path, format=g.format, precision=precision, ops=ops,
        macs=sum(o.macs for o in ops), params=sum(o.params for o in ops),
        weights_bytes=sum(o.weight_bytes for o in ops) + stray, file_bytes=os.path.getsize(path) if path else 0,
        peak_activation_bytes=peak, peak_op_index=peak_at, inputs=io(g.inputs), outputs=io(g.outputs),
        unknown_ops=dict(sorted(g.notes.unknown.items())),
        macs_lower_bound=bool(g.notes.lower_bound or g.notes.unknown), notes=notes,
        delegate_partitions=g.partitions,
    )


def _first_input_dtype(g: Graph) -> str:
    return g.tensors[g.inputs[0]].dtype if g.inputs else "float32"


def _find(alias: dict[int, int], t: int) -> int:
    for _ in range(64):
        if t not in alias:
            break
        t = alias[t]
    return t


def _qdq_aliases(g: Graph, run: list[Node], consumers: dict[int, list[Node]]) -> dict[int, int]:
    """ONNX QDQ graphs: ONNX Runtime fuses DequantizeLinear -> op -> QuantizeLinear into one quantized kernel,
    so the float tensors around a Q/DQ pair never exist. Map each to the int8 tensor it stands for."""
    T = g.tensors
    alias: dict[int, int] = {}
    keep = set(g.inputs) | set(g.outputs)
    for n in run:
        if not n.inputs or n.inputs[0] < 0 or T[n.inputs[0]].const or not n.outputs:
            continue
        x, y = n.inputs[0], n.outputs[0]
        if n.type == "DequantizeLinear" and y not in keep:
            alias[y] = x
        elif n.type == "QuantizeLinear" and x not in keep and len(consumers.get(x, [])) == 1:
            alias[x] = y
    return alias


def _liveness_peak(g: Graph, run: list[Node], alias: dict[int, int] | None = None) -> tuple[int, int]:
    """Largest sum of bytes of live non-constant tensors over the execution order, and the op where it occurs.

    ``alias`` maps a tensor to the buffer it shares (QDQ float views of int8 tensors)."""
    T = g.tensors
    alias = alias or {}
    end = len(run) - 1

    def rep(t: int) -> int:
        return _find(alias, t)

    born: dict[int, int] = {rep(i): -1 for i in g.inputs if not T[i].const}
    last: dict[int, int] = dict(born)
    for step, n in enumerate(run):
        for o in n.outputs:
            if not T[o].const:
                r = rep(o)
                born.setdefault(r, step)
                last[r] = max(last.get(r, step), step)
        for i in n.inputs:
            if i >= 0 and rep(i) in born:
                last[rep(i)] = max(last[rep(i)], step)
    for o in g.outputs:
        if rep(o) in born:
            last[rep(o)] = end
    delta = [0] * (len(run) + 2)  # index step+1
    for t, b in born.items():
        size = T[t].nbytes
        delta[b + 1] += size
        delta[last[t] + 2] -= size
    peak, at, cur = 0, -1, 0
    for k in range(len(run) + 1):
        cur += delta[k]
        if cur > peak:
            peak, at = cur, k - 1
    return peak, at


# ---- entry points -----------------------------------------------------------------------------

class _Fail(Exception):
    """The model cannot be analysed (reported as a one-line error by the parent)."""


def sniff_format(path: str) -> str:
    """``tflite`` or ``onnx`` from the file's content (the suffix can lie); raise _Fail if neither."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    suffix = os.path.splitext(path)[1].lower()
    if len(head) >= 8 and head[4:8] == b"TFL3":
        if suffix == ".onnx":
            raise _Fail("the file has a .onnx suffix but is a TFLite flatbuffer")
        return "tflite"
    if suffix == ".tflite":
        raise _Fail("not a TFLite flatbuffer (no TFL3 identifier)")
    if suffix == ".onnx":
        return "onnx"
    raise _Fail(f"unknown model format (suffix {suffix or 'none'!r}); expected .tflite or .onnx")


def analyze_in_process(path: str) -> StaticAnalysis:
    """Parse and analyse ``path`` in this process (trusted files; ``analyze`` isolates untrusted ones)."""
    fmt = sniff_format(path)
    graph = _load_tflite(path) if fmt == "tflite" else _load_onnx(path)
    return _summarize(graph, path)


def analyze(path: str | os.PathLike, timeout_s: float = 300.0) -> StaticAnalysis:
    """Static analysis of a .tflite or .onnx file, parsed in a child process with a time limit.

    Raises ``EdgecvError`` (one line) if the file is missing, not a model, or crashes or hangs the parser.
    """
    from edgecv.profiling._child import check_model_path, run_child

    path = check_model_path(path)
    out = run_child([sys.executable, "-m", "edgecv.profiling.static", path], timeout_s, what=f"analysing {path}")
    return StaticAnalysis.from_dict(json.loads(out))


def _main(argv: list[str]) -> int:
    # runtimes print to fd 1 from C: keep the real stdout for the JSON object only
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        res = analyze_in_process(argv[0])
    except _Fail as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    except MemoryError:
        sys.stderr.write("out of memory while parsing the model\n")
        return 2
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)
    sys.stdout.write(json.dumps(res.to_dict()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
