/* q8bert._calls: the hot path of Model.run_text / encode / predict, in C.
 *
 * Why: between two ~1 ms library calls the interpreter runs with cold caches, so every Python-level
 * step of building a ctypes call (join, encode, pointer array, output buffer) costs several µs; this
 * does the whole crossing in one C function. Each str's own UTF-8 buffer goes to q8bert_run_text
 * unchanged (PyUnicode_AsUTF8AndSize: no copy for ASCII text, an encoding cached inside the str
 * otherwise) and the results land in a buffer the caller owns (a numpy array). The GIL is released
 * during the call, as ctypes does.
 *
 * The library is whichever one q8bert/__init__.py loaded (bundled, $Q8BERT_LIBRARY, pkg-config):
 * it hands over the address of its q8bert_run_text with set_run_text().
 *
 * Anything unusual -- an item that is not a str, a NUL inside a text, lone surrogates -- returns a
 * negative code instead of raising, and the caller falls back to the ctypes path, which raises the
 * precise error. Building this module is optional (no compiler or no Python headers: the package
 * still works, through ctypes only).
 */
#define Py_LIMITED_API 0x030B0000 /* PyObject_GetBuffer joined the stable ABI in 3.11 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "q8bert.h"

typedef q8bert_status (*run_text_fn)(const struct q8bert_model *model, const char *const *texts_a,
                                     const char *const *texts_b, size_t batch, float *output,
                                     size_t output_len);
#ifdef __GNUC__
_Static_assert(__builtin_types_compatible_p(run_text_fn, __typeof__(&q8bert_run_text)),
               "run_text_fn must match q8bert_run_text in q8bert.h");
#endif

static run_text_fn g_run_text; /* set once at import, before any call */

/* Returned when the caller must take the ctypes path (it raises the precise error). */
#define FALLBACK (-1)
/* Texts up to this many use stack arrays; more take one heap block. */
#define STACK_TEXTS 64

static PyObject *set_run_text(PyObject *self, PyObject *address) {
    (void)self;
    void *p = PyLong_AsVoidPtr(address);
    if (p == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "set_run_text: NULL function address");
        return NULL;
    }
    g_run_text = (run_text_fn)p;
    Py_RETURN_NONE;
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

/* run_text(handle, texts, pairs, out) -> status
 *   handle: the model address (int); texts: list or tuple of str; pairs: None or the same
 *   length; out: a writable C-contiguous buffer of float32 (its whole length is offered).
 * Returns the library's status (>= 0), or FALLBACK. */
static PyObject *run_text(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "run_text(handle, texts, pairs, out) takes 4 arguments");
        return NULL;
    }
    if (g_run_text == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "run_text: set_run_text was not called");
        return NULL;
    }
    void *model = PyLong_AsVoidPtr(args[0]);
    if (model == NULL && PyErr_Occurred())
        return NULL;
    PyObject *texts = args[1], *pairs = args[2] == Py_None ? NULL : args[2];
    int texts_list = PyList_Check(texts), pairs_list = pairs != NULL && PyList_Check(pairs);
    if (!texts_list && !PyTuple_Check(texts))
        return PyLong_FromLong(FALLBACK);
    if (pairs != NULL && !pairs_list && !PyTuple_Check(pairs))
        return PyLong_FromLong(FALLBACK);
    Py_ssize_t n = texts_list ? PyList_Size(texts) : PyTuple_Size(texts);
    if (pairs != NULL && (pairs_list ? PyList_Size(pairs) : PyTuple_Size(pairs)) != n)
        return PyLong_FromLong(FALLBACK);
    size_t per_text = pairs != NULL ? 2 : 1;

    Py_buffer out;
    if (PyObject_GetBuffer(args[3], &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0)
        return NULL;

    /* ptrs[0..n) texts, ptrs[n..2n) pairs; keep[] the matching new references. */
    const char *stack_ptrs[2 * STACK_TEXTS];
    PyObject *stack_keep[2 * STACK_TEXTS];
    const char **ptrs = stack_ptrs;
    PyObject **keep = stack_keep;
    void *heap = NULL;
    if ((size_t)n > STACK_TEXTS) {
        heap = PyMem_Malloc(2 * per_text * (size_t)n * sizeof(void *));
        if (heap == NULL) {
            PyBuffer_Release(&out);
            return PyErr_NoMemory();
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
        size_t out_len = (size_t)out.len / sizeof(float);
        Py_BEGIN_ALLOW_THREADS
        status = (long)g_run_text(model, ptrs, b, (size_t)n, (float *)out.buf, out_len);
        Py_END_ALLOW_THREADS
    }
    for (Py_ssize_t i = 0; i < kept; i++)
        Py_DECREF(keep[i]);
    PyMem_Free(heap);
    PyBuffer_Release(&out);
    return PyLong_FromLong(status);
}

static PyMethodDef methods[] = {
    {"set_run_text", set_run_text, METH_O, "set_run_text(address): the loaded library's q8bert_run_text."},
    {"run_text", (PyCFunction)(void (*)(void))run_text, METH_FASTCALL,
     "run_text(handle, texts, pairs, out) -> status, or -1: take the ctypes path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "q8bert._calls", "The C hot path of q8bert.Model's text calls.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__calls(void) { return PyModule_Create(&module); }
