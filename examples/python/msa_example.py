#!/usr/bin/env python3
"""libmsa from Python with ctypes only (no compiled extension): encode documents, generate greedily with
streaming, print what was retrieved, cancel from a callback.

usage: python3 msa_example.py <checkpoint dir> [path to libmsa.so.0]
The library is found from the second argument, else $MSA_LIBRARY, else ctypes.util.find_library("msa").
"""
import ctypes
import ctypes.util
import os
import sys

MSA_VERSION_MAJOR, MSA_VERSION_MINOR, MSA_VERSION_PATCH = 0, 1, 0
MSA_VERSION_NUMBER = MSA_VERSION_MAJOR * 10000 + MSA_VERSION_MINOR * 100 + MSA_VERSION_PATCH
MSA_OK, MSA_ERR_CANCELLED = 0, 14
MSA_PARAMS_GENERATE = 3

DOCS = ["The capital of France is Paris.", "Mount Everest is 8849 metres tall.",
        "Python was created by Guido van Rossum.", "Bananas are rich in potassium."]
PROMPT = "How tall is Mount Everest?"


class Document(ctypes.Structure):  # msa_document
    _fields_ = [("text", ctypes.c_char_p), ("text_len", ctypes.c_size_t), ("id", ctypes.c_uint64),
                ("has_id", ctypes.c_int32)]


class GenerateParams(ctypes.Structure):  # msa_generate_params (fields in msa.h order)
    _fields_ = [("struct_size", ctypes.c_uint32), ("top_k", ctypes.c_int32), ("max_new_tokens", ctypes.c_int32),
                ("temperature", ctypes.c_float), ("top_p", ctypes.c_float), ("sampling_top_k", ctypes.c_int32),
                ("seed", ctypes.c_uint64), ("interleave", ctypes.c_int32), ("max_rounds", ctypes.c_int32),
                ("first_position", ctypes.c_int32), ("logits_callback", ctypes.c_void_p),
                ("logits_user_data", ctypes.c_void_p)]


PROGRESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                            ctypes.c_void_p)
TOKEN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t, ctypes.c_void_p)
P = ctypes.c_void_p  # opaque handles


class MsaError(Exception):
    def __init__(self, lib, code):
        self.code = code
        super().__init__(f"{lib.msa_status_string(code).decode()}: {lib.msa_last_error().decode()}")


def load_library(path=None):
    path = path or os.environ.get("MSA_LIBRARY") or ctypes.util.find_library("msa")
    if not path:
        raise OSError("libmsa not found: pass its path or set MSA_LIBRARY")
    lib = ctypes.CDLL(path)
    sig = {
        "msa_version": (ctypes.c_char_p, []),
        "msa_version_compatible": (ctypes.c_int, [ctypes.c_uint32]),
        "msa_status_string": (ctypes.c_char_p, [ctypes.c_int]),
        "msa_last_error": (ctypes.c_char_p, []),
        "msa_model_load": (ctypes.c_int, [ctypes.c_char_p, P, ctypes.POINTER(P)]),
        "msa_model_free": (None, [P]),
        "msa_memory_create": (ctypes.c_int, [P, P, ctypes.POINTER(P)]),
        "msa_memory_free": (None, [P]),
        "msa_memory_add_documents": (ctypes.c_int, [P, ctypes.POINTER(Document), ctypes.c_size_t, PROGRESS, P,
                                                    ctypes.POINTER(ctypes.c_uint64)]),
        "msa_params_init": (ctypes.c_int, [ctypes.c_int, P, ctypes.c_size_t]),
        "msa_generate": (ctypes.c_int, [P, P, ctypes.c_char_p, ctypes.POINTER(GenerateParams), TOKEN, P,
                                        ctypes.POINTER(P)]),
        "msa_result_free": (None, [P]),
        "msa_result_tokens": (ctypes.c_int64, [P, ctypes.POINTER(ctypes.POINTER(ctypes.c_int32))]),
        "msa_result_stop_reason": (ctypes.c_char_p, [P]),
        "msa_result_n_router_layers": (ctypes.c_int32, [P]),
        "msa_result_router_layer": (ctypes.c_int32, [P, ctypes.c_int32]),
        "msa_result_layer_topk": (ctypes.c_int64, [P, ctypes.c_int32, ctypes.POINTER(ctypes.POINTER(ctypes.c_uint64)),
                                                   P]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


class Msa:
    """Owns the handles it creates and frees them in close() (also on `with` exit), newest first."""

    def __init__(self, lib):
        self.lib = lib
        self._owned = []  # (free function, handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        while self._owned:
            free, handle = self._owned.pop()
            free(handle)

    def check(self, code):
        if code != MSA_OK:
            raise MsaError(self.lib, code)

    def load_model(self, path):
        model = P()
        self.check(self.lib.msa_model_load(path.encode(), None, ctypes.byref(model)))
        self._owned.append((self.lib.msa_model_free, model))
        return model

    def create_memory(self, model):
        memory = P()
        self.check(self.lib.msa_memory_create(model, None, ctypes.byref(memory)))
        self._owned.append((self.lib.msa_memory_free, memory))
        return memory

    def add_documents(self, memory, texts, progress):
        encoded = [t.encode() for t in texts]
        docs = (Document * len(encoded))(*[Document(e, len(e), 0, 0) for e in encoded])
        ids = (ctypes.c_uint64 * len(encoded))()
        cb = PROGRESS(lambda done, total, tdone, ttotal, user: 0 if progress(done, total) else 1)
        self.check(self.lib.msa_memory_add_documents(memory, docs, len(encoded), cb, None, ids))
        return list(ids)

    def generate(self, model, memory, prompt, params, on_piece):
        """Returns (result handle, status); a stopped generation is MSA_ERR_CANCELLED with a result."""
        cb = TOKEN(lambda piece, n, user: 0 if on_piece(ctypes.string_at(piece, n)) else 1)
        result = P()
        st = self.lib.msa_generate(model, memory, prompt.encode(), ctypes.byref(params), cb, None,
                                   ctypes.byref(result))
        if st != MSA_ERR_CANCELLED:
            self.check(st)
        self._owned.append((self.lib.msa_result_free, result))
        return result, st

    def tokens(self, result):
        p = ctypes.POINTER(ctypes.c_int32)()
        n = self.lib.msa_result_tokens(result, ctypes.byref(p))
        return [p[i] for i in range(n)]


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    lib = load_library(sys.argv[2] if len(sys.argv) == 3 else None)
    if not lib.msa_version_compatible(MSA_VERSION_NUMBER):
        print(f"libmsa {lib.msa_version().decode()} cannot serve this program", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    print(f"libmsa {lib.msa_version().decode()}", flush=True)
    with Msa(lib) as msa:
        model = msa.load_model(sys.argv[1])
        memory = msa.create_memory(model)
        calls = [0]

        def progress(done, total):
            calls[0] += 1
            return True

        msa.add_documents(memory, DOCS, progress)
        print(f"documents: 4 added, progress calls: {calls[0]}")

        # msa_params_init fills exactly sizeof(GenerateParams) bytes, whatever the library's own size
        params = GenerateParams()
        msa.check(lib.msa_params_init(MSA_PARAMS_GENERATE, ctypes.byref(params), ctypes.sizeof(params)))
        params.top_k, params.max_new_tokens, params.temperature = 2, 16, 0.0
        params.seed, params.interleave = 7, 0
        print("stream: ", end="", flush=True)

        def stream(piece):
            out.write(piece)
            out.flush()
            return True

        result, _ = msa.generate(model, memory, PROMPT, params, stream)
        print()
        print("tokens: " + " ".join(str(t) for t in msa.tokens(result)))
        print(f"stop: {lib.msa_result_stop_reason(result).decode()}")
        for slot in range(lib.msa_result_n_router_layers(result)):
            ids = ctypes.POINTER(ctypes.c_uint64)()
            n = lib.msa_result_layer_topk(result, slot, ctypes.byref(ids), None)
            for k in range(n):
                print(f"retrieved: layer {lib.msa_result_router_layer(result, slot)} [{ids[k]}] {DOCS[ids[k]]}")

        pieces = [0]

        def stop(piece):
            pieces[0] += 1
            return False

        stopped, st = msa.generate(model, memory, PROMPT, params, stop)
        print(f"cancelled: {lib.msa_status_string(st).decode()} after {pieces[0]} piece(s), "
              f"{len(msa.tokens(stopped))} token(s)")
        return 0 if st == MSA_ERR_CANCELLED else 1


if __name__ == "__main__":
    sys.exit(main())
