"""The package's architecture, checked: llmnotes-internal imports form layers and no cycle.

Dependencies point one way (``DESIGN.md``, "Package layout")::

    core  <-  sampling / train / quantize / convert  <-  finetune / rag  <-  serve  <-  cli
     0                       1                               2               3         4

``LAYERS`` below gives every module of the package its layer, explicitly; a new module fails
:func:`test_every_module_has_a_layer` until it is given one. A module may import modules of its
own layer or of a lower one; an import of a higher layer is a failure, and so is any cycle, even
within one layer. Where a module's layer is not what its folder suggests, ``LAYERS`` says why.

What counts as an import (read from each file's AST, so nothing has to run):

* every ``import`` and ``from ... import`` statement, *including those inside functions and
  methods* -- a lazy import is still a dependency, and the cycles this test exists to prevent
  were all hidden inside functions;
* ``importlib.import_module("llmnotes....")`` with a literal name (the CLI dispatches that way);
* ``from llmnotes import X`` counts as an import of the module that the package's lazy
  ``_EXPORTS`` table maps ``X`` to (``GPT`` -> ``llmnotes.model``), since that is what runs;
* importing ``llmnotes.pkg.mod`` from outside ``llmnotes.pkg`` also imports ``llmnotes.pkg``
  (Python runs the package's ``__init__`` first). A module's imports of its own package are not
  counted: Python has already run that ``__init__``, which only re-exports its submodules.

Not counted: the body of an ``if __name__ == "__main__":`` block. It runs only when the file is
the program (``python -m llmnotes.rag build-index docs`` hands over to the ``llmnotes`` command
that way), never when the module is imported, so it is an entry point like the CLI's own.

The shipped data generators under ``llmnotes/assets/`` are scripts, not part of the package's
import graph, and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "llmnotes"

CORE, MIDDLE, APPS, SERVE, CLI = 0, 1, 2, 3, 4
LAYER_NAMES = {CORE: "core", MIDDLE: "sampling/train/quantize/convert", APPS: "finetune/rag",
               SERVE: "serve", CLI: "cli"}

LAYERS: dict[str, int] = {
    # core: the model, its tokenizer and data, and the math chapters' modules
    "llmnotes": CORE,
    "llmnotes.autograd": CORE,
    "llmnotes.calc": CORE,
    "llmnotes.classic": CORE,
    "llmnotes.config": CORE,
    "llmnotes.data": CORE,
    "llmnotes.dedup": CORE,
    "llmnotes.evaluate": CORE,
    "llmnotes.fast_linear": CORE,  # the decode-time linear kernels the model itself prepares
    "llmnotes.fused": CORE,  # the one-call decode step GPT.forward takes when prepared
    "llmnotes.landscape": CORE,
    "llmnotes.layers": CORE,
    "llmnotes.linalg": CORE,
    "llmnotes.load_checks": CORE,
    "llmnotes.model": CORE,
    "llmnotes.native": CORE,  # llmnotes' own C++ decode kernels, beside qkernels
    "llmnotes.numpy_mlp": CORE,
    "llmnotes.optim": CORE,
    "llmnotes.plotting": CORE,
    "llmnotes.probability": CORE,
    "llmnotes.prompting": CORE,  # chat templates and few-shot formats: finetune and serve use them
    "llmnotes.qkernels": CORE,  # int8/int4/bf16 matmul kernels, below both quantize and train's bf16
    "llmnotes.recorded": CORE,
    "llmnotes.schedules": CORE,
    "llmnotes.text_metrics": CORE,
    "llmnotes.tokenizer": CORE,
    "llmnotes.utils": CORE,
    "llmnotes.word2vec": CORE,
    # the Hugging Face directory is the model's own file format (GPT.from_pretrained and
    # GPT.save_pretrained read and write it; every model llmnotes trains is saved in it), so
    # the modules that map its names sit in the core, below the model that calls them
    "llmnotes.hf": CORE,
    "llmnotes.hf_llama": CORE,
    # sampling
    "llmnotes.sampling": MIDDLE,
    "llmnotes.sampling.processors": MIDDLE,
    "llmnotes.sampling.config": MIDDLE,
    "llmnotes.sampling.decode": MIDDLE,
    "llmnotes.sampling.text": MIDDLE,
    "llmnotes.sampling.beam": MIDDLE,
    "llmnotes.sampling.speculative": MIDDLE,
    # train
    "llmnotes.train": MIDDLE,
    "llmnotes.train.config": MIDDLE,
    "llmnotes.train.trainer": MIDDLE,
    "llmnotes.train.checkpoint": MIDDLE,
    "llmnotes.train.bf16": MIDDLE,
    # quantize (its __init__ re-exports convert's export_gguf: same layer, no cycle)
    "llmnotes.quantize": MIDDLE,
    "llmnotes.quantize.primitives": MIDDLE,
    "llmnotes.quantize.layers": MIDDLE,
    "llmnotes.quantize.gptq": MIDDLE,
    "llmnotes.quantize.models": MIDDLE,
    "llmnotes.quantize.io": MIDDLE,
    # convert: GGUF for llama.cpp
    "llmnotes.convert": MIDDLE,
    "llmnotes.convert.gguf": MIDDLE,
    "llmnotes.convert.gguf_llama": MIDDLE,
    # pruning and distillation: compress a model by training it (beside quantize, above train)
    "llmnotes.compress": MIDDLE,
    # finetune
    "llmnotes.finetune": APPS,
    "llmnotes.finetune.data": APPS,
    "llmnotes.finetune.classify": APPS,
    "llmnotes.finetune.instruct": APPS,
    "llmnotes.finetune.lora": APPS,
    "llmnotes.finetune.dpo": APPS,
    "llmnotes.finetune.tasks": APPS,
    # rag
    "llmnotes.rag": APPS,
    "llmnotes.rag.pipeline": APPS,
    "llmnotes.rag.__main__": CLI,  # `python -m llmnotes.rag`: an entry point, like llmnotes.__main__
    "llmnotes.rag.bm25": APPS,
    "llmnotes.rag.chunking": APPS,
    "llmnotes.rag.dense": APPS,
    "llmnotes.rag.extractive": APPS,
    "llmnotes.rag.metrics": APPS,
    "llmnotes.rag.knowledge_graph": APPS,
    # the one loader: a shipped name, a model directory, a quantized directory or a LoRA adapter,
    # so it sits above quantize (load_quantized) and finetune (adapters). The file stays at the
    # package root beside the model, where a reader looks for it.
    "llmnotes.pretrained": APPS,
    # serve
    "llmnotes.serve": SERVE,
    "llmnotes.serve.app": SERVE,
    "llmnotes.serve.routes": SERVE,
    "llmnotes.serve.state": SERVE,
    "llmnotes.serve.streaming": SERVE,
    "llmnotes.serve.engine": SERVE,
    "llmnotes.serve.protocol": SERVE,
    "llmnotes.serve.limits": SERVE,
    "llmnotes.serve.metrics": SERVE,
    # the command line
    "llmnotes.cli": CLI,
    "llmnotes.cli.ask": CLI,
    "llmnotes.cli.build_index": CLI,
    "llmnotes.cli.common": CLI,
    "llmnotes.cli.finetune": CLI,
    "llmnotes.cli.export": CLI,
    "llmnotes.cli.quantize": CLI,
    "llmnotes.cli.sample": CLI,
    "llmnotes.cli.serve": CLI,
    "llmnotes.cli.tokenize": CLI,
    "llmnotes.cli.train": CLI,
    "llmnotes.__main__": CLI,
}


def module_files() -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of the package (assets left out)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent)
        if rel.parts[1] == "assets":
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _lazy_exports(init: Path) -> dict[str, str]:
    """The top-level package's ``_EXPORTS = {"Name": "llmnotes.module"}`` table."""
    for node in ast.walk(ast.parse(init.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS"
                                                 for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` at a module's top level."""
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators))


def imports_of(name: str, path: Path, modules: set[str], exports: dict[str, str]) -> set[str]:
    """The llmnotes modules that importing (or running any function of) ``name`` imports."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()

    def resolve(module: str, names: list[str]) -> None:
        if module == "llmnotes":
            for n in names:
                if f"llmnotes.{n}" in modules:
                    targets.add(f"llmnotes.{n}")
                elif n in exports:
                    targets.add(exports[n])
            return
        for n in names:  # `from llmnotes.pkg import submodule`
            if f"{module}.{n}" in modules:
                targets.add(f"{module}.{n}")
        targets.add(module)

    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    entry = {id(n) for top in tree.body if _is_main_guard(top) for n in ast.walk(top)}
    for node in ast.walk(tree):
        if id(node) in entry:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("llmnotes"):
                    targets.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the importing module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("llmnotes"):
                resolve(module, [a.name for a in node.names])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and node.args[0].value.startswith("llmnotes")):
            targets.add(node.args[0].value)
    own_package = name if is_package else name.rpartition(".")[0]
    edges = set()
    for target in targets:
        if target not in modules:
            continue  # e.g. a name imported from a package's __init__ was resolved to the package
        edges.add(target)
        # importing llmnotes.pkg.mod from outside llmnotes.pkg runs llmnotes/pkg/__init__.py first
        parent = target.rpartition(".")[0]
        while parent and parent != "llmnotes" and not (own_package == parent
                                                         or own_package.startswith(parent + ".")):
            edges.add(parent)
            parent = parent.rpartition(".")[0]
    edges.discard(name)
    return {t for t in edges if not (own_package and t == own_package and t != name)}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    exports = _lazy_exports(files["llmnotes"])
    return {name: imports_of(name, path, set(files), exports) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or ``None`` (depth-first search, colouring nodes)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour[nxt] == WHITE and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = BLACK
        return None

    for node in sorted(graph):
        if colour[node] == WHITE and (found := visit(node)):
            return found
    return None


def test_every_module_has_a_layer():
    modules = set(module_files())
    missing = sorted(modules - set(LAYERS))
    assert not missing, f"give these modules a layer in LAYERS: {missing}"
    stale = sorted(set(LAYERS) - modules)
    assert not stale, f"LAYERS names modules that no longer exist: {stale}"


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_upward_import():
    upward = [f"{a} ({LAYER_NAMES[LAYERS[a]]}) imports {b} ({LAYER_NAMES[LAYERS[b]]})"
              for a, targets in sorted(import_graph().items()) for b in sorted(targets)
              if a in LAYERS and b in LAYERS and LAYERS[b] > LAYERS[a]]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


# --- the checker itself, on small made-up packages ---------------------------------------------

def test_find_cycle_reports_a_loop_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_imports_inside_functions_and_lazy_names_count(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "import importlib\n"
        "from llmnotes import GPT, data\n"
        "def f():\n"
        "    from llmnotes.pkg.sub import thing\n"
        "    return importlib.import_module('llmnotes.cli')\n", encoding="utf-8")
    modules = {"llmnotes", "llmnotes.model", "llmnotes.data", "llmnotes.pkg", "llmnotes.pkg.sub",
               "llmnotes.cli", "llmnotes.m"}
    edges = imports_of("llmnotes.m", src, modules, {"GPT": "llmnotes.model"})
    assert edges == {"llmnotes.model", "llmnotes.data", "llmnotes.pkg.sub", "llmnotes.pkg", "llmnotes.cli"}


def test_a_main_guard_is_an_entry_point_not_a_dependency(tmp_path):
    src = tmp_path / "tool.py"
    src.write_text("import sys\nfrom llmnotes import data\n"
                   "if __name__ == '__main__':\n    from llmnotes.cli import main\n    sys.exit(main())\n",
                   encoding="utf-8")
    modules = {"llmnotes", "llmnotes.data", "llmnotes.cli", "llmnotes.tool"}
    assert imports_of("llmnotes.tool", src, modules, {}) == {"llmnotes.data"}


def test_a_module_does_not_depend_on_its_own_package_init(tmp_path):
    src = tmp_path / "sub.py"
    src.write_text("from llmnotes.pkg.other import x\nfrom llmnotes.pkg import y\n", encoding="utf-8")
    modules = {"llmnotes", "llmnotes.pkg", "llmnotes.pkg.sub", "llmnotes.pkg.other"}
    assert imports_of("llmnotes.pkg.sub", src, modules, {}) == {"llmnotes.pkg.other"}


@pytest.mark.parametrize("layer", sorted(LAYER_NAMES))
def test_each_layer_is_used(layer):
    assert layer in LAYERS.values(), f"no module is in layer {LAYER_NAMES[layer]}"
