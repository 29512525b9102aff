"""q8bert: int8 BERT inference through the q8bert C library (ctypes).

The library is looked up in this order: $Q8BERT_LIBRARY (a path), the directory given by
``pkg-config --variable=libdir q8bert``, then the loader's search path (libq8bert.so.0).

    with q8bert.Model("model.q8b") as model:
        logits = model.classify(["a gripping, funny film."])   # numpy float32 [n, labels]

A Model may be shared by threads; the library releases the GIL during calls (ctypes does).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from ctypes import POINTER, c_char_p, c_float, c_int32, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Optional, Sequence

import numpy as np

__all__ = ["Model", "Q8bertError", "Status", "version", "library_path"]

ABI = 0


class Status:
    """Stable status codes (q8bert_status); the common ones by name."""

    OK = 0
    NULL_ARGUMENT = 1
    INVALID_ARGUMENT = 2
    BUFFER_TOO_SMALL = 3
    SEQUENCE_TOO_LONG = 4
    INVALID_UTF8 = 5
    TOKEN_OUT_OF_RANGE = 6
    UNSUPPORTED_OPTIONS = 7
    KERNEL_UNAVAILABLE = 8
    UNSUPPORTED_OPERATION = 9
    IO = 100
    BAD_MAGIC = 201
    CHECKSUM_MISMATCH = 221
    OUT_OF_MEMORY = 300


HEAD_CLASSIFICATION, HEAD_REGRESSION, HEAD_EMBEDDING, HEAD_TOKEN_STATES = 1, 2, 3, 4
FLAG_VERIFY_CHECKSUM, FLAG_TRUNCATE = 1, 2


class Q8bertError(Exception):
    """A failure reported by the library: ``status`` (int) and ``message`` (its detail)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{message} (status {status})")
        self.status = status
        self.message = message


class _Options(ctypes.Structure):
    _fields_ = [(n, c_uint32) for n in ("struct_size", "num_threads", "kernel", "flags", "max_seq_len")]


class _Info(ctypes.Structure):
    _fields_ = [(n, c_uint32) for n in (
        "struct_size", "head_kind", "output_dim", "max_seq_len", "vocab_size", "hidden_size",
        "num_layers", "num_heads", "intermediate_size", "num_labels", "kernel", "num_threads")] + [
        ("file_size", c_uint64), ("max_text_tokens", c_uint32)]


def _find_library() -> str:
    env = os.environ.get("Q8BERT_LIBRARY")
    if env:
        return env
    if shutil.which("pkg-config"):
        r = subprocess.run(["pkg-config", "--variable=libdir", "q8bert"], capture_output=True, text=True)
        cand = os.path.join(r.stdout.strip(), f"libq8bert.so.{ABI}")
        if r.returncode == 0 and os.path.exists(cand):
            return cand
    return f"libq8bert.so.{ABI}"


def _load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    P = POINTER
    M = c_void_p  # q8bert_model*, opaque
    sigs = {
        "q8bert_options_init": (None, [P(_Options)]),
        "q8bert_create": (c_uint32, [c_char_p, P(_Options), P(M)]),
        "q8bert_create_from_memory": (c_uint32, [c_void_p, c_size_t, P(_Options), P(M)]),
        "q8bert_model_info": (c_uint32, [M, P(_Info)]),
        "q8bert_output_len": (c_uint32, [M, c_size_t, c_size_t, P(c_size_t)]),
        "q8bert_run": (c_uint32, [M, P(c_int32), P(c_int32), P(c_int32), c_size_t, c_size_t, P(c_float), c_size_t]),
        "q8bert_tokenize": (c_uint32, [M, c_char_p, c_char_p, P(c_int32), P(c_int32), c_size_t, P(c_size_t)]),
        "q8bert_tokenize_ex": (c_uint32, [M, c_char_p, c_char_p, c_size_t, c_uint32, P(c_int32), P(c_int32), c_size_t,
                                          P(c_size_t), P(c_size_t)]),
        "q8bert_text_output_len": (c_uint32, [M, c_size_t, P(c_size_t)]),
        "q8bert_run_text": (c_uint32, [M, P(c_char_p), P(c_char_p), c_size_t, P(c_float), c_size_t]),
        "q8bert_label_name": (c_char_p, [M, c_size_t]),
        "q8bert_free": (None, [M]),
        "q8bert_status_string": (c_char_p, [c_uint32]),
        "q8bert_kernel_name": (c_char_p, [c_uint32]),
        "q8bert_last_error": (c_char_p, []),
        "q8bert_version": (c_char_p, []),
        "q8bert_version_number": (c_uint32, []),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


library_path = _find_library()
_lib = _load(library_path)


def version() -> str:
    return _lib.q8bert_version().decode()


def _check(status: int) -> None:
    # q8bert_last_error is per OS thread; ctypes calls run on the calling Python thread, so it
    # still describes this call's failure here.
    if status != Status.OK:
        raise Q8bertError(status, _lib.q8bert_last_error().decode("utf-8", "replace"))


def _texts(texts: Sequence[str]):
    enc = [t.encode("utf-8", "surrogatepass") if isinstance(t, str) else bytes(t) for t in texts]
    if any(b"\0" in e for e in enc):
        raise Q8bertError(Status.INVALID_ARGUMENT, "text contains a NUL character")
    return (c_char_p * len(enc))(*enc)


def _f32(a: np.ndarray):
    return a.ctypes.data_as(POINTER(c_float))


def _i32(a: Optional[np.ndarray]):
    return None if a is None else a.ctypes.data_as(POINTER(c_int32))


class Model:
    """A loaded .q8b model (memory-mapped). Close it with close() or a with block."""

    def __init__(self, path: str | os.PathLike, *, num_threads: int = 0, kernel: int = 0, truncate: bool = False,
                 verify_checksum: bool = False, max_seq_len: int = 0):
        opts = _Options()
        _lib.q8bert_options_init(ctypes.byref(opts))
        opts.num_threads, opts.kernel, opts.max_seq_len = num_threads, kernel, max_seq_len
        opts.flags = (FLAG_TRUNCATE if truncate else 0) | (FLAG_VERIFY_CHECKSUM if verify_checksum else 0)
        handle = c_void_p()
        _check(_lib.q8bert_create(os.fsencode(path), ctypes.byref(opts), ctypes.byref(handle)))
        self._handle = handle
        # Calls in flight are counted so close() never frees a model another thread is using.
        self._cond = threading.Condition()
        self._active = 0
        info = _Info()
        _check(_lib.q8bert_model_info(handle, ctypes.byref(info)))
        self.info = {name: getattr(info, name) for name, _ in _Info._fields_}
        self.labels = [_lib.q8bert_label_name(handle, i).decode() for i in range(info.num_labels)] \
            if info.head_kind == HEAD_CLASSIFICATION else []

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Frees the model after calls in progress finish; closing twice is a no-op."""
        cond = getattr(self, "_cond", None)
        if cond is None:
            return
        with cond:
            cond.wait_for(lambda: self._active == 0)
            if self._handle is not None:
                _lib.q8bert_free(self._handle)
                self._handle = None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a safety net only: close() explicitly
        try:
            self.close()
        except Exception:
            pass

    def _acquire(self):
        with self._cond:
            if self._handle is None:
                raise Q8bertError(Status.INVALID_ARGUMENT, "model is closed")
            self._active += 1
            return self._handle

    def _release(self):
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    # -- calls ----------------------------------------------------------------------------------
    def run_text(self, texts: Sequence[str], pairs: Optional[Sequence[str]] = None) -> np.ndarray:
        """Per text: logits, score or embedding, as float32 [len(texts), output_dim]."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, not a str")
        n = len(texts)
        if pairs is not None and len(pairs) != n:
            raise Q8bertError(Status.INVALID_ARGUMENT, f"{n} texts but {len(pairs)} pair texts")
        if n == 0:
            return np.zeros((0, self.info["output_dim"]), dtype=np.float32)
        a = _texts(texts)
        b = None if pairs is None else _texts(pairs)
        h = self._acquire()
        try:
            need = c_size_t()
            _check(_lib.q8bert_text_output_len(h, n, ctypes.byref(need)))
            out = np.empty(need.value, dtype=np.float32)
            _check(_lib.q8bert_run_text(h, a, b, n, _f32(out), need.value))
        finally:
            self._release()
        return out.reshape(n, -1)

    def classify(self, texts: Sequence[str], pairs: Optional[Sequence[str]] = None) -> np.ndarray:
        if self.info["head_kind"] not in (HEAD_CLASSIFICATION, HEAD_REGRESSION):
            raise Q8bertError(Status.UNSUPPORTED_OPERATION, "classify needs a classification or regression model")
        return self.run_text(texts, pairs)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.info["head_kind"] != HEAD_EMBEDDING:
            raise Q8bertError(Status.UNSUPPORTED_OPERATION, "embed needs an embedding model")
        return self.run_text(texts)

    def run(self, ids, token_type_ids=None, attention_mask=None) -> np.ndarray:
        """Token ids [batch, seq_len] in; the flat float32 output out."""
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        if ids.ndim == 1:
            ids = ids[None, :]
        if ids.ndim != 2 or ids.size == 0:
            raise Q8bertError(Status.INVALID_ARGUMENT, "ids must be a non-empty [batch, seq_len] array")
        extra = [None if x is None else np.ascontiguousarray(x, dtype=np.int32).reshape(ids.shape)
                 for x in (token_type_ids, attention_mask)]
        batch, seq_len = ids.shape
        h = self._acquire()
        try:
            need = c_size_t()
            _check(_lib.q8bert_output_len(h, batch, seq_len, ctypes.byref(need)))
            out = np.empty(need.value, dtype=np.float32)
            _check(_lib.q8bert_run(h, _i32(ids), _i32(extra[0]), _i32(extra[1]), batch, seq_len, _f32(out), need.value))
        finally:
            self._release()
        return out

    def tokenize(self, text: str, pair: Optional[str] = None) -> np.ndarray:
        a = _texts([text])[0]
        b = None if pair is None else _texts([pair])[0]
        cap = self.info["max_text_tokens"]
        ids = np.empty(cap, dtype=np.int32)
        n = c_size_t()
        h = self._acquire()
        try:
            _check(_lib.q8bert_tokenize(h, a, b, _i32(ids), None, cap, ctypes.byref(n)))
        finally:
            self._release()
        return ids[: n.value].copy()
