// Package q8bert runs int8 BERT models (.q8b files) through the q8bert C library.
//
// The library is found with pkg-config (`pkg-config --cflags --libs q8bert`): install it with
// scripts/install.sh and put PREFIX/lib/pkgconfig on PKG_CONFIG_PATH.
//
// A Model is safe for concurrent use by many goroutines. Close it when done; a finalizer frees
// a forgotten model only as a safety net.
package q8bert

/*
#cgo pkg-config: q8bert
#include <stdlib.h>
#include <string.h>
#include "q8bert.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// Status is the library's result code (q8bert_status); the numbers are stable.
type Status uint32

// The status codes bindings most often test for; any other code is still reported as a Status.
const (
	StatusOK                   Status = 0
	StatusNullArgument         Status = 1
	StatusInvalidArgument      Status = 2
	StatusBufferTooSmall       Status = 3
	StatusSequenceTooLong      Status = 4
	StatusInvalidUTF8          Status = 5
	StatusTokenOutOfRange      Status = 6
	StatusUnsupportedOptions   Status = 7
	StatusKernelUnavailable    Status = 8
	StatusUnsupportedOperation Status = 9
	StatusIO                   Status = 100
	StatusBadMagic             Status = 201
	StatusChecksumMismatch     Status = 221
	StatusOutOfMemory          Status = 300
)

// String is the library's description of the status.
func (s Status) String() string { return C.GoString(C.q8bert_status_string(C.uint32_t(s))) }

// Error is a failure reported by the library (or detected by this package before calling it).
type Error struct {
	Status  Status
	Message string // the library's detail, as q8bert_last_error() gives it
}

func (e *Error) Error() string { return "q8bert: " + e.Message }

// ErrClosed is returned by calls on a closed Model.
var ErrClosed = &Error{Status: StatusInvalidArgument, Message: "model is closed"}

// Kernel selects the int8 GEMM implementation.
type Kernel uint32

const (
	KernelAuto        Kernel = C.Q8BERT_KERNEL_AUTO
	KernelScalar      Kernel = C.Q8BERT_KERNEL_SCALAR
	KernelAVX2        Kernel = C.Q8BERT_KERNEL_AVX2
	KernelAVXVNNI     Kernel = C.Q8BERT_KERNEL_AVX_VNNI
	KernelAVX512VNNI  Kernel = C.Q8BERT_KERNEL_AVX512_VNNI
	KernelNEON        Kernel = C.Q8BERT_KERNEL_NEON
	KernelNEONDotprod Kernel = C.Q8BERT_KERNEL_NEON_DOTPROD
	KernelNEONI8MM    Kernel = C.Q8BERT_KERNEL_NEON_I8MM
	KernelAMX         Kernel = C.Q8BERT_KERNEL_AMX
)

func (k Kernel) String() string { return C.GoString(C.q8bert_kernel_name(C.uint32_t(k))) }

// HeadKind is what a model outputs per sequence.
type HeadKind uint32

const (
	HeadClassification HeadKind = C.Q8BERT_HEAD_CLASSIFICATION
	HeadRegression     HeadKind = C.Q8BERT_HEAD_REGRESSION
	HeadEmbedding      HeadKind = C.Q8BERT_HEAD_EMBEDDING
	HeadTokenStates    HeadKind = C.Q8BERT_HEAD_TOKEN_STATES
)

// Activations is how a model's linear layers quantize their inputs.
type Activations uint32

const (
	ActivationsStatic Activations = C.Q8BERT_ACTIVATIONS_STATIC  // one scale per layer (the Q8BERT paper)
	ActivationsPerRow Activations = C.Q8BERT_ACTIVATIONS_PER_ROW // a scale per token, computed at run time
	ActivationsMixed  Activations = C.Q8BERT_ACTIVATIONS_MIXED   // some layers each way
)

// Options for Open; the zero value (or nil) means the defaults.
type Options struct {
	NumThreads     int    // threads inside one call; 0 = one per core
	Kernel         Kernel // KernelAuto picks the fastest the CPU has
	Truncate       bool   // cut long text longest-first instead of failing
	NoTruncate     bool   // fail on long text even where the model truncates (a sentence-transformers text limit)
	VerifyChecksum bool   // hash the whole file at load
	MaxSeqLen      int    // token limit for text; 0 = the model's maximum
	HugePages      bool   // copy the model into huge pages: slower open, unshared memory, faster calls
}

// Info describes a loaded model.
type Info struct {
	HeadKind         HeadKind
	OutputDim        int // floats per sequence
	MaxSeqLen        int
	VocabSize        int
	HiddenSize       int
	NumLayers        int
	NumHeads         int
	IntermediateSize int
	NumLabels        int
	Kernel           Kernel
	NumThreads       int
	FileSize         int64
	MaxTextTokens    int
	Activations      Activations
}

// Model is a loaded model.
type Model struct {
	mu     sync.RWMutex // calls hold it shared; Close holds it exclusively
	ptr    *C.q8bert_model
	info   Info
	labels []string
	// sentence-transformers prompts (name -> text) and the default prompt's name ("" for none).
	prompts       map[string]string
	defaultPrompt string
}

// Version is the library's version, "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.q8bert_version()) }

// call runs f on one locked OS thread so that q8bert_last_error(), which is per thread, still
// describes f's failure when read.
func call(f func() C.q8bert_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if st := f(); st != C.Q8BERT_STATUS_OK {
		return &Error{Status: Status(st), Message: C.GoString(C.q8bert_last_error())}
	}
	return nil
}

// Open memory-maps a model file. opts may be nil.
func Open(path string, opts *Options) (*Model, error) {
	if strings.IndexByte(path, 0) >= 0 {
		return nil, &Error{Status: StatusInvalidArgument, Message: "path contains a NUL byte"}
	}
	var o C.q8bert_options
	C.q8bert_options_init(&o)
	if opts != nil {
		if opts.NumThreads < 0 || opts.MaxSeqLen < 0 {
			return nil, &Error{Status: StatusInvalidArgument, Message: "negative NumThreads or MaxSeqLen"}
		}
		o.num_threads = C.uint32_t(opts.NumThreads)
		o.kernel = C.uint32_t(opts.Kernel)
		o.max_seq_len = C.uint32_t(opts.MaxSeqLen)
		if opts.Truncate {
			o.flags |= C.Q8BERT_FLAG_TRUNCATE
		}
		if opts.NoTruncate {
			o.flags |= C.Q8BERT_FLAG_NO_TRUNCATE
		}
		if opts.VerifyChecksum {
			o.flags |= C.Q8BERT_FLAG_VERIFY_CHECKSUM
		}
		if opts.HugePages {
			o.flags |= C.Q8BERT_FLAG_HUGE_PAGES
		}
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var ptr *C.q8bert_model
	if err := call(func() C.q8bert_status { return C.q8bert_create(cpath, &o, &ptr) }); err != nil {
		return nil, err
	}
	var ci C.q8bert_info
	if err := call(func() C.q8bert_status { return C.q8bert_model_info(ptr, &ci) }); err != nil {
		C.q8bert_free(ptr)
		return nil, err
	}
	m := &Model{ptr: ptr, info: Info{
		HeadKind: HeadKind(ci.head_kind), OutputDim: int(ci.output_dim), MaxSeqLen: int(ci.max_seq_len),
		VocabSize: int(ci.vocab_size), HiddenSize: int(ci.hidden_size), NumLayers: int(ci.num_layers),
		NumHeads: int(ci.num_heads), IntermediateSize: int(ci.intermediate_size), NumLabels: int(ci.num_labels),
		Kernel: Kernel(ci.kernel), NumThreads: int(ci.num_threads), FileSize: int64(ci.file_size),
		MaxTextTokens: int(ci.max_text_tokens), Activations: Activations(ci.activations),
	}}
	if m.info.HeadKind == HeadClassification {
		for i := 0; i < m.info.NumLabels; i++ {
			m.labels = append(m.labels, C.GoString(C.q8bert_label_name(ptr, C.size_t(i))))
		}
	}
	m.prompts = map[string]string{}
	for i := C.size_t(0); i < C.q8bert_prompt_count(ptr); i++ {
		m.prompts[C.GoString(C.q8bert_prompt_name(ptr, i))] = C.GoString(C.q8bert_prompt_text(ptr, i))
	}
	if d := C.q8bert_default_prompt_name(ptr); d != nil {
		m.defaultPrompt = C.GoString(d)
	}
	runtime.SetFinalizer(m, func(m *Model) { m.Close() })
	return m, nil
}

// Close frees the model, waiting for calls in progress. Further calls return ErrClosed;
// closing twice is a no-op.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ptr != nil {
		C.q8bert_free(m.ptr)
		m.ptr = nil
		runtime.SetFinalizer(m, nil)
	}
	return nil
}

// Info describes the model.
func (m *Model) Info() Info { return m.info }

// Labels are the class names of a classification model (nil for other heads).
func (m *Model) Labels() []string { return append([]string(nil), m.labels...) }

// Classify returns the logits (classification) or score (regression) of each text, like
// Python's predict. ClassifyLabels returns label names, like Python's classify.
func (m *Model) Classify(texts []string) ([][]float32, error) {
	if m.info.HeadKind != HeadClassification && m.info.HeadKind != HeadRegression {
		return nil, &Error{Status: StatusUnsupportedOperation, Message: "Classify needs a classification or regression model"}
	}
	return m.RunText(texts, nil)
}

// ClassifyLabels returns the predicted label name of each text (the argmax of Classify's
// logits, the first on a tie), like Python's classify. Classification models only.
func (m *Model) ClassifyLabels(texts []string) ([]string, error) {
	if m.info.HeadKind != HeadClassification {
		return nil, &Error{Status: StatusUnsupportedOperation, Message: "ClassifyLabels needs a classification model"}
	}
	logits, err := m.RunText(texts, nil)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(logits))
	for i, row := range logits {
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		names[i] = m.labels[best]
	}
	return names, nil
}

// Prompts returns the model's sentence-transformers prompts, name -> text (e.g. "query" ->
// "query: "); empty for most models.
func (m *Model) Prompts() map[string]string {
	out := make(map[string]string, len(m.prompts))
	for k, v := range m.prompts {
		out[k] = v
	}
	return out
}

// DefaultPromptName is the prompt RunText and Embed put in front of every text ("" for none).
func (m *Model) DefaultPromptName() string { return m.defaultPrompt }

// EmbedPrompt is Embed with one of the model's named prompts in front of every text, as
// sentence-transformers' encode(texts, prompt_name=...); "" runs the texts without a prompt.
func (m *Model) EmbedPrompt(promptName string, texts []string) ([][]float32, error) {
	if m.info.HeadKind != HeadEmbedding {
		return nil, &Error{Status: StatusUnsupportedOperation, Message: "EmbedPrompt needs an embedding model"}
	}
	return m.runText(&promptName, texts, nil)
}

// Embed returns the sentence embedding of each text.
func (m *Model) Embed(texts []string) ([][]float32, error) {
	if m.info.HeadKind != HeadEmbedding {
		return nil, &Error{Status: StatusUnsupportedOperation, Message: "Embed needs an embedding model"}
	}
	return m.RunText(texts, nil)
}

// cStrings copies texts into one C allocation: the pointer array followed by the bytes, as
// cgo forbids passing Go memory that holds Go pointers.
func cStrings(texts []string) (unsafe.Pointer, **C.char, error) {
	size := len(texts) * int(unsafe.Sizeof(uintptr(0)))
	for _, t := range texts {
		if strings.IndexByte(t, 0) >= 0 {
			return nil, nil, &Error{Status: StatusInvalidArgument, Message: "text contains a NUL byte"}
		}
		size += len(t) + 1
	}
	block := C.malloc(C.size_t(size))
	if block == nil {
		return nil, nil, &Error{Status: StatusOutOfMemory, Message: "cannot allocate text buffer"}
	}
	ptrs := unsafe.Slice((**C.char)(block), len(texts))
	bytes := unsafe.Slice((*byte)(block), size)
	at := len(texts) * int(unsafe.Sizeof(uintptr(0)))
	for i, t := range texts {
		copy(bytes[at:], t)
		bytes[at+len(t)] = 0
		ptrs[i] = (*C.char)(unsafe.Pointer(&bytes[at]))
		at += len(t) + 1
	}
	return block, (**C.char)(block), nil
}

// RunText tokenizes and runs texts (pairs nil, or one second text per text) and returns the
// model's output per text (with the model's default prompt, if it has one).
func (m *Model) RunText(texts, pairs []string) ([][]float32, error) {
	return m.runText(nil, texts, pairs)
}

// runText: promptName nil = the model's default prompt, "" = none, else a named prompt.
func (m *Model) runText(promptName *string, texts, pairs []string) ([][]float32, error) {
	if pairs != nil && len(pairs) != len(texts) {
		return nil, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf("%d texts but %d pair texts", len(texts), len(pairs))}
	}
	if len(texts) == 0 {
		return [][]float32{}, nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.ptr == nil {
		return nil, ErrClosed
	}
	blockA, a, err := cStrings(texts)
	if err != nil {
		return nil, err
	}
	defer C.free(blockA)
	var b **C.char
	if pairs != nil {
		blockB, bp, err := cStrings(pairs)
		if err != nil {
			return nil, err
		}
		defer C.free(blockB)
		b = bp
	}
	var name *C.char
	if promptName != nil {
		if strings.IndexByte(*promptName, 0) >= 0 {
			return nil, &Error{Status: StatusInvalidArgument, Message: "prompt name contains a NUL byte"}
		}
		name = C.CString(*promptName)
		defer C.free(unsafe.Pointer(name))
	}
	n := C.size_t(len(texts))
	var outLen C.size_t
	if err := call(func() C.q8bert_status { return C.q8bert_text_output_len(m.ptr, n, &outLen) }); err != nil {
		return nil, err
	}
	flat := make([]float32, int(outLen))
	err = call(func() C.q8bert_status {
		return C.q8bert_run_text_prompt(m.ptr, name, nil, a, b, n, (*C.float)(unsafe.Pointer(&flat[0])), outLen)
	})
	if err != nil {
		return nil, err
	}
	per := len(flat) / len(texts)
	out := make([][]float32, len(texts))
	for i := range out {
		out[i] = flat[i*per : (i+1)*per : (i+1)*per]
	}
	return out, nil
}

// Run runs batch sequences of token ids, row-major [batch][len(ids)/batch]. typeIDs (nil = all
// zeros) and mask (nil = all ones) have the shape of ids. It returns the flat output.
func (m *Model) Run(ids []int32, batch int, typeIDs, mask []int32) ([]float32, error) {
	if batch <= 0 || len(ids) == 0 || len(ids)%batch != 0 {
		return nil, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf("%d ids do not split into %d sequences", len(ids), batch)}
	}
	if (typeIDs != nil && len(typeIDs) != len(ids)) || (mask != nil && len(mask) != len(ids)) {
		return nil, &Error{Status: StatusInvalidArgument, Message: "typeIDs and mask must have the length of ids"}
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.ptr == nil {
		return nil, ErrClosed
	}
	seqLen := C.size_t(len(ids) / batch)
	var outLen C.size_t
	if err := call(func() C.q8bert_status { return C.q8bert_output_len(m.ptr, C.size_t(batch), seqLen, &outLen) }); err != nil {
		return nil, err
	}
	out := make([]float32, int(outLen))
	var tp, mp *C.int32_t
	if typeIDs != nil {
		tp = (*C.int32_t)(unsafe.Pointer(&typeIDs[0]))
	}
	if mask != nil {
		mp = (*C.int32_t)(unsafe.Pointer(&mask[0]))
	}
	err := call(func() C.q8bert_status {
		return C.q8bert_run(m.ptr, (*C.int32_t)(unsafe.Pointer(&ids[0])), tp, mp, C.size_t(batch), seqLen,
			(*C.float)(unsafe.Pointer(&out[0])), outLen)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Tokenize returns the token ids of text, [CLS] ... [SEP], with the model's limit and truncation.
func (m *Model) Tokenize(text string) ([]int32, error) {
	if strings.IndexByte(text, 0) >= 0 {
		return nil, &Error{Status: StatusInvalidArgument, Message: "text contains a NUL byte"}
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.ptr == nil {
		return nil, ErrClosed
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	ids := make([]int32, m.info.MaxTextTokens)
	var n C.size_t
	err := call(func() C.q8bert_status {
		return C.q8bert_tokenize(m.ptr, ctext, nil, (*C.int32_t)(unsafe.Pointer(&ids[0])), nil, C.size_t(len(ids)), &n)
	})
	if err != nil {
		return nil, err
	}
	return ids[:int(n)], nil
}
