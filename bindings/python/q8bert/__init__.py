"""q8bert: int8 BERT inference for Python, on the q8bert C library (bound with ctypes).

    import q8bert
    with q8bert.Model("minilm.q8b") as model:
        vectors = model.encode(["a gripping, funny film.", "dull"], normalize_embeddings=True)

    with q8bert.Model("sst2.q8b", truncate=True) as model:
        model.classify(["a gripping, funny film."])      # ['positive']
        model.predict(["a gripping, funny film."])       # float32 logits [1, num_labels]

Which library is loaded, in this order:
  1. ``$Q8BERT_LIBRARY`` (a path): an override, for a development build or a system copy;
  2. the library inside this package (``q8bert/_libq8bert*.so``, put there by the wheel build);
  3. the directory given by ``pkg-config --variable=libdir q8bert`` (a ``scripts/install.sh`` copy);
  4. ``libq8bert.so.0`` on the loader's search path.
The bundled library must be exactly the package's version; another library must have the same
major.minor (a 0.x minor is a breaking change), else the import fails and says which file it found.

A Model may be shared by threads: ctypes releases the GIL during each library call, and
``close()`` waits for calls in flight.
"""

from __future__ import annotations

import array
import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from ctypes import POINTER, c_char_p, c_int32, c_size_t, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["Model", "ModelInfo", "Q8bertError", "Status", "version", "library_path", "library_source",
           "__version__"]

ABI = 0
_HERE = os.path.dirname(os.path.abspath(__file__))


class Status:
    """Stable status codes (``q8bert_status`` in q8bert.h); the common ones by name."""

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
_HEAD_NAMES = {1: "classification", 2: "regression", 3: "embedding", 4: "token_states"}
_ACTIVATION_NAMES = {0: "static", 1: "per_row", 2: "mixed"}  # Q8BERT_ACTIVATIONS_*
FLAG_VERIFY_CHECKSUM, FLAG_TRUNCATE, FLAG_NO_TRUNCATE, FLAG_HUGE_PAGES = 1, 2, 4, 8


class Q8bertError(Exception):
    """A failure reported by the library (or a call the binding refused before reaching it).

    ``status`` is the library's status code (see :class:`Status`), ``message`` its detail text
    (``q8bert_last_error()``), ``status_name`` the library's static description of the status.
    """

    def __init__(self, status: int, message: str):
        super().__init__(f"{message} (status {status})")
        self.status = status
        self.message = message

    @property
    def status_name(self) -> str:
        return _lib.q8bert_status_string(self.status).decode()

    def __reduce__(self):  # pickles (Spark, multiprocessing) with status and message intact
        return (type(self), (self.status, self.message))


# -- the library ------------------------------------------------------------------------------

class _Options(ctypes.Structure):
    _fields_ = [(n, c_uint32) for n in ("struct_size", "num_threads", "kernel", "flags", "max_seq_len")]


class _Info(ctypes.Structure):
    _fields_ = [(n, c_uint32) for n in (
        "struct_size", "head_kind", "output_dim", "max_seq_len", "vocab_size", "hidden_size",
        "num_layers", "num_heads", "intermediate_size", "num_labels", "kernel", "num_threads")] + [
        ("file_size", c_uint64), ("max_text_tokens", c_uint32), ("activations", c_uint32)]


# q8bert_model_info writes the library's own q8bert_info, which may grow at its end in a later
# minor version; it is read through a buffer with room to spare.
_INFO_BUFFER_BYTES = 512


def _find_library() -> Tuple[str, str]:
    """(path or soname, where it came from)."""
    env = os.environ.get("Q8BERT_LIBRARY")
    if env:
        return env, "Q8BERT_LIBRARY"
    bundled = sorted(glob.glob(os.path.join(_HERE, "_libq8bert*.so")))
    if bundled:
        return bundled[0], "bundled"
    if shutil.which("pkg-config"):
        r = subprocess.run(["pkg-config", "--variable=libdir", "q8bert"], capture_output=True, text=True)
        cand = os.path.join(r.stdout.strip(), f"libq8bert.so.{ABI}")
        if r.returncode == 0 and os.path.exists(cand):
            return cand, "pkg-config"
    return f"libq8bert.so.{ABI}", "loader path"


def _load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    P = POINTER
    M = c_void_p  # q8bert_model*, opaque
    V = c_void_p  # buffers passed as addresses (numpy .ctypes.data): no per-call conversion cost
    sigs = {
        "q8bert_options_init": (None, [P(_Options)]),
        "q8bert_create": (c_uint32, [c_char_p, P(_Options), P(M)]),
        "q8bert_create_from_memory": (c_uint32, [c_void_p, c_size_t, P(_Options), P(M)]),
        "q8bert_model_info": (c_uint32, [M, c_void_p]),
        "q8bert_output_len": (c_uint32, [M, c_size_t, c_size_t, P(c_size_t)]),
        "q8bert_run": (c_uint32, [M, V, V, V, c_size_t, c_size_t, V, c_size_t]),
        "q8bert_tokenize": (c_uint32, [M, c_char_p, c_char_p, V, V, c_size_t, P(c_size_t)]),
        "q8bert_text_output_len": (c_uint32, [M, c_size_t, P(c_size_t)]),
        "q8bert_run_text": (c_uint32, [M, V, V, c_size_t, V, c_size_t]),
        "q8bert_label_name": (c_char_p, [M, c_size_t]),
        "q8bert_run_text_prompt": (c_uint32, [M, c_char_p, c_char_p, V, V, c_size_t, V, c_size_t]),
        "q8bert_prompt_count": (c_size_t, [M]),
        "q8bert_prompt_name": (c_char_p, [M, c_size_t]),
        "q8bert_prompt_text": (c_char_p, [M, c_size_t]),
        "q8bert_default_prompt_name": (c_char_p, [M]),
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


def _package_version() -> Optional[str]:
    """This package's installed version (from its metadata), or None when run from a source tree."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution
    except ImportError:  # Python < 3.8
        return None
    try:
        dist = distribution("q8bert")
    except PackageNotFoundError:
        return None
    # Only if that distribution is the one being imported (not another copy on sys.path).
    try:
        here = os.path.realpath(__file__)
        if not any(os.path.realpath(str(dist.locate_file(f))) == here for f in (dist.files or [])):
            return None
    except Exception:
        return None
    return dist.version


library_path, library_source = _find_library()
try:
    _lib = _load(library_path)
except OSError as e:
    raise ImportError(
        f"q8bert: cannot load the q8bert C library ({library_path}, from {library_source}): {e}. "
        "Install the wheel (pip install q8bert / ./bindings/python), set Q8BERT_LIBRARY to a "
        "libq8bert.so, or install the library (scripts/install.sh)") from e

_lib_version = _lib.q8bert_version().decode()
__version__ = _package_version() or _lib_version


def _check_library_version() -> None:
    pkg = _package_version()
    if library_source == "bundled":
        if pkg is not None and _lib_version != pkg:
            raise ImportError(f"q8bert: the bundled library {library_path} is version {_lib_version}, "
                              f"the package is {pkg}; reinstall the package")
        return
    if pkg is not None:
        want = tuple(pkg.split(".")[:2])
        if tuple(_lib_version.split(".")[:2]) != want:
            raise ImportError(
                f"q8bert: {library_path} (from {library_source}) is libq8bert {_lib_version}, this "
                f"package {pkg} needs {'.'.join(want)}.x; unset Q8BERT_LIBRARY to use the bundled one")


_check_library_version()
_run_text = _lib.q8bert_run_text

# The C hot path for text calls (q8bert/_calls.c), when the build compiled it; it calls the library
# loaded above through the address of its q8bert_run_text. Without it, every call goes through
# ctypes (same results, more per-call overhead).
_FALLBACK = -1  # what _calls.run_into returns when the ctypes path must take the call


class _Guard:
    """A model's address and its calls in flight, so that ``close()`` on one thread never frees
    a model another thread is running: ``enter()`` -> the address (None once closing) and
    ``leave()`` around each call; ``detach()`` -> None while calls are in flight (no new ones
    start), else the address to free, once (0 afterwards). ``q8bert._calls.Guard`` is the same
    in C (the hot path counts its own calls there); this one serves when it is not built."""

    __slots__ = ("_lock", "_address", "_active", "_closed")

    def __init__(self, address: int):
        self._lock = threading.Lock()
        self._address, self._active, self._closed = address, 0, False

    def enter(self) -> Optional[int]:
        with self._lock:
            if self._closed:
                return None
            self._active += 1
            return self._address

    def leave(self) -> None:
        with self._lock:
            if self._active > 0:
                self._active -= 1

    def detach(self) -> Optional[int]:
        with self._lock:
            self._closed = True
            if self._active:
                return None
            address, self._address = self._address, 0
            return address


try:
    from . import _calls

    _calls.setup(ctypes.cast(_run_text, c_void_p).value, ctypes.cast(_lib.q8bert_last_error, c_void_p).value,
                 Q8bertError, np.empty, np.dtype(np.float32))
    _c_run, _c_run_into, _NewGuard = _calls.run, _calls.run_into, _calls.Guard
except ImportError:
    _c_run = _c_run_into = None
    _NewGuard = _Guard


def version() -> str:
    """The loaded library's version string (``q8bert_version()``)."""
    return _lib_version


def _check(status: int) -> None:
    # q8bert_last_error is per OS thread; a ctypes call runs on the calling Python thread, so it
    # still describes this call's failure here.
    if status != Status.OK:
        raise Q8bertError(status, _lib.q8bert_last_error().decode("utf-8", "replace"))


# -- text packing -----------------------------------------------------------------------------

_PTR_CODE = "Q" if ctypes.sizeof(c_void_p) == 8 else "I"


_c_char = ctypes.c_char
_addressof = ctypes.addressof


def _c_string(s: str, what: str) -> bytes:
    """One str argument as NUL-terminated UTF-8 for ctypes (lone surrogates reach the library,
    which reports them as INVALID_UTF8, as for texts)."""
    if not isinstance(s, str):
        raise TypeError(f"{what} is {type(s).__name__}, not str")
    if "\0" in s:
        raise Q8bertError(Status.INVALID_ARGUMENT, f"{what} contains a NUL character")
    return s.encode("utf-8", "surrogatepass")


class _Packed:
    """Texts as one NUL-separated UTF-8 buffer plus an array of pointers into it (what
    ``const char *const *`` wants), built with a few C-speed operations instead of one ctypes
    object per text: one str join, one encode, one NUL count, one pointer array. Keeps the
    buffer alive for as long as the pointers are used."""

    __slots__ = ("buf", "ptrs", "addr")

    def __init__(self, texts: Sequence[Union[str, bytes]], what: str = "texts", index: Optional[List[int]] = None):
        """``index``: the caller's position of each text, for error messages (default: 0..n-1)."""
        if not isinstance(texts, (list, tuple)):
            texts = list(texts)
        n = len(texts)
        try:
            joined = "\0".join(texts)
        except TypeError:  # bytes among the texts, or not text at all
            joined = None
        if joined is not None:
            buf = joined.encode("utf-8", "surrogatepass") + b"\0"
            if joined.isascii():  # (O(1) in CPython) characters == bytes
                steps = [len(t) + 1 for t in texts[:-1]]
            else:  # only the non-ASCII texts are measured in bytes
                steps = [len(t) + 1 if t.isascii() else len(t.encode("utf-8", "surrogatepass")) + 1
                         for t in texts[:-1]]
        else:
            enc = []
            for i, t in enumerate(texts):
                if isinstance(t, str):
                    enc.append(t.encode("utf-8", "surrogatepass"))
                elif isinstance(t, (bytes, bytearray)):
                    enc.append(bytes(t))  # taken as UTF-8; the library checks it
                else:
                    raise TypeError(f"{what}[{i if index is None else index[i]}] is {type(t).__name__}, not str")
            buf = b"\0".join(enc) + b"\0"
            steps = [len(e) + 1 for e in enc[:-1]]
        if buf.count(b"\0") != n:
            i = next(i for i, t in enumerate(texts) if ("\0" if isinstance(t, str) else b"\0") in t)
            raise Q8bertError(Status.INVALID_ARGUMENT,
                              f"{what}[{i if index is None else index[i]}] contains a NUL character")
        # A ctypes copy of the buffer: its address comes from C calls only (the copy is a memcpy).
        buf = (_c_char * len(buf)).from_buffer_copy(buf)
        ptrs = array.array(_PTR_CODE, accumulate(steps, initial=_addressof(buf)))
        self.buf = buf
        self.ptrs = ptrs
        self.addr = ptrs.buffer_info()[0]


TextInput = Union[str, Tuple[str, str], List[str]]


def _split_pairs(texts: Sequence[TextInput], pairs: Optional[Sequence[str]]):
    """texts as a list of str, or of (a, b) pairs (the CrossEncoder habit); -> (a list, b list or None)."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a sequence of str, not a single str")
    if not isinstance(texts, (list, tuple)):
        texts = list(texts)
    if pairs is not None:
        if isinstance(pairs, (str, bytes)):
            raise TypeError("pairs must be a sequence of str, not a single str")
        if len(pairs) != len(texts):
            raise Q8bertError(Status.INVALID_ARGUMENT, f"{len(texts)} texts but {len(pairs)} pair texts")
        return texts, pairs
    if texts and isinstance(texts[0], (tuple, list)):
        if any(not isinstance(t, (tuple, list)) or len(t) != 2 for t in texts):
            raise TypeError("pairs must all be (text, text_pair) tuples")
        return [t[0] for t in texts], [t[1] for t in texts]
    return texts, None


def _normalized(out: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, in place (zero rows stay zero)."""
    norms = np.sqrt(np.einsum("ij,ij->i", out, out))
    np.maximum(norms, np.float32(1e-12), out=norms)
    out /= norms[:, None]
    return out


class _Progress:
    """A minimal progress line on stderr (tqdm when it is installed)."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.bar = None
        self.enabled = enabled
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm  # optional
            self.bar = tqdm(total=total, desc=desc, unit="text")
        except ImportError:
            self.total, self.done, self.desc = total, 0, desc

    def update(self, n: int) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
        else:
            self.done += n
            sys.stderr.write(f"\r{self.desc}: {self.done}/{self.total}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stderr.write("\n")


# -- the model --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelInfo:
    """Facts about a loaded model (``q8bert_model_info``)."""

    head: str                 # "classification", "regression", "embedding" or "token_states"
    head_kind: int
    output_dim: int           # floats per text (per token for token_states)
    max_seq_len: int          # the model's position limit
    max_text_tokens: int      # token limit for text input: the max_seq_len option, else the model's own
                              # (sentence-transformers max_seq_length, e.g. 256), else max_seq_len
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    num_labels: int
    kernel: str               # the kernel in use ("avx2", "scalar", ...)
    num_threads: int
    file_size: int
    activations: str          # how linear layers quantize inputs: "static", "per_row" or "mixed"
    labels: Tuple[str, ...] = field(default=())

    def __getitem__(self, key: str):  # dict-style access, as the 0.1 binding returned a dict
        return getattr(self, key)


class Model:
    """A loaded ``.q8b`` model (memory-mapped). Use it in a ``with`` block or call ``close()``.

    Args:
        path: the model file.
        num_threads: threads per library call; 0 = one per available core.
        kernel: a ``Q8BERT_KERNEL_*`` id; 0 = the fastest this CPU supports.
        truncate: ``True`` cuts texts longer than the token limit (longest first, as Hugging Face
            does); ``False`` raises ``Q8bertError`` with ``Status.SEQUENCE_TOO_LONG`` instead;
            ``None`` (default) lets the model decide: a sentence-transformers model that records
            its ``max_seq_length`` cuts there, as sentence-transformers does, others raise.
        verify_checksum: hash the whole file at load and check its checksum.
        max_seq_len: token limit for text input, special tokens included; 0 = the model's own
            (a sentence-transformers model's max_seq_length, else its position table).
        huge_pages: copy the model into this process's memory, in transparent huge pages on
            Linux, instead of mapping the file: a slower open and memory not shared with other
            processes, for up to 9% faster calls (BERT-base, one sequence of 32 tokens; 0-3% on
            batches; docs/PERFORMANCE.md).

    Raises:
        Q8bertError: the library's status and message (missing file, corrupt file, bad options).
    """

    def __init__(self, path: Union[str, os.PathLike], *, num_threads: int = 0, kernel: int = 0,
                 truncate: Optional[bool] = None, verify_checksum: bool = False, max_seq_len: int = 0,
                 huge_pages: bool = False):
        self._handle = None
        opts = _Options()
        _lib.q8bert_options_init(ctypes.byref(opts))
        opts.num_threads, opts.kernel, opts.max_seq_len = num_threads, kernel, max_seq_len
        truncation = {None: 0, True: FLAG_TRUNCATE, False: FLAG_NO_TRUNCATE}[None if truncate is None else bool(truncate)]
        opts.flags = (truncation | (FLAG_VERIFY_CHECKSUM if verify_checksum else 0)
                      | (FLAG_HUGE_PAGES if huge_pages else 0))
        handle = c_void_p()
        _check(_lib.q8bert_create(os.fsencode(path), ctypes.byref(opts), ctypes.byref(handle)))
        self._handle = handle.value
        self.path = os.fspath(path)
        # Calls in flight are counted so close() never frees a model another thread is using.
        self._guard = _NewGuard(self._handle)
        try:
            buf = ctypes.create_string_buffer(_INFO_BUFFER_BYTES)
            raw = _Info.from_buffer(buf)
            raw.struct_size = ctypes.sizeof(_Info)
            _check(_lib.q8bert_model_info(self._handle, ctypes.addressof(buf)))
            labels: Tuple[str, ...] = ()
            if raw.head_kind == HEAD_CLASSIFICATION:
                labels = tuple(_lib.q8bert_label_name(self._handle, i).decode() for i in range(raw.num_labels))
            self.info = ModelInfo(
                head=_HEAD_NAMES.get(raw.head_kind, str(raw.head_kind)), head_kind=raw.head_kind,
                output_dim=raw.output_dim, max_seq_len=raw.max_seq_len, max_text_tokens=raw.max_text_tokens,
                vocab_size=raw.vocab_size, hidden_size=raw.hidden_size, num_layers=raw.num_layers,
                num_heads=raw.num_heads, intermediate_size=raw.intermediate_size, num_labels=raw.num_labels,
                kernel=_lib.q8bert_kernel_name(raw.kernel).decode(), num_threads=raw.num_threads,
                file_size=raw.file_size, labels=labels,
                activations=_ACTIVATION_NAMES.get(raw.activations, str(raw.activations)))
        except BaseException:
            self.close()
            raise
        self.labels: List[str] = list(self.info.labels)
        # sentence-transformers' prompts (config_sentence_transformers.json), as its attributes.
        self.prompts: Dict[str, str] = {
            _lib.q8bert_prompt_name(self._handle, i).decode(): _lib.q8bert_prompt_text(self._handle, i).decode()
            for i in range(_lib.q8bert_prompt_count(self._handle))}
        default = _lib.q8bert_default_prompt_name(self._handle)
        self.default_prompt_name: Optional[str] = None if default is None else default.decode()
        # Floats per text from run_text (token-state models are padded to the token limit).
        self._per_text = self.info.output_dim * (self.info.max_text_tokens if raw.head_kind == HEAD_TOKEN_STATES else 1)
        self._head_kind = raw.head_kind

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Frees the model after calls in progress finish; closing twice is a no-op."""
        guard = getattr(self, "_guard", None)
        if guard is None:
            if getattr(self, "_handle", None) is not None:  # failed during __init__
                _lib.q8bert_free(self._handle)
                self._handle = None
            return
        delay = 0.0001
        while True:
            address = guard.detach()
            if address is not None:
                break
            time.sleep(delay)  # calls in flight on other threads: let them finish (polling, no Condition)
            delay = min(delay * 2, 0.01)
        if address:
            _lib.q8bert_free(address)
        self._handle = None

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a safety net only: close() explicitly
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else f"{self.info.head}, dim {self.info.output_dim}"
        return f"q8bert.Model({self.path!r}, {state})"

    def _acquire(self) -> int:
        h = self._guard.enter()
        if h is None:
            raise Q8bertError(Status.INVALID_ARGUMENT, "model is closed")
        return h

    def _release(self) -> None:
        self._guard.leave()

    # -- one library call -----------------------------------------------------------------------
    def _run_into(self, texts: Sequence, pairs: Optional[Sequence], out: np.ndarray,
                  index: Optional[List[int]] = None, prompt: Optional[Tuple[Optional[str], Optional[str]]] = None) -> None:
        """One ``q8bert_run_text`` call for ``texts`` (and ``pairs``) into ``out``: the C hot path,
        or ctypes when it is not built or the texts need it (the ctypes path raises the precise
        error for a non-str or a NUL; ``index`` names the caller's positions in that message).
        ``prompt`` = (name, text) for ``q8bert_run_text_prompt``; None: the model's default."""
        if prompt is None and _c_run_into is not None and _c_run_into(self._guard, texts, pairs, out) is None:
            return
        h = self._acquire()
        try:
            a = _Packed(texts, "texts", index)
            b = None if pairs is None else _Packed(pairs, "pairs", index)
            if prompt is None:
                status = _run_text(h, a.addr, None if b is None else b.addr, len(texts), out.ctypes.data, out.size)
            else:
                name, text = (None if p is None else _c_string(p, what) for p, what in zip(prompt, ("prompt_name", "prompt")))
                status = _lib.q8bert_run_text_prompt(h, name, text, a.addr, None if b is None else b.addr, len(texts),
                                                     out.ctypes.data, out.size)
        finally:
            self._release()
        if status:
            _check(status)

    def run_text(self, texts: Sequence[str], pairs: Optional[Sequence[str]] = None) -> np.ndarray:
        """All texts in ONE library call (``q8bert_run_text``; padded to the longest): per text the
        logits, score or embedding, float32 ``[len(texts), output_dim]``. ``encode``/``predict``
        split long inputs into length-sorted batches; this is the raw call."""
        if _c_run is not None:  # lists and tuples of str; None: anything else, for the checks below
            out = _c_run(self._guard, texts, pairs, self._per_text)
            if out is not None:
                return out
        if isinstance(texts, (str, bytes)):
            raise TypeError("texts must be a sequence of str, not a single str")
        n = len(texts)
        if pairs is not None and len(pairs) != n:
            raise Q8bertError(Status.INVALID_ARGUMENT, f"{n} texts but {len(pairs)} pair texts")
        out = np.empty((n, self._per_text), dtype=np.float32)
        if n:
            self._run_into(texts, pairs, out)
        return out

    def _batched(self, a: Sequence, b: Optional[Sequence], batch_size: int, show_progress_bar: bool,
                 desc: str, prompt: Optional[Tuple[Optional[str], Optional[str]]] = None) -> np.ndarray:
        """Length-sorted batches of ``batch_size`` (longest first, like sentence-transformers, so
        texts of similar length share a batch and padding wastes little), each one library call;
        rows come back in input order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        n = len(a)
        if n <= batch_size and prompt is None:  # one call, nothing to reorder
            out = self.run_text(a, b)
            if show_progress_bar:
                progress = _Progress(n, True, desc)
                progress.update(n)
                progress.close()
            return out
        out = np.empty((n, self._per_text), dtype=np.float32)
        try:
            if b is None:
                lengths = np.fromiter(map(len, a), dtype=np.int64, count=n)
            else:
                lengths = np.fromiter((len(x) + len(y) for x, y in zip(a, b)), dtype=np.int64, count=n)
        except TypeError:
            _Packed(a)  # raises the TypeError that names the bad text
            if b is not None:
                _Packed(b, "pairs")
            raise
        order = np.argsort(-lengths, kind="stable")
        progress = _Progress(n, show_progress_bar, desc)
        try:
            sorted_out = np.empty_like(out)
            idx = order.tolist()
            for start in range(0, n, batch_size):
                sel = idx[start:start + batch_size]
                try:
                    self._run_into([a[i] for i in sel], None if b is None else [b[i] for i in sel],
                                   sorted_out[start:start + len(sel)], sel, prompt)
                except Q8bertError as e:  # "text 3: ..." is 3 in this batch: name the caller's index
                    m = re.search(r"\btext (\d+): ", e.message)
                    if m and int(m.group(1)) < len(sel):
                        msg = f"{e.message[:m.start()]}texts[{sel[int(m.group(1))]}]: {e.message[m.end():]}"
                        raise Q8bertError(e.status, msg) from None
                    raise
                progress.update(len(sel))
            out[order] = sorted_out
            return out
        finally:
            progress.close()

    def _one_batch(self, texts, pairs, batch_size, show_progress_bar) -> Optional[np.ndarray]:
        """The common case in one C call, before any Python-level checks: a list or tuple of 1 to
        ``batch_size`` str (and ``pairs`` like it) with no progress bar. None: anything else,
        for the general path (which also raises the errors)."""
        if _c_run is None or show_progress_bar or type(texts) not in (list, tuple) or not 0 < len(texts) <= batch_size:
            return None
        return _c_run(self._guard, texts, pairs, self._per_text)

    # -- the sentence-transformers / transformers style API -------------------------------------
    def encode(self, sentences: Union[str, Sequence[str]], batch_size: int = 32, show_progress_bar: bool = False,
               normalize_embeddings: bool = False, convert_to_numpy: bool = True, *,
               prompt_name: Optional[str] = None, prompt: Optional[str] = None) -> np.ndarray:
        """Sentence embeddings, as sentence-transformers' ``SentenceTransformer.encode``.

        Args:
            sentences: a str (-> a 1-D array) or a sequence of str (-> ``[n, dim]``).
            batch_size: texts per library call; inputs are sorted by length into batches and
                the rows are returned in input order.
            show_progress_bar: a progress line on stderr (tqdm if installed).
            normalize_embeddings: scale each row to unit L2 norm (then dot product = cosine).
            convert_to_numpy: kept for sentence-transformers compatibility; always numpy.
            prompt_name: one of ``self.prompts`` (e.g. ``"query"`` for e5/bge-style models), put in
                front of every sentence; without it the model's ``default_prompt_name`` applies.
            prompt: the prompt text itself (wins over ``prompt_name``, as in
                sentence-transformers); ``""`` for no prompt at all.

        Returns:
            float32 numpy array.

        Raises:
            Q8bertError: ``UNSUPPORTED_OPERATION`` for a non-embedding model; the library's
                errors (e.g. ``SEQUENCE_TOO_LONG`` without ``truncate=True``).
        """
        if self._head_kind != HEAD_EMBEDDING:
            raise Q8bertError(Status.UNSUPPORTED_OPERATION,
                              f"encode needs an embedding model; this one is {self.info.head} (use predict/classify)")
        chosen = None
        if prompt is not None:
            if prompt_name is not None:
                warnings.warn("encode: give prompt or prompt_name, not both; using prompt", stacklevel=2)
            chosen = (None, prompt)
        elif prompt_name is not None:
            chosen = (prompt_name, None)
        if chosen is None:
            out = self._one_batch(sentences, None, batch_size, show_progress_bar)
            if out is not None:
                return _normalized(out) if normalize_embeddings else out
        single = isinstance(sentences, (str, bytes))
        texts = [sentences] if single else (sentences if isinstance(sentences, (list, tuple)) else list(sentences))
        out = self._batched(texts, None, batch_size, show_progress_bar, "encode", chosen)
        if normalize_embeddings and len(out):
            out = _normalized(out)
        return out[0] if single else out

    def get_sentence_embedding_dimension(self) -> Optional[int]:
        """Embedding size (sentence-transformers' name), or None for a non-embedding model."""
        return self.info.output_dim if self.info.head_kind == HEAD_EMBEDDING else None

    def predict(self, texts: Sequence[TextInput], pairs: Optional[Sequence[str]] = None, *, batch_size: int = 32,
                show_progress_bar: bool = False, apply_softmax: bool = False) -> np.ndarray:
        """Logits (classification) or scores (regression), float32 ``[n, num_labels]``, as
        sentence-transformers' ``CrossEncoder.predict``. ``texts`` may be str, or ``(text,
        text_pair)`` tuples; ``pairs`` is the other way to give the second texts. Batched and
        length-sorted like ``encode``; ``apply_softmax`` turns logits into probabilities."""
        if self._head_kind not in (HEAD_CLASSIFICATION, HEAD_REGRESSION):
            raise Q8bertError(Status.UNSUPPORTED_OPERATION,
                              f"predict needs a classification or regression model; this one is {self.info.head}")
        out = self._one_batch(texts, pairs, batch_size, show_progress_bar)
        if out is None:
            a, b = _split_pairs(texts, pairs)
            out = self._batched(a, b, batch_size, show_progress_bar, "predict")
        if apply_softmax and self._head_kind == HEAD_CLASSIFICATION and len(out):
            out = out - out.max(axis=1, keepdims=True)
            np.exp(out, out=out)
            out /= out.sum(axis=1, keepdims=True)
        return out

    def rank(self, query: str, documents: Sequence[str], *, top_k: Optional[int] = None,
             return_documents: bool = False, batch_size: int = 32, show_progress_bar: bool = False) -> List[dict]:
        """Documents ordered by a cross-encoder's score for ``(query, document)``, best first, as
        sentence-transformers' ``CrossEncoder.rank``: ``[{"corpus_id": i, "score": s}, ...]``
        (plus ``"text"`` with ``return_documents``), the first ``top_k`` only when given. Needs a
        model with one score per pair (a regression head: ms-marco style cross-encoders)."""
        if self._head_kind != HEAD_REGRESSION:
            raise Q8bertError(Status.UNSUPPORTED_OPERATION,
                              f"rank needs a cross-encoder with one score per pair (a regression head); this one is {self.info.head}")
        docs = list(documents)
        if not docs:
            return []
        scores = self.predict([query] * len(docs), docs, batch_size=batch_size,
                              show_progress_bar=show_progress_bar)[:, 0]
        order = sorted(range(len(docs)), key=lambda i: (-float(scores[i]), i))
        if top_k is not None:
            order = order[:max(top_k, 0)]
        out = []
        for i in order:
            row = {"corpus_id": i, "score": float(scores[i])}
            if return_documents:
                row["text"] = docs[i]
            out.append(row)
        return out

    rerank = rank

    def classify(self, texts: Sequence[TextInput], pairs: Optional[Sequence[str]] = None, *, batch_size: int = 32,
                 show_progress_bar: bool = False) -> List[str]:
        """The predicted label name per text (argmax of ``predict``); classification models."""
        if self.info.head_kind != HEAD_CLASSIFICATION:
            raise Q8bertError(Status.UNSUPPORTED_OPERATION,
                              f"classify needs a classification model; this one is {self.info.head}")
        logits = self.predict(texts, pairs, batch_size=batch_size, show_progress_bar=show_progress_bar)
        labels = self.labels
        return [labels[i] for i in logits.argmax(axis=1).tolist()]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings in one library call (``encode`` batches; this does not)."""
        if self.info.head_kind != HEAD_EMBEDDING:
            raise Q8bertError(Status.UNSUPPORTED_OPERATION, "embed needs an embedding model")
        return self.run_text(texts)

    def run(self, ids, token_type_ids=None, attention_mask=None) -> np.ndarray:
        """Token ids ``[batch, seq_len]`` in (int32-convertible); the flat float32 output out."""
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
            _check(_lib.q8bert_run(h, ids.ctypes.data, None if extra[0] is None else extra[0].ctypes.data,
                                   None if extra[1] is None else extra[1].ctypes.data, batch, seq_len,
                                   out.ctypes.data, need.value))
        finally:
            self._release()
        return out

    def tokenize(self, text: Union[str, Sequence[str]], pair: Optional[Union[str, Sequence[str]]] = None):
        """Token ids (int32, special tokens included) as the model's tokenizer gives them: one
        array for a str, a list of arrays for a sequence of str (``pair``: the second text(s))."""
        if not isinstance(text, (str, bytes)):
            pairs = [None] * len(text) if pair is None else pair
            if len(pairs) != len(text):
                raise Q8bertError(Status.INVALID_ARGUMENT, f"{len(text)} texts but {len(pairs)} pair texts")
            return [self.tokenize(t, p) for t, p in zip(text, pairs)]
        a = _Packed([text]).buf
        b = None if pair is None else _Packed([pair], "pair").buf
        cap = self.info.max_text_tokens
        ids = np.empty(cap, dtype=np.int32)
        n = c_size_t()
        h = self._acquire()
        try:
            _check(_lib.q8bert_tokenize(h, a, b, ids.ctypes.data, None, cap, ctypes.byref(n)))
        finally:
            self._release()
        return ids[: n.value].copy()
