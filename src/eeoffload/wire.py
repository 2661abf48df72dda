"""What goes on the wire: the partition tensor of one offloaded sample, encoded as bytes.

Paper section IV-E charges an offloaded sample ``bytes * 8 / uplink rate`` with bytes = elements x
4 (float32). Here the tensor is actually serialised, so the bytes are counted, not assumed:

- ``fp32``: the tensor as little-endian float32 (4 bytes per element, today's model);
- ``fp16``: rounded to IEEE half precision (2 bytes per element);
- ``int8``: per-tensor affine quantisation to 8 bits, q = round((x - lo) / scale) with
  scale = (hi - lo) / 255 (lo, hi = min, max of the tensor), decoded as lo + q * scale
  (1 byte per element; the usual asymmetric uint8 scheme of Jacob et al., CVPR 2018, with one
  scale per tensor). The partition tensor follows a ReLU, so lo is usually 0.

Optionally the encoded elements are compressed with a general-purpose compressor (``zlib``,
level 6, from the Python standard library). A payload is self-describing: a fixed 24-byte header
(magic, encoding, compressor, ndim, scale, offset), the shape (4 bytes per dimension), then the
(possibly compressed) elements. Pure functions over numpy arrays; no I/O.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

ENCODINGS = ("fp32", "fp16", "int8")
COMPRESSORS = ("none", "zlib")
BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "int8": 1}
MAGIC = b"EEW1"
_HEADER = struct.Struct("<4sBBHdd")  # magic, encoding, compressor, ndim, scale, offset: 24 bytes
HEADER_BYTES = _HEADER.size
ZLIB_LEVEL = 6


class WireError(ValueError):
    """An unknown encoding or compressor, or a payload that is not one this module wrote."""


def check_encoding(encoding: str, compressor: str = "none") -> None:
    """WireError naming the bad value and the allowed ones."""
    if encoding not in ENCODINGS:
        raise WireError(f"unknown encoding {encoding!r}; allowed: {' | '.join(ENCODINGS)}")
    if compressor not in COMPRESSORS:
        raise WireError(f"unknown compressor {compressor!r}; allowed: {' | '.join(COMPRESSORS)}")


def uncompressed_bytes(n_elements: int, ndim: int, encoding: str) -> int:
    """Payload length without compression: header + shape + elements x bytes per element."""
    check_encoding(encoding)
    return HEADER_BYTES + 4 * ndim + n_elements * BYTES_PER_ELEMENT[encoding]


def _quantise(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    lo, hi = float(x.min()) if x.size else 0.0, float(x.max()) if x.size else 0.0
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    q = np.clip(np.rint((x - lo) / scale), 0, 255).astype(np.uint8)
    return q, scale, lo


def encode(tensor: np.ndarray, encoding: str = "fp32", compressor: str = "none") -> bytes:
    """The payload of one tensor (any shape) under ``encoding`` and ``compressor``."""
    check_encoding(encoding, compressor)
    x = np.ascontiguousarray(tensor, dtype=np.float32)
    scale, offset = 1.0, 0.0
    if encoding == "fp32":
        body = x.astype("<f4").tobytes()
    elif encoding == "fp16":
        body = x.astype("<f2").tobytes()
    else:
        q, scale, offset = _quantise(x)
        body = q.tobytes()
    if compressor == "zlib":
        body = zlib.compress(body, ZLIB_LEVEL)
    head = _HEADER.pack(MAGIC, ENCODINGS.index(encoding), COMPRESSORS.index(compressor), x.ndim, scale, offset)
    return head + struct.pack(f"<{x.ndim}I", *x.shape) + body


@dataclass(frozen=True)
class Decoded:
    tensor: np.ndarray  # float32, the shape that was encoded
    encoding: str
    compressor: str


def decode(payload: bytes) -> Decoded:
    """Inverse of :func:`encode` (lossy for fp16 and int8); WireError for anything else."""
    if len(payload) < HEADER_BYTES:
        raise WireError(f"payload of {len(payload)} bytes is shorter than the {HEADER_BYTES}-byte header")
    magic, enc, comp, ndim, scale, offset = _HEADER.unpack_from(payload)
    if magic != MAGIC or enc >= len(ENCODINGS) or comp >= len(COMPRESSORS) or ndim > 8:
        raise WireError("payload header is not an eeoffload.wire header")
    shape_end = HEADER_BYTES + 4 * ndim
    if len(payload) < shape_end:
        raise WireError("payload truncated inside the shape")
    shape = struct.unpack_from(f"<{ndim}I", payload, HEADER_BYTES)
    encoding, compressor = ENCODINGS[enc], COMPRESSORS[comp]
    body = payload[shape_end:]
    if compressor == "zlib":
        try:
            body = zlib.decompress(body)
        except zlib.error as e:
            raise WireError(f"payload body is not zlib data: {e}") from None
    n = int(np.prod(shape, dtype=np.int64))
    if len(body) != n * BYTES_PER_ELEMENT[encoding]:
        raise WireError(f"payload body has {len(body)} bytes, shape {tuple(shape)} needs "
                        f"{n * BYTES_PER_ELEMENT[encoding]} ({encoding})")
    if encoding == "fp32":
        x = np.frombuffer(body, dtype="<f4")
    elif encoding == "fp16":
        x = np.frombuffer(body, dtype="<f2").astype(np.float32)
    else:
        x = (offset + np.frombuffer(body, dtype=np.uint8).astype(np.float64) * scale).astype(np.float32)
    return Decoded(x.reshape(shape).astype(np.float32, copy=False), encoding, compressor)


def roundtrip(tensor: np.ndarray, encoding: str, compressor: str = "none") -> tuple[np.ndarray, int]:
    """(decoded tensor, payload bytes): what the cloud sees of ``tensor`` and what it cost."""
    payload = encode(tensor, encoding, compressor)
    return decode(payload).tensor, len(payload)
