// Package msa is a small idiomatic Go wrapper over libmsa's C API (cgo): errors are `error` values,
// resources are released with Close(), callbacks are Go funcs.
package msa

/*
#cgo pkg-config: msa
#include <stdlib.h>
#include <msa/msa.h>

msa_status msa_go_add_documents(msa_memory *memory, const msa_document *docs, size_t n, uintptr_t handle,
                                uint64_t *out_ids);
msa_status msa_go_generate(const msa_model *model, const msa_memory *memory, const char *prompt,
                           const msa_generate_params *params, uintptr_t handle, msa_result **out);
static int msa_go_check_version(void) { return MSA_CHECK_VERSION(); }
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"unsafe"
)

// StatusCancelled is MSA_ERR_CANCELLED.
const StatusCancelled = int(C.MSA_ERR_CANCELLED)

// Error is a failed libmsa call: its status code and msa_last_error().
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return StatusName(e.Code) + ": " + e.Message }

// StatusName is msa_status_string.
func StatusName(code int) string { return C.GoString(C.msa_status_string(C.msa_status(code))) }

func check(st C.msa_status) error {
	if st == C.MSA_OK {
		return nil
	}
	return &Error{Code: int(st), Message: C.GoString(C.msa_last_error())}
}

// Version is msa_version() of the loaded library.
func Version() string { return C.GoString(C.msa_version()) }

// VersionCompatible reports whether the loaded library serves the header this package was built with.
func VersionCompatible() bool { return C.msa_go_check_version() != 0 }

// Model is a loaded checkpoint.
type Model struct{ p *C.msa_model }

// LoadModel loads a checkpoint directory with default parameters.
func LoadModel(dir string) (*Model, error) {
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	m := &Model{}
	if err := check(C.msa_model_load(cdir, nil, &m.p)); err != nil {
		return nil, err
	}
	return m, nil
}

// Close frees the model (after every Memory made from it). Safe to call twice.
func (m *Model) Close() {
	C.msa_model_free(m.p)
	m.p = nil
}

// Memory is a bank of encoded documents for one model.
type Memory struct {
	p     *C.msa_memory
	model *Model
}

// NewMemory creates an empty bank.
func NewMemory(m *Model) (*Memory, error) {
	mem := &Memory{model: m}
	if err := check(C.msa_memory_create(m.p, nil, &mem.p)); err != nil {
		return nil, err
	}
	return mem, nil
}

// Close frees the bank. Safe to call twice.
func (m *Memory) Close() {
	C.msa_memory_free(m.p)
	m.p = nil
}

// ProgressFunc receives (documents done, documents total); return false to cancel.
type ProgressFunc func(done, total int64) bool

//export goProgress
func goProgress(done, total, tokensDone, tokensTotal C.int64_t, handle C.uintptr_t) C.int {
	f := cgo.Handle(handle).Value().(ProgressFunc)
	if f(int64(done), int64(total)) {
		return 0
	}
	return 1
}

// TokenFunc receives each streamed piece of UTF-8 text; return false to stop generation.
type TokenFunc func(piece []byte) bool

//export goToken
func goToken(piece *C.char, n C.size_t, handle C.uintptr_t) C.int {
	f := cgo.Handle(handle).Value().(TokenFunc)
	if f(C.GoBytes(unsafe.Pointer(piece), C.int(n))) {
		return 0
	}
	return 1
}

// AddDocuments encodes texts into the bank (atomically) and returns their ids.
func (m *Memory) AddDocuments(texts []string, progress ProgressFunc) ([]uint64, error) {
	if len(texts) == 0 {
		return nil, fmt.Errorf("msa: no documents")
	}
	// The document array and its texts live in C memory: C must not keep pointers into Go memory.
	n := len(texts)
	docs := (*[1 << 20]C.msa_document)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.msa_document{}))))[:n:n]
	defer C.free(unsafe.Pointer(&docs[0]))
	for i, t := range texts {
		docs[i].text = (*C.char)(C.CBytes([]byte(t)))
		docs[i].text_len = C.size_t(len(t))
		defer C.free(unsafe.Pointer(docs[i].text))
	}
	ids := make([]C.uint64_t, n)
	var h cgo.Handle
	if progress != nil {
		h = cgo.NewHandle(progress)
		defer h.Delete()
	}
	if err := check(C.msa_go_add_documents(m.p, &docs[0], C.size_t(n), C.uintptr_t(h), &ids[0])); err != nil {
		return nil, err
	}
	out := make([]uint64, n)
	for i := range ids {
		out[i] = uint64(ids[i])
	}
	return out, nil
}

// GenerateParams are msa_generate_params, filled with the library's defaults by NewGenerateParams.
type GenerateParams = C.msa_generate_params

// NewGenerateParams returns the library's defaults (msa_params_init: exactly the size of this package's
// struct, also when the loaded library is newer).
func NewGenerateParams() (GenerateParams, error) {
	var p C.msa_generate_params
	err := check(C.msa_params_init(C.MSA_PARAMS_GENERATE, unsafe.Pointer(&p), C.size_t(unsafe.Sizeof(p))))
	return p, err
}

// Greedy sets the fields this example uses.
func Greedy(p *GenerateParams, topK, maxNewTokens int, seed uint64) {
	p.top_k = C.int32_t(topK)
	p.max_new_tokens = C.int32_t(maxNewTokens)
	p.temperature = 0
	p.seed = C.uint64_t(seed)
	p.interleave = 0
}

// Result is the outcome of Generate.
type Result struct {
	p *C.msa_result
	// Cancelled is true when a TokenFunc stopped generation (Status is then MSA_ERR_CANCELLED).
	Cancelled bool
	Status    int
}

// Generate answers prompt over the bank, streaming pieces to onToken (may be nil).
func (m *Memory) Generate(prompt string, params *GenerateParams, onToken TokenFunc) (*Result, error) {
	cprompt := C.CString(prompt)
	defer C.free(unsafe.Pointer(cprompt))
	var h cgo.Handle
	if onToken != nil {
		h = cgo.NewHandle(onToken)
		defer h.Delete()
	}
	r := &Result{}
	st := C.msa_go_generate(m.model.p, m.p, cprompt, params, C.uintptr_t(h), &r.p)
	r.Status = int(st)
	r.Cancelled = st == C.MSA_ERR_CANCELLED
	if !r.Cancelled {
		if err := check(st); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Close frees the result. Safe to call twice.
func (r *Result) Close() {
	C.msa_result_free(r.p)
	r.p = nil
}

// Tokens are the sampled token ids.
func (r *Result) Tokens() []int32 {
	var p *C.int32_t
	n := int(C.msa_result_tokens(r.p, &p))
	out := make([]int32, 0, n)
	if p != nil {
		for _, t := range unsafe.Slice(p, n) {
			out = append(out, int32(t))
		}
	}
	return out
}

// StopReason is msa_result_stop_reason.
func (r *Result) StopReason() string { return C.GoString(C.msa_result_stop_reason(r.p)) }

// Retrieved is one router layer's top-k documents, best first.
type Retrieved struct {
	Layer int
	IDs   []uint64
}

// Retrieved lists the documents every router layer picked.
func (r *Result) Retrieved() []Retrieved {
	var out []Retrieved
	for slot := C.int32_t(0); slot < C.msa_result_n_router_layers(r.p); slot++ {
		var ids *C.uint64_t
		n := int(C.msa_result_layer_topk(r.p, slot, &ids, nil))
		rl := Retrieved{Layer: int(C.msa_result_router_layer(r.p, slot))}
		if ids != nil {
			for _, id := range unsafe.Slice(ids, n) {
				rl.IDs = append(rl.IDs, uint64(id))
			}
		}
		out = append(out, rl)
	}
	return out
}
