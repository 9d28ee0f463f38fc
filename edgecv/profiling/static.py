"""Static analysis of a deployed graph (.tflite or .onnx): per-op MACs, parameters, bytes, and the
peak activation memory by liveness. Never imports TensorFlow.

Counting conventions (the MobileNet/EfficientNet papers', and ``edgecv.builders.cost``'s):

- MACs: convolution ``k*k*cin/groups*cout*Hout*Wout``, depthwise ``k*k*cin*mult*Hout*Wout``, fully connected
  ``in*out`` (per output row); transposed convolution ``k*k*cin*cout*Hin*Win``; batched matmul ``out*K``.
  Element-wise ops, pooling, activations and data movement count 0 MACs.
- Parameters: elements of the constant weight and bias tensors of convolutions and fully connected ops
  (what the papers count). A bias-free convolution followed by a constant per-channel add or a
  BatchNormalization counts the bias it gains when the runtime folds them, so the figure equals the
  builder's deployed count whatever the converter emitted. Constants of other ops (normalization vectors,
  shapes, clip bounds) are not parameters; their bytes are in ``weight_bytes``.
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
from dataclasses import asdict, dataclass, field

from edgecv.records import OpStat

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
# element-wise ops a runtime folds into a preceding convolution when their other operand is constant
_FOLDABLE_SCALE = {"Mul", "Div", "MUL", "DIV", "QLinearMul"}
_FOLDABLE_SHIFT = {"Add", "Sub", "ADD", "SUB", "QLinearAdd"}


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


@dataclass
class Graph:
    format: str
    tensors: list[Tensor]
    nodes: list[Node]
    inputs: list[int]
    outputs: list[int]


@dataclass(frozen=True)
class StaticAnalysis:
    """The result of ``analyze``: per-op stats in execution order, and totals."""

    path: str
    format: str  # tflite | onnx
    precision: str  # float32 | float16 | int8 | int16x8 | dynamic | mixed
    ops: list[OpStat]
    macs: int
    params: int
    weights_bytes: int
    file_bytes: int
    peak_activation_bytes: int
    peak_op_index: int  # index of the op at which the peak occurs (-1: before the first op)
    inputs: list[dict] = field(default_factory=list)  # name, shape, dtype
    outputs: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StaticAnalysis":
        d = dict(d)
        d["ops"] = [OpStat(**{**o, "output_shape": tuple(o["output_shape"])}) for o in d["ops"]]
        return cls(**d)


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
        interp = Interpreter(model_path=path, **kw)
        in_file = {d["index"] for d in interp.get_tensor_details()}  # before Prepare adds kernel temporaries
        for d in interp.get_input_details():
            sig = d.get("shape_signature", d["shape"])
            if any(int(s) < 0 for s in sig):
                interp.resize_tensor_input(d["index"], [max(int(s), 1) for s in sig])
        interp.allocate_tensors()
        ops = interp._get_ops_details()
        details = [d for d in interp.get_tensor_details() if d["index"] in in_file]
        graph_in = [d["index"] for d in interp.get_input_details()]
        graph_out = [d["index"] for d in interp.get_output_details()]
    except (ValueError, RuntimeError) as exc:
        raise _Fail(f"not a readable TFLite model: {' '.join(str(exc).split())[:300]}") from None
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
    for n in nodes:
        _classify_tflite(n, tensors)
    return Graph("tflite", tensors, nodes, graph_in, graph_out)


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
        n.op_class, n.weight_inputs = "fc", (1,)
    elif t in TFLITE_ELEMENTWISE:
        n.op_class = "elementwise"
    elif t in TFLITE_POOL:
        n.op_class = "pool"


# ---- ONNX -------------------------------------------------------------------------------------

def _load_onnx(path: str) -> Graph:
    import onnx
    from onnx import helper, shape_inference

    try:
        model = onnx.load(path)
    except Exception as exc:  # protobuf DecodeError and friends
        raise _Fail(f"not a readable ONNX model: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
    if not model.graph.node:
        raise _Fail("not a readable ONNX model: the graph has no nodes")
    try:
        model = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:
        pass  # shapes from value_info only
    if _missing_shapes(model):  # contrib ops (QLinearAdd, QGemm ...): ONNX Runtime's own inference knows them
        try:
            from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

            model = SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=True)
        except Exception:  # not installed (needs sympy) or failed: the element-wise fallback below
            pass
    g = model.graph
    ids: dict[str, int] = {}
    tensors: list[Tensor] = []

    def tid(name: str) -> int:
        if name not in ids:
            ids[name] = len(tensors)
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
        set_type(vi)
    for init in g.initializer:
        t = tensors[tid(init.name)]
        t.shape = tuple(int(d) for d in init.dims)
        t.dtype = _dtype_name(helper.tensor_dtype_to_np_dtype(init.data_type))
        t.const, t.stored_bytes, t.stored_dtype = True, t.nbytes, t.dtype
    init_names = {i.name for i in g.initializer}
    graph_in = [tid(i.name) for i in g.input if i.name not in init_names]
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
                elif t.shape is None:
                    t.shape = ()
                t.stored_bytes, t.stored_dtype = t.nbytes, t.dtype
            continue
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
        _classify_onnx(n, tensors)
    return Graph("onnx", tensors, nodes, graph_in, graph_out)


def _missing_shapes(model) -> bool:
    known = {vi.name for vi in list(model.graph.value_info) + list(model.graph.output)
             if vi.type.tensor_type.HasField("shape")}
    known |= {i.name for i in model.graph.initializer}
    return any(o and o not in known for nd in model.graph.node if nd.op_type != "Constant" for o in nd.output)


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


# ---- format-neutral analysis ------------------------------------------------------------------

def _fold_constants(g: Graph) -> list[Node]:
    """Nodes whose inputs are all constant (DEQUANTIZE of float16/int8 weights, ONNX const subgraphs) are
    evaluated once at load: their outputs become constants and they leave the execution order."""
    T = g.tensors
    run = []
    for n in g.nodes:
        ins = [i for i in n.inputs if i >= 0]
        if ins and all(T[i].const for i in ins) and n.outputs:
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


def _gains_bias(n: Node, consumers: dict[int, list[Node]], T: list[Tensor]) -> bool:
    """A bias-free conv/fc whose output flows (single consumer each) through constant per-channel scales into
    a constant add or a BatchNormalization: the runtime folds them, and the op deploys with a bias."""
    if not n.outputs:
        return False
    cur = n.outputs[0]
    for _ in range(8):
        users = consumers.get(cur, [])
        if len(users) != 1 or cur in _graph_outputs_cache:
            return False
        u = users[0]
        other = [i for i in u.inputs if i >= 0 and i != cur]
        if u.type == "BatchNormalization":
            return True
        if u.type in ONNX_QDQ and all(T[i].const for i in other):  # QDQ graph: look through the pair
            cur = u.outputs[0]
            continue
        if u.type not in _FOLDABLE_SCALE | _FOLDABLE_SHIFT or not other or not all(T[i].const for i in other):
            return False
        if max(T[i].elems for i in other) not in (1, n.cout):  # a per-channel (or scalar) constant
            return False
        if u.type in _FOLDABLE_SHIFT:
            return True
        cur = u.outputs[0]
    return False


_graph_outputs_cache: set[int] = set()


def _summarize(g: Graph, path: str) -> StaticAnalysis:
    global _graph_outputs_cache
    T = g.tensors
    run = _fold_constants(g)
    _graph_outputs_cache = set(g.outputs)
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
            if pos in n.weight_inputs and n.op_class in ("conv", "pointwise", "depthwise", "fc"):
                params += T[i].elems  # per op: a converter may share one all-zero bias between ops
            if i not in seen_const:
                seen_const.add(i)
                wbytes += T[i].stored_bytes
        has_bias = (n.bias_pos is not None and len(n.inputs) > n.bias_pos and n.inputs[n.bias_pos] >= 0
                    and T[n.inputs[n.bias_pos]].const)
        if n.op_class in ("conv", "pointwise", "depthwise", "fc") and not has_bias and n.cout and any(
                len(n.inputs) > p and n.inputs[p] >= 0 and T[n.inputs[p]].const for p in n.weight_inputs):
            if _gains_bias(n, consumers, T):
                params += n.cout
        dtype = act_dtype(n)
        if n.op_class in ("conv", "pointwise", "depthwise", "fc"):
            wts = [T[n.inputs[p]] for p in n.weight_inputs[:1] if len(n.inputs) > p and n.inputs[p] >= 0]
            wdt = wts[0].stored_dtype or wts[0].dtype if wts and wts[0].const else dtype
            if dtype in ("int8", "uint8"):
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
            name=T[n.outputs[0]].name if n.outputs else "",
        ))
    # constants nobody runs on (should not happen) still ship
    folded_inputs = {i for n in g.nodes if n.folded for i in n.inputs}
    stray = sum(t.stored_bytes for i, t in enumerate(T) if t.const and i not in seen_const and i not in folded_inputs)
    peak, peak_at = _liveness_peak(g, run, alias)
    precision = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else _first_input_dtype(g))
    io = lambda ids: [{"name": T[i].name, "shape": list(T[i].shape), "dtype": T[i].dtype} for i in ids]  # noqa: E731
    return StaticAnalysis(
        path=path, format=g.format, precision=precision, ops=ops,
        macs=sum(o.macs for o in ops), params=sum(o.params for o in ops),
        weights_bytes=sum(o.weight_bytes for o in ops) + stray, file_bytes=os.path.getsize(path),
        peak_activation_bytes=peak, peak_op_index=peak_at, inputs=io(g.inputs), outputs=io(g.outputs),
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
