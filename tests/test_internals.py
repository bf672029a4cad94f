"""The private module imreg_lib._torch: the fast-paths switch works both ways (and the fast and generic paths
agree), and no other module of imreg_lib touches PyTorch internals (checked by parsing every module)."""
import ast
import pathlib
import threading

import pytest
import torch
from torch.func import jacfwd, vmap

import imreg_lib as il
from imreg_lib import _sroperator, _torch
from imreg_lib._torch import fast_paths, fast_paths_enabled
from imreg_lib.spline import SplineWeights, spline_weights

PACKAGE = pathlib.Path(il.__file__).parent
PRIVATE_TORCH = ("torch._C", "torch._functorch")


# ------------------------------------------------------------------------------------------------
# The switch
# ------------------------------------------------------------------------------------------------
def test_switch_is_scoped_nested_and_restored():
    assert fast_paths_enabled()
    with fast_paths(False):
        assert not fast_paths_enabled()
        with fast_paths(True):
            assert fast_paths_enabled()
        assert not fast_paths_enabled()
    assert fast_paths_enabled()
    with pytest.raises(RuntimeError, match="boom"), fast_paths(False):
        raise RuntimeError("boom")
    assert fast_paths_enabled()  # restored after an exception
    with pytest.raises(TypeError, match="bool"), fast_paths(0):
        pass


def test_switch_is_per_thread():
    seen = []
    with fast_paths(False):
        t = threading.Thread(target=lambda: seen.append(fast_paths_enabled()))
        t.start()
        t.join()
    assert seen == [True]


@pytest.fixture(scope="module")
def small(perturbed_start):
    pb = il.superresolution_problem(8, 2, 3)
    return pb, perturbed_start(pb, seed=0)


class _Calls:
    """Counts the calls of the fast paths' entry points: the CSR matrices and the custom-jvp primitive."""

    def __init__(self, monkeypatch):
        self.sparse = self.primitive = 0
        sparse, primitive = SplineWeights.sparse, _sroperator._NormalPrimitive.apply

        def counted_sparse(s):
            self.sparse += 1
            return sparse(s)

        def counted_primitive(*args):
            self.primitive += 1
            return primitive(*args)

        monkeypatch.setattr(SplineWeights, "sparse", counted_sparse)
        monkeypatch.setattr(_sroperator._NormalPrimitive, "apply", counted_primitive)


def test_operator_routes_follow_the_switch(small, monkeypatch):
    pb, w = small
    f = pb.f_init
    op = pb.operator(w)

    def routes():
        seen = []

        def normal(wv):
            o = pb.operator(wv)
            seen.append(o._route(f * wv[0]))
            return o.normal(f * wv[0])

        jacfwd(normal)(w)
        vmap(lambda z: seen.append(op._route(z)) or z)(torch.stack([f, f]))
        return (op._route(f), *seen)

    assert routes() == ("plain", "primitive", "plain")
    with fast_paths(False):
        assert routes() == ("generic", "generic", "generic")
    assert routes() == ("plain", "primitive", "plain")  # and back
    calls = _Calls(monkeypatch)
    jac = jacfwd(lambda wv: pb.operator(wv).normal(f * wv[0]))
    with fast_paths(False):
        op.normal(f)
        jac(w)
        vmap(op.normal)(torch.stack([f, f]))
        spline_weights(pb.x, pb.grid).apply(f.reshape(8, 8))
    assert (calls.sparse, calls.primitive) == (0, 0)  # nothing reached the fast paths
    op.normal(f)
    jac(w)
    assert calls.sparse > 0 and calls.primitive > 0


def test_fast_and_generic_paths_agree(small):
    pb, w = small
    g = torch.Generator().manual_seed(1)
    x = torch.randn(pb.n_pixels, generator=g, dtype=torch.float64)
    X = torch.randn(4, pb.n_pixels, generator=g, dtype=torch.float64)
    f = pb.f_init

    def outputs():
        op = pb.operator(w)
        return {
            "normal": op.normal(x),
            "normal_rhs": op.normal_rhs(),
            "vmap_normal": vmap(op.normal)(X),
            "detached_normal": op.detach().normal(x),
            "jacfwd_normal": jacfwd(lambda wv: pb.operator(wv).normal(f * wv[0]))(w),
            # a fixed number of CG iterations: round-off, amplified by CG, stays small
            "jacfwd_varpro": il.VarPro(pb, cg_iters=10, tol=0.0).jacobian(w[6:]),
            "last_restarted_varpro": il.VarPro(pb, "last_restarted", cg_iters=10, tol=0.0, fraction=0.5).jacobian(
                w[6:]),
        }

    fast = outputs()
    with fast_paths(False):
        generic = outputs()
    for key in fast:
        torch.testing.assert_close(fast[key], generic[key], rtol=1e-10, atol=1e-10, msg=key)


def test_spline_weights_paths_agree(small):
    pb, w = small
    y = pb.transformed_points(w)
    S = spline_weights(y, pb.grid, gradient=True)
    g = torch.Generator().manual_seed(2)
    c = torch.randn(pb.grid.m, generator=g, dtype=torch.float64)
    v = torch.randn(y.shape[0], generator=g, dtype=torch.float64)
    C = torch.randn(3, *pb.grid.m, generator=g, dtype=torch.float64)
    assert S._use_sparse(c)
    fast = (S.apply(c), S.transpose(v), vmap(S.apply)(C))
    with fast_paths(False):
        assert not S._use_sparse(c)
        generic = (S.apply(c), S.transpose(v), vmap(S.apply)(C))
    assert S._use_sparse(c)
    for a, b in zip(fast, generic, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# The inspection helpers
# ------------------------------------------------------------------------------------------------
def test_inspection_helpers_under_transforms():
    x = torch.arange(3.0, dtype=torch.float64)
    seen = {}

    def probe(z):
        seen.setdefault("stack", _torch.transform_stack())
        seen.setdefault("traced", _torch.is_traced(z))
        seen.setdefault("grad_traced", _torch.is_grad_traced(z))
        p = _torch.primal(z)  # for control flow: its values, and the batch materialised
        seen.setdefault("primal", (tuple(p.shape), float(p.sum())))
        return z * 2.0

    assert _torch.transform_stack() == () and not _torch.is_traced(x) and not _torch.is_grad_traced(x)
    jacfwd(probe)(x)
    assert seen["stack"] == ("vmap", "jvp") and seen["traced"] and seen["grad_traced"]
    assert seen["primal"] == ((3,), 3.0)
    seen.clear()
    vmap(probe)(torch.stack([x, x]))
    assert seen["stack"] == ("vmap",) and seen["traced"] and not seen["grad_traced"]
    assert seen["primal"] == ((2, 3), 6.0)
    with _torch.untraced():
        assert _torch.transform_stack() == ()
    assert _torch.is_grad_traced(x.clone().requires_grad_())
    assert torch.equal(_torch.scale(x, 0.5), 0.5 * x)


# ------------------------------------------------------------------------------------------------
# No other module touches PyTorch internals
# ------------------------------------------------------------------------------------------------
def private_torch_uses(source: str) -> list[str]:
    """``"line: what"`` for each import of, or attribute access to, ``torch._C`` or ``torch._functorch``."""
    tree = ast.parse(source)
    is_private = lambda name: any(name == p or name.startswith(p + ".") for p in PRIVATE_TORCH)  # noqa: E731
    aliases, found = {"torch"}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "torch":
                    aliases.add(a.asname or "torch")
                if is_private(a.name):
                    found.append(f"{node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            if is_private(node.module) or any(is_private(n) for n in names):
                found.append(f"{node.lineno}: from {node.module} import {', '.join(a.name for a in node.names)}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and is_private(f"torch.{node.attr}")):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_checker_finds_private_uses():
    bad = {
        "from torch._C import _functorch": 1,
        "import torch._functorch.pyfunctorch": 1,
        "from torch import _C": 1,
        "from torch._functorch.pyfunctorch import retrieve_current_functorch_interpreter": 1,
        "import torch\nwith torch._C._DisableFuncTorch():\n    pass": 1,
        "import torch as t\nt._functorch.apis": 1,
    }
    for source, n in bad.items():
        assert len(private_torch_uses(source)) == n, source
    good = "import torch\nfrom torch.func import jacfwd\nx = torch.ops.aten.mul.Scalar\nfrom ._torch import primal"
    assert private_torch_uses(good) == []
    assert len(private_torch_uses((PACKAGE / "_torch.py").read_text())) >= 3  # the module that may


def test_only_the_private_module_touches_torch_internals():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 15 and PACKAGE / "paper" / "__init__.py" in modules
    offenders = {}
    for path in modules:
        if path != PACKAGE / "_torch.py" and (uses := private_torch_uses(path.read_text())):
            offenders[str(path.relative_to(PACKAGE))] = uses
    assert offenders == {}
