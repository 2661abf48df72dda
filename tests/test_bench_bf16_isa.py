"""benchmarks.training_bf16 reads the ISA and kernel names out of oneDNN's verbose output (no timing)."""

from __future__ import annotations

from benchmarks.training_bf16 import parse_onednn_verbose

VERBOSE = """\
onednn_verbose,v1,info,oneDNN v3.12.0 (commit 80afa71049cd69a3df32adcccb623b12cd7baa22)
onednn_verbose,v1,info,cpu,runtime:OpenMP,nthr:2
onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with AVX512BW, AVX512VL, AVX512DQ, AVX512_BF16 and Intel AMX
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:bf16::blocked:acdb::f0 dst:bf16::blocked:AcdB64a2b::f0,,,64x32x5x5,10.1
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core_amx,forward_training,src:bf16::blocked:acdb::f0,,alg:convolution_direct,mb8_ic32oc64,12.2
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core_amx,forward_training,src:bf16,,,mb8,12.0
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_bf16,undef,src:bf16::blocked:ab::f0,,,64x256:256x128,10.5
some other line
"""


def test_parse_onednn_verbose() -> None:
    isa, impls = parse_onednn_verbose(VERBOSE)
    assert isa == "Intel AVX-512 with AVX512BW, AVX512VL, AVX512DQ, AVX512_BF16 and Intel AMX"
    assert impls == {"convolution": ["brg_conv_fwd:avx512_core_amx"], "matmul": ["brg_matmul:avx512_core_bf16"]}
    assert parse_onednn_verbose("no verbose here") == ("", {})
