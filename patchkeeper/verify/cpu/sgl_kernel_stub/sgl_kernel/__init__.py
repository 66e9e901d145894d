"""A CPU stand-in for `sgl_kernel`, for SGLang's CPU path on a host without its CPU ops.

PyPI's sgl-kernel is CUDA-only. With `SGLANG_USE_CPU_ENGINE=1` sglang imports a few
`*_cpu` functions from it unconditionally (KV-cache slot bookkeeping and the
speculative-decoding helpers); everything dense falls back to native torch when the
host has no AMX. This package supplies just those functions, in plain torch (the two
tree kernels reuse sglang's own Triton kernels, run under `TRITON_INTERPRET=1`). Any
other attribute raises AttributeError, so sglang's `try: import ... except` fallbacks
engage instead of calling a stand-in that does not exist.

Put the directory holding this package first on PYTHONPATH. The signatures follow the
call sites of one sglang release; importing this with another release fails loudly.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from importlib import metadata
from typing import Any

SGLANG_VERSION = "0.5.23"
__version__ = "0.0.0+patchkeeper.cpu.stub"

_found = metadata.version("sglang")
if _found != SGLANG_VERSION:
    raise ImportError(
        f"patchkeeper's sgl_kernel CPU stand-in is written for sglang {SGLANG_VERSION}, "
        f"found sglang {_found}: check the *_cpu call sites and update the stand-in"
    )

# After the version check: a wrong sglang must fail first.
import torch  # type: ignore[import-not-found]  # noqa: E402

__all__ = [
    "assign_draft_cache_locs_contiguous_cpu",
    "assign_extend_cache_locs_cpu",
    "assign_req_to_token_pool_cpu",
    "build_tree_kernel_efficient_cpu",
    "copy_all_layer_kv_cache_cpu",
    "fill_accept_out_cache_loc_cpu",
    "fill_bonus_tokens_cpu",
    "verify_tree_greedy_cpu",
]


def _ints(tensor: torch.Tensor) -> list[int]:
    return [int(x) for x in tensor.reshape(-1).tolist()]


def copy_all_layer_kv_cache_cpu(
    data_ptrs: torch.Tensor, strides: torch.Tensor, tgt_loc: torch.Tensor, src_loc: torch.Tensor
) -> None:
    """For every buffer (base address, row bytes): row tgt_loc[i] = row src_loc[i].

    All source rows are read before any is written, as the tiled Triton kernel does,
    so overlapping source and target sets are safe.
    """
    sources, targets = _ints(src_loc), _ints(tgt_loc)
    for base, stride in zip(_ints(data_ptrs), _ints(strides), strict=True):
        rows = [ctypes.string_at(base + s * stride, stride) for s in sources]
        for t, row in zip(targets, rows, strict=True):
            ctypes.memmove(base + t * stride, row, stride)


def _spans(
    req_pool_indices: torch.Tensor, start_offset: torch.Tensor, end_offset: torch.Tensor
) -> Iterator[tuple[int, slice, slice]]:
    """Per request: its row, its [start, end) columns, and its slice of the packed buffer."""
    offset = 0
    for req, start, end in zip(
        _ints(req_pool_indices), _ints(start_offset), _ints(end_offset), strict=True
    ):
        yield req, slice(start, end), slice(offset, offset + end - start)
        offset += end - start


def assign_req_to_token_pool_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    start_offset: torch.Tensor,
    end_offset: torch.Tensor,
    out_cache_loc: torch.Tensor,
    pool_len: int,
) -> None:
    """req_to_token[req, start:end] = the next end - start entries of out_cache_loc."""
    del pool_len
    for req, span, packed in _spans(req_pool_indices, start_offset, end_offset):
        req_to_token[req, span] = out_cache_loc[packed].to(req_to_token.dtype)


def assign_extend_cache_locs_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    start_offset: torch.Tensor,
    end_offset: torch.Tensor,
    out_cache_loc: torch.Tensor,
    pool_len: int,
) -> None:
    """The inverse: out_cache_loc, packed, gets req_to_token[req, start:end] per request."""
    del pool_len
    for req, span, packed in _spans(req_pool_indices, start_offset, end_offset):
        out_cache_loc[packed] = req_to_token[req, span].to(out_cache_loc.dtype)


def assign_draft_cache_locs_contiguous_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    seq_lens: torch.Tensor,
    out_cache_loc: torch.Tensor,
    pool_len: int,
    topk: int,
    num_cols: int,
) -> None:
    """Request i's topk * num_cols slots from seq_lens[i] on, into out_cache_loc's i-th run."""
    del pool_len
    n = topk * num_cols
    for i, (req, start) in enumerate(zip(_ints(req_pool_indices), _ints(seq_lens), strict=True)):
        out_cache_loc[i * n : (i + 1) * n] = req_to_token[req, start : start + n].to(
            out_cache_loc.dtype
        )


def fill_bonus_tokens_cpu(
    accept_tokens: torch.Tensor,
    accept_lens: torch.Tensor,
    bonus_tokens: torch.Tensor,
    accept_stride: int,
) -> None:
    """bonus_tokens[i] = the last accepted token of request i (accept_lens counts it)."""
    flat = accept_tokens.reshape(-1)
    for i, length in enumerate(_ints(accept_lens)):
        bonus_tokens[i] = flat[accept_stride * i + length - 1]


def fill_accept_out_cache_loc_cpu(
    accept_index: torch.Tensor, out_cache_loc: torch.Tensor, accept_out_cache_loc: torch.Tensor
) -> None:
    """Pack out_cache_loc[j] for every accepted index j (those not -1), in order."""
    index = accept_index.reshape(-1)
    kept = index[index != -1].to(torch.long)
    accept_out_cache_loc[: kept.numel()] = out_cache_loc[kept].to(accept_out_cache_loc.dtype)


def build_tree_kernel_efficient_cpu(*args: Any, **kwargs: Any) -> None:
    """sglang's own Triton tree builder (the XPU path), in the Triton interpreter."""
    from sglang.kernels.ops.speculative.spec_tree import (  # type: ignore[import-not-found]
        sgl_build_tree_kernel_triton,
    )

    sgl_build_tree_kernel_triton(*args, **kwargs)


def verify_tree_greedy_cpu(
    *,
    predicts: torch.Tensor,
    accept_index: torch.Tensor,
    accept_token_num: torch.Tensor,
    candidates: torch.Tensor,
    retrive_index: torch.Tensor,
    retrive_next_token: torch.Tensor,
    retrive_next_sibling: torch.Tensor,
    target_predict: torch.Tensor,
) -> None:
    """sglang's own Triton greedy verification (the XPU path), in the Triton interpreter."""
    from sglang.kernels.ops.speculative.spec_tree import (
        verify_tree_greedy_triton,
    )

    verify_tree_greedy_triton(
        predicts=predicts,
        accept_index=accept_index,
        accept_token_num=accept_token_num,
        candidates=candidates,
        retrieve_index=retrive_index,
        retrieve_next_token=retrive_next_token,
        retrieve_next_sibling=retrive_next_sibling,
        target_predict=target_predict,
    )


def __getattr__(name: str) -> Any:
    # Anything else (flash-attn, MoE, quant, CUDA ops...) does not exist on this host.
    raise AttributeError(f"sgl_kernel CPU stand-in has no {name!r} (not available on CPU)")
