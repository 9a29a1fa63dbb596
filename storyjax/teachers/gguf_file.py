"""A GGUF file's metadata and tensors, read lazily from a memory map.

Why not `gguf.GGUFReader`: it turns every element of every metadata array into numpy objects up front,
so a 262,144-token vocabulary (Gemma-3) costs ~0.7 GB of host memory before a single weight is read,
more than the 270M model's weights in bf16. Here the header is parsed once into plain Python values and
tensors are sliced from the map by rows when asked; dequantizing is still the `gguf` package's.

Layout (GGUF v2/v3, little-endian): b"GGUF", version u32, tensor count u64, metadata count u64; each
metadata entry is a string key, a u32 value type and the value (arrays: element type u32, count u64,
elements); each tensor entry is a string name, dims u32, that many u64 sizes (fastest axis first), a
u32 ggml type and a u64 offset into the data section, which starts at the next multiple of
`general.alignment` (32 by default) after the entries.
"""

from __future__ import annotations

import mmap
import os
import struct

import numpy as np

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFFile:
    """`metadata` ({key: value}; arrays as lists), `tensors` ({name: (shape in numpy order, ggml type,
    byte offset, byte size)}), `rows(name, r0, r1)` (float32, dequantized), `release(name)`."""

    def __init__(self, path: str):
        self.path, self.size = path, os.path.getsize(path)
        with open(path, "rb") as f:
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self._parse()
        except (struct.error, IndexError, ValueError, UnicodeDecodeError, OverflowError) as e:
            self.map.close()
            raise ValueError(f"the weights file {path} ({self.size:,} bytes) cannot be read as GGUF ({e}): it is "
                             "probably truncated (an interrupted download or copy); download it again and check its "
                             "size against the source.") from None

    def _take(self, fmt: str):
        value = struct.unpack_from(fmt, self.map, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        n = self._take("<Q")
        if self.pos + n > self.size:
            raise ValueError("a string runs past the end of the file")
        text = self.map[self.pos:self.pos + n].decode("utf-8", errors="replace")
        self.pos += n
        return text

    def _value(self, kind: int):
        if kind == _STRING:
            return self._string()
        if kind == _ARRAY:
            inner, count = self._take("<I"), self._take("<Q")
            if inner in _SCALARS:  # one numpy read for a whole array of numbers (scores, token types)
                width = struct.calcsize(_SCALARS[inner])
                if self.pos + count * width > self.size:
                    raise ValueError("an array runs past the end of the file")
                values = np.frombuffer(self.map, _SCALARS[inner], count, self.pos).tolist()
                self.pos += count * width
                return values
            return [self._value(inner) for _ in range(count)]
        if kind not in _SCALARS:
            raise ValueError(f"unknown metadata type {kind}")
        return self._take(_SCALARS[kind])

    def _parse(self) -> None:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
        if self.map[:4] != b"GGUF":
            raise ValueError(f"it starts with {bytes(self.map[:4])!r}, not b'GGUF'")
        self.pos = 4
        version, n_tensors, n_meta = self._take("<I"), self._take("<Q"), self._take("<Q")
        if version < 2:
            raise ValueError(f"GGUF version {version} predates 64-bit counts; convert it with a current llama.cpp")
        self.metadata = {}
        for _ in range(n_meta):
            key = self._string()
            self.metadata[key] = self._value(self._take("<I"))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            dims = [self._take("<Q") for _ in range(self._take("<I"))]
            infos.append((name, dims, self._take("<I"), self._take("<Q")))
        align = int(self.metadata.get("general.alignment", 32))
        start = -(-self.pos // align) * align
        self.tensors = {}
        for name, dims, kind, offset in infos:
            qtype = GGMLQuantizationType(kind)
            block, nbytes_per_block = GGML_QUANT_SIZES[qtype]
            count = int(np.prod(dims)) if dims else 1
            nbytes = count // block * nbytes_per_block
            if start + offset + nbytes > self.size:
                raise ValueError(f"tensor {name} ends at byte {start + offset + nbytes:,}, past the end")
            self.tensors[name] = (tuple(int(d) for d in reversed(dims)), qtype, start + offset, nbytes)

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def shape(self, name: str) -> tuple:
        return self.tensors[name][0]

    def rows(self, name: str, r0: int, r1: int) -> np.ndarray:
        """Rows r0:r1 of the tensor (its first numpy axis), dequantized to float32."""
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
        from gguf.quants import dequantize
        shape, qtype, offset, nbytes = self.tensors[name]
        row_bytes = nbytes // shape[0]
        raw = np.frombuffer(self.map, np.uint8, (r1 - r0) * row_bytes, offset + r0 * row_bytes)
        if qtype == GGMLQuantizationType.F32:
            return raw.view(np.float32).reshape((r1 - r0,) + shape[1:]).copy()
        if qtype == GGMLQuantizationType.F16:
            return raw.view(np.float16).astype(np.float32).reshape((r1 - r0,) + shape[1:])
        block, per_block = GGML_QUANT_SIZES[qtype]
        rows = raw.reshape((r1 - r0,) + shape[1:-1] + (shape[-1] // block * per_block,))
        try:
            return np.asarray(dequantize(rows, qtype), np.float32).reshape((r1 - r0,) + shape[1:])
        except NotImplementedError as e:
            raise ValueError(f"{self.path}: tensor {name} is quantized as {qtype.name}, which the gguf package cannot "
                             f"dequantize ({e}); use a Q4_0/Q4_1/Q5/Q8_0/K-quant/F16 file.") from None

    def release(self, name: str) -> None:
        """Gives the tensor's pages of the map back: read once, they would otherwise count as the process's
        memory until the file is closed."""
        _, _, offset, nbytes = self.tensors[name]
        start = offset // mmap.PAGESIZE * mmap.PAGESIZE
        end = min(self.size, offset + nbytes)
        if hasattr(self.map, "madvise") and end > start:
            self.map.madvise(mmap.MADV_DONTNEED, start, end - start)

    def close(self) -> None:
        self.map.close()


def check_gguf_magic(path: str) -> None:
    """A file named .gguf that is not GGUF is refused at once (its first bytes); a truncated one is found when
    its tensor table is read, as the teacher is built, still before any other work."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(f"the weights file {path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'): point "
                         "teacher.jax.weights / judge.jax.weights at the model's .gguf, or at a Hugging Face folder.")
