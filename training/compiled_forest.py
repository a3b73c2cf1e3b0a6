"""LightGBM forests compiled to machine code with lleaves, for batch scoring.

A compiled forest gives the raw scores of ``Booster.predict(raw_score=True)`` bit for
bit, several times faster on large batches. lleaves evaluates trees in cache-sized
blocks and, unpatched, adds each block's own sum to the running total, which rounds
differently from LightGBM's tree-by-tree sum (differences of ~1e-15 that can reorder
near-ties). :func:`_sequential_block` makes each block start from the running total
instead: the order LightGBM adds in, so both give the same numbers. Callers apply the
objective's link themselves, as they do to LightGBM's raw scores.

Compiling costs ~0.1 s per tree (LLVM at -O3), so a forest is compiled once and its
object file cached under the model text's hash.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

BLOCK_TREES = 34
"""Trees per cache block (lleaves' default)."""


class CompiledForest:
    """A booster's trees as native code: :meth:`predict_raw` equals LightGBM's raw scores."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def predict_raw(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """Raw scores per row of ``X`` (float64; (rows, classes) when multiclass) on
        ``num_threads`` threads (0: one per core)."""
        from training.recs.parallel import threads  # training.recs imports this module

        return self._model.predict(X, n_jobs=threads(num_threads))


def compile_forest(booster: Any, cache_dir: Path, build: bool = True) -> CompiledForest | None:
    """``booster`` compiled (its best iteration's trees, what ``predict`` uses), loaded from
    ``cache_dir`` when a previous call cached it for the same model text and CPU. Not
    cached and ``build`` False: None (machine code is only loaded on the CPU model it
    was compiled for; LightGBM's own predict gives the same numbers, slower)."""
    import lleaves
    from lleaves.compiler.codegen import codegen

    text = booster.model_to_string()
    cached = cache_dir / f"forest-{_digest(text)}.o"
    if not cached.exists() and not build:
        return None
    with tempfile.TemporaryDirectory() as tmp:  # not in the cache: it may be read-only
        model_file = Path(tmp) / "model.txt"  # lleaves parses it when compiling
        model_file.write_text(text)
        model = lleaves.Model(model_file=str(model_file))
        if cached.exists():
            model.compile(cache=str(cached), raw_score=True)
            return CompiledForest(model)
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir) as staging:
            staged = Path(staging) / cached.name  # written whole, then renamed into place
            original = codegen._populate_instruction_block
            codegen._populate_instruction_block = _sequential_block
            try:
                model.compile(cache=str(staged), raw_score=True, fblocksize=BLOCK_TREES)
            finally:
                codegen._populate_instruction_block = original
            os.replace(staged, cached)
    return CompiledForest(model)


def _digest(model_text: str) -> str:
    """What a cached object file depends on: the model, the CPU and the compiler."""
    from importlib.metadata import version

    import llvmlite.binding as llvm

    host = f"{llvm.get_host_cpu_name()} {llvm.get_host_cpu_features().flatten()}"
    versions = f"lleaves {version('lleaves')} llvmlite {version('llvmlite')}"
    return hashlib.sha256(f"{host}\n{versions}\n{model_text}".encode()).hexdigest()[:24]


def _sequential_block(
    instr_block_idx, forest, root_func, tree_funcs, setup_block, next_block, eval_obj_func, use_fp64
):
    """lleaves' ``_populate_instruction_block`` (MIT licence), changed in one place: a
    block's sums start from the totals the earlier blocks stored instead of from zero,
    so every tree is added to the running total in model order, as LightGBM does.
    Raw scores only (the objective's link is the caller's)."""
    from lleaves.compiler.codegen.codegen import LONG, get_fdtype_const, lconst
    from llvmlite import ir

    assert not eval_obj_func or forest.raw_score, "compiled forests return raw scores"
    data_arr, out_arr, start_index, end_index = root_func.args

    builder = ir.IRBuilder(setup_block)
    start_index = builder.zext(start_index, LONG)
    end_index = builder.zext(end_index, LONG)
    loop_iter = builder.alloca(LONG, 1, "loop-idx")
    builder.store(start_index, loop_iter)
    condition_block = root_func.append_basic_block("loop-condition")
    builder.branch(condition_block)

    builder = ir.IRBuilder(condition_block)
    comp = builder.icmp_signed("<", builder.load(loop_iter), end_index)
    core_block = root_func.append_basic_block("loop-core")
    builder.cbranch(comp, core_block, next_block)

    builder = ir.IRBuilder(core_block)
    loop_iter_reg = builder.load(loop_iter)
    row = builder.mul(loop_iter_reg, ir.Constant(LONG, forest.n_args))
    args = []
    for i, feature in enumerate(forest.features):
        value = builder.load(builder.gep(data_arr, (builder.add(row, lconst(i)),)))
        if feature.is_categorical:  # NaN: the smallest int (always goes right)
            is_nan = builder.fcmp_ordered("uno", value, get_fdtype_const(0.0, use_fp64))
            value = builder.select(
                is_nan, ir.Constant(ir.IntType(32), -(2**31)), builder.fptosi(value, ir.IntType(32))
            )
        args.append(value)
    out = builder.mul(lconst(forest.n_classes), loop_iter_reg)
    result_ptrs = [
        builder.gep(out_arr, (builder.add(out, lconst(k)),)) for k in range(forest.n_classes)
    ]
    if instr_block_idx == 0:
        results = [get_fdtype_const(0.0, use_fp64) for _ in range(forest.n_classes)]
    else:  # the change: carry on from the running totals
        results = [builder.load(ptr) for ptr in result_ptrs]
    for func in tree_funcs:
        tree_result = builder.call(func.llvm_function, args)
        results[func.class_id] = builder.fadd(results[func.class_id], tree_result)
    for result, ptr in zip(results, result_ptrs, strict=True):
        builder.store(result, ptr)
    builder.store(builder.add(loop_iter_reg, lconst(1)), loop_iter)
    builder.branch(condition_block)
