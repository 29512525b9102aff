/* q8bert._calls: the hot path of Model.run_text / encode / predict, in C.
 *
 * Why: between two ~1 ms library calls the interpreter runs with cold caches, so every Python-level
 * step of building a ctypes call (join, encode, pointer array, output buffer) costs several µs; this
 * does the whole crossing in one C function: run() allocates the numpy result, passes each str's
 * own UTF-8 buffer to q8bert_run_text unchanged (PyUnicode_AsUTF8AndSize: no copy for ASCII text,
 * an encoding cached inside the str otherwise), and raises q8bert.Q8bertError with the library's
 * status and message on failure; run_into() writes into a slice the caller owns (the batches of
 * encode/predict). The GIL is released during the call, as ctypes does.
 *
 * The library is whichever one q8bert/__init__.py loaded (bundled, $Q8BERT_LIBRARY, pkg-config):
 * setup() gets the addresses of its q8bert_run_text and q8bert_last_error.
 *
 * Guard: a model's address and the count of calls in flight, so that close() on one thread never
 * frees a model another thread is running (the same protocol as q8bert._Guard in Python, which is
 * used when this module is not built). Every field is read and written with the GIL held; the
 * count covers the stretch where a call releases it.
 *
 * Anything unusual -- not a list or tuple, an item that is not a str, a NUL inside a text, lone
 * surrogates, pairs of another length -- returns None (run) or -1 (run_into) instead of raising,
 * and the caller falls back to the ctypes path, which raises the precise error. Building this module is optional (no compiler or no Python headers: the package
 * still works, through ctypes only).
 */
#define Py_LIMITED_API 0x030B0000 /* PyObject_GetBuffer joined the stable ABI in 3.11 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "q8bert.h" /* q8bert_status, and the signatures checked below */

typedef q8bert_status (*run_text_fn)(const struct q8bert_model *model, const char *const *texts_a,
                                     const char *const *texts_b, size_t batch, float *output,
                                     size_t output_len);
#ifdef __GNUC__
_Static_assert(__builtin_types_compatible_p(run_text_fn, __typeof__(&q8bert_run_text)),
               "run_text_fn must match q8bert_run_text in q8bert.h");
#endif

typedef const char *(*last_error_fn)(void);
#ifdef __GNUC__
_Static_assert(__builtin_types_compatible_p(last_error_fn, __typeof__(&q8bert_last_error)),
               "last_error_fn must match q8bert_last_error in q8bert.h");
#endif

/* Set once at import by setup(), before any call. */
static run_text_fn g_run_text;
static last_error_fn g_last_error;
static PyObject *g_error_class; /* q8bert.Q8bertError(status, message) */
static PyObject *g_empty;       /* numpy.empty */
static PyObject *g_float32;     /* numpy.dtype(numpy.float32) */

/* Returned when the caller must take the ctypes path (it raises the precise error). */
#define FALLBACK (-1)
/* Texts up to this many use stack arrays; more take one heap block. */
#define STACK_TEXTS 64

typedef struct {
    PyObject_HEAD
    void *model;       /* NULL once detached */
    Py_ssize_t active; /* calls in flight */
    int closed;        /* no new calls */
} Guard;

static PyTypeObject *GuardType;

static PyObject *guard_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *address;
    if (kwargs != NULL && PyDict_Size(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "Guard(address) takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O", &address))
        return NULL;
    void *model = PyLong_AsVoidPtr(address);
    if (model == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "Guard: NULL model address");
        return NULL;
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    Guard *self = (Guard *)alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->model = model;
    self->active = 0;
    self->closed = 0;
    return (PyObject *)self;
}

static void guard_dealloc(PyObject *self) {
    PyTypeObject *type = Py_TYPE(self);
    freefunc free_fn = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_fn(self);
    Py_DECREF(type); /* instances of a heap type own a reference to it */
}

/* enter() -> the model address, counted as a call in flight; None once closing. */
static PyObject *guard_enter(PyObject *op, PyObject *unused) {
    (void)unused;
    Guard *g = (Guard *)op;
    if (g->closed)
        Py_RETURN_NONE;
    g->active++;
    return PyLong_FromVoidPtr(g->model);
}

/* leave(): the end of a call that enter() counted. */
static PyObject *guard_leave(PyObject *op, PyObject *unused) {
    (void)unused;
    Guard *g = (Guard *)op;
    if (g->active > 0)
        g->active--;
    Py_RETURN_NONE;
}

/* detach() -> None while calls are in flight (no new ones start), else the model address to
 * free, once (0 afterwards). */
static PyObject *guard_detach(PyObject *op, PyObject *unused) {
    (void)unused;
    Guard *g = (Guard *)op;
    g->closed = 1;
    if (g->active > 0)
        Py_RETURN_NONE;
    void *model = g->model;
    g->model = NULL;
    return model != NULL ? PyLong_FromVoidPtr(model) : PyLong_FromLong(0);
}

static PyMethodDef guard_methods[] = {
    {"enter", guard_enter, METH_NOARGS, "enter() -> model address (a call in flight), or None once closing."},
    {"leave", guard_leave, METH_NOARGS, "leave(): the end of a call enter() counted."},
    {"detach", guard_detach, METH_NOARGS, "detach() -> None while calls are in flight, else the address to free (once; 0 after)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot guard_slots[] = {
    {Py_tp_new, guard_new},
    {Py_tp_dealloc, guard_dealloc},
    {Py_tp_methods, guard_methods},
    {Py_tp_doc, "Guard(address): a model address and its calls in flight (see q8bert._Guard)."},
    {0, NULL},
};

static PyType_Spec guard_spec = {"q8bert._calls.Guard", sizeof(Guard), 0, Py_TPFLAGS_DEFAULT, guard_slots};

/* setup(run_text_address, last_error_address, error_class, numpy_empty, float32_dtype) */
static PyObject *setup(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *run_text_address, *last_error_address, *error_class, *empty, *float32;
    if (!PyArg_ParseTuple(args, "OOOOO", &run_text_address, &last_error_address, &error_class, &empty, &float32))
        return NULL;
    void *run = PyLong_AsVoidPtr(run_text_address), *last = PyLong_AsVoidPtr(last_error_address);
    if (run == NULL || last == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "setup: NULL function address");
        return NULL;
    }
    g_run_text = (run_text_fn)run;
    g_last_error = (last_error_fn)last;
    Py_INCREF(error_class);
    Py_INCREF(empty);
    Py_INCREF(float32);
    Py_XDECREF(g_error_class);
    Py_XDECREF(g_empty);
    Py_XDECREF(g_float32);
    g_error_class = error_class;
    g_empty = empty;
    g_float32 = float32;
    Py_RETURN_NONE;
}

/* Sets q8bert.Q8bertError(status, message) as the current exception. */
static void set_error(long status, const char *message) {
    PyObject *msg = PyUnicode_DecodeUTF8(message, (Py_ssize_t)strlen(message), "replace");
    if (msg == NULL)
        return;
    PyObject *exc = PyObject_CallFunction(g_error_class, "(lO)", status, msg);
    Py_DECREF(msg);
    if (exc != NULL) {
        PyErr_SetObject(g_error_class, exc);
        Py_DECREF(exc);
    }
}

/* Borrows item i of a list or tuple (the caller checked which). */
static PyObject *item(PyObject *seq, int is_list, Py_ssize_t i) {
    return is_list ? PyList_GetItem(seq, i) : PyTuple_GetItem(seq, i);
}

/* The UTF-8 of `text` into *ptr, with a new reference in *keep so the buffer outlives a concurrent
 * change of the list while the GIL is released. 0, or FALLBACK when it is not a clean str. */
static int utf8_of(PyObject *text, const char **ptr, PyObject **keep) {
    if (!PyUnicode_Check(text))
        return FALLBACK;
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(text, &len);
    if (s == NULL) { /* lone surrogates: the ctypes path passes them on and the library says why */
        PyErr_Clear();
        return FALLBACK;
    }
    if (memchr(s, 0, (size_t)len) != NULL) /* C would see a shorter text: refuse like ctypes does */
        return FALLBACK;
    Py_INCREF(text);
    *keep = text;
    *ptr = s;
    return 0;
}

/* The texts (list or tuple of str) and pairs (NULL, or the same length) through q8bert_run_text
 * into `out` (out_len floats), the GIL released during the call and the call counted in the
 * guard. Returns the library's status (>= 0), or FALLBACK with no exception set; -2 with an
 * exception set (out of memory). The guard must be open. */
static long call_texts(Guard *guard, PyObject *texts, PyObject *pairs, float *out, size_t out_len) {
    int texts_list = PyList_Check(texts), pairs_list = pairs != NULL && PyList_Check(pairs);
    if (!texts_list && !PyTuple_Check(texts))
        return FALLBACK;
    if (pairs != NULL && !pairs_list && !PyTuple_Check(pairs))
        return FALLBACK;
    Py_ssize_t n = texts_list ? PyList_Size(texts) : PyTuple_Size(texts);
    if (pairs != NULL && (pairs_list ? PyList_Size(pairs) : PyTuple_Size(pairs)) != n)
        return FALLBACK;
    size_t per_text = pairs != NULL ? 2 : 1;

    /* ptrs[0..n) texts, ptrs[n..2n) pairs; keep[] the matching new references. */
    const char *stack_ptrs[2 * STACK_TEXTS];
    PyObject *stack_keep[2 * STACK_TEXTS];
    const char **ptrs = stack_ptrs;
    PyObject **keep = stack_keep;
    void *heap = NULL;
    if ((size_t)n > STACK_TEXTS) {
        heap = PyMem_Malloc(2 * per_text * (size_t)n * sizeof(void *));
        if (heap == NULL) {
            PyErr_NoMemory();
            return -2;
        }
        ptrs = (const char **)heap;
        keep = (PyObject **)((const char **)heap + per_text * (size_t)n);
    }
    Py_ssize_t kept = 0;
    long status = 0;
    for (Py_ssize_t i = 0; i < n && status == 0; i++) {
        status = utf8_of(item(texts, texts_list, i), &ptrs[i], &keep[kept]);
        kept += status == 0;
    }
    for (Py_ssize_t i = 0; pairs != NULL && i < n && status == 0; i++) {
        status = utf8_of(item(pairs, pairs_list, i), &ptrs[n + i], &keep[kept]);
        kept += status == 0;
    }
    if (status == 0) {
        const char *const *b = pairs != NULL ? ptrs + n : NULL;
        void *model = guard->model;
        guard->active++; /* the GIL is held: close() waits for this call from here on */
        Py_BEGIN_ALLOW_THREADS
        status = (long)g_run_text(model, ptrs, b, (size_t)n, out, out_len);
        Py_END_ALLOW_THREADS
        guard->active--;
    }
    for (Py_ssize_t i = 0; i < kept; i++)
        Py_DECREF(keep[i]);
    PyMem_Free(heap);
    return status;
}

/* The guard argument, open; NULL with an exception set otherwise. */
static Guard *open_guard(PyObject *arg) {
    if (g_run_text == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "q8bert._calls: setup() was not called");
        return NULL;
    }
    if (Py_TYPE(arg) != GuardType) {
        PyErr_SetString(PyExc_TypeError, "the first argument must be a q8bert._calls.Guard");
        return NULL;
    }
    Guard *guard = (Guard *)arg;
    if (guard->closed) {
        set_error(Q8BERT_STATUS_INVALID_ARGUMENT, "model is closed"); /* as the ctypes path says it */
        return NULL;
    }
    return guard;
}

/* run(guard, texts, pairs, per_text) -> a new float32 array [len(texts), per_text] with the
 * results, or None: take the ctypes path. A library failure raises Q8bertError. */
static PyObject *run(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "run(guard, texts, pairs, per_text) takes 4 arguments");
        return NULL;
    }
    Guard *guard = open_guard(args[0]);
    if (guard == NULL)
        return NULL;
    PyObject *texts = args[1], *pairs = args[2] == Py_None ? NULL : args[2];
    Py_ssize_t per_text = PyLong_AsSsize_t(args[3]);
    if (per_text < 0)
        return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_ValueError, "per_text %zd < 0", per_text);
    Py_ssize_t n = PyList_Check(texts) ? PyList_Size(texts) : PyTuple_Check(texts) ? PyTuple_Size(texts) : -1;
    if (n < 0)
        Py_RETURN_NONE;
    PyObject *array = PyObject_CallFunction(g_empty, "(nn)O", n, per_text, g_float32);
    if (array == NULL)
        return NULL;
    if (n == 0)
        return array;
    Py_buffer view;
    if (PyObject_GetBuffer(array, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0) {
        Py_DECREF(array);
        return NULL;
    }
    long status = call_texts(guard, texts, pairs, (float *)view.buf, (size_t)view.len / sizeof(float));
    PyBuffer_Release(&view);
    if (status == 0)
        return array;
    Py_DECREF(array);
    if (status == FALLBACK)
        Py_RETURN_NONE;
    if (status > 0)
        set_error(status, g_last_error()); /* per OS thread: still this call's failure */
    return NULL;
}

/* run_into(guard, texts, pairs, out) -> None once `out` (a writable C-contiguous float32
 * buffer, its whole length offered) holds the results, or -1: take the ctypes path. A library
 * failure raises Q8bertError. */
static PyObject *run_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "run_into(guard, texts, pairs, out) takes 4 arguments");
        return NULL;
    }
    Guard *guard = open_guard(args[0]);
    if (guard == NULL)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[3], &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0)
        return NULL;
    PyObject *pairs = args[2] == Py_None ? NULL : args[2];
    long status = call_texts(guard, args[1], pairs, (float *)view.buf, (size_t)view.len / sizeof(float));
    PyBuffer_Release(&view);
    if (status == 0)
        Py_RETURN_NONE;
    if (status == FALLBACK)
        return PyLong_FromLong(FALLBACK);
    if (status > 0)
        set_error(status, g_last_error());
    return NULL;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS,
     "setup(run_text_address, last_error_address, error_class, numpy_empty, float32_dtype): the loaded library."},
    {"run", (PyCFunction)(void (*)(void))run, METH_FASTCALL,
     "run(guard, texts, pairs, per_text) -> float32 array [n, per_text], or None: take the ctypes path."},
    {"run_into", (PyCFunction)(void (*)(void))run_into, METH_FASTCALL,
     "run_into(guard, texts, pairs, out) -> None when done, or -1: take the ctypes path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "q8bert._calls", "The C hot path of q8bert.Model's text calls.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__calls(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    GuardType = (PyTypeObject *)PyType_FromSpec(&guard_spec);
    /* Our reference stays in GuardType (run_text's type check); the module takes its own. */
    if (GuardType == NULL || PyModule_AddObjectRef(m, "Guard", (PyObject *)GuardType) != 0) {
        Py_XDECREF((PyObject *)GuardType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
