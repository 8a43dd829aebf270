"""A restricted unpickler: pickled numpy arrays and plain Python values, nothing that runs code.

The CIFAR batch files, BiP's LMDB values and EKG's released weights are pickles. A pickle can name any
importable callable; this unpickler only resolves the few globals that numpy arrays need.
"""

from __future__ import annotations

import io
import pickle

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # Python 3 pickles of bytes at protocol 2 use it
    ("collections", "OrderedDict"),
}


class ForbiddenPickleError(pickle.UnpicklingError):
    pass


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise ForbiddenPickleError(
                f"refusing to load {module}.{name}: only numpy arrays and plain values are allowed"
            )
        return super().find_class(module, name)


def loads(data: bytes, encoding: str = "ASCII"):
    """`pickle.loads` restricted to numpy arrays and builtin values."""
    return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()


def load(file, encoding: str = "ASCII"):
    return RestrictedUnpickler(file, encoding=encoding).load()
