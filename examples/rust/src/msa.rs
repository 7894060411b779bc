//! A small safe wrapper: owned handles freed in Drop, errors as Result<_, Error>, callbacks as closures.
use crate::ffi;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;

/// A failed libmsa call: the status name and msa_last_error().
#[derive(Debug)]
pub struct Error {
    pub code: ffi::msa_status,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", status_name(self.code), self.message)
    }
}

fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

pub fn status_name(code: ffi::msa_status) -> String {
    cstr(unsafe { ffi::msa_status_string(code) })
}

pub fn version() -> String {
    cstr(unsafe { ffi::msa_version() })
}

pub fn version_compatible() -> bool {
    unsafe { ffi::msa_version_compatible(ffi::MSA_VERSION_NUMBER) != 0 }
}

fn check(code: ffi::msa_status) -> Result<(), Error> {
    if code == ffi::MSA_OK {
        Ok(())
    } else {
        Err(Error { code, message: cstr(unsafe { ffi::msa_last_error() }) })
    }
}

fn c_string(s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error { code: 1, message: "string contains NUL".into() })
}

pub struct Model {
    raw: *mut ffi::msa_model,
}

impl Model {
    pub fn load(dir: &str) -> Result<Model, Error> {
        let dir = c_string(dir)?;
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::msa_model_load(dir.as_ptr(), ptr::null(), &mut raw) })?;
        Ok(Model { raw })
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        unsafe { ffi::msa_model_free(self.raw) }
    }
}

/// A memory bank; borrows its model, so the model outlives it.
pub struct Memory<'m> {
    raw: *mut ffi::msa_memory,
    model: &'m Model,
}

unsafe extern "C" fn progress_trampoline<F: FnMut(i64, i64) -> bool>(
    done: i64, total: i64, _tokens_done: i64, _tokens_total: i64, user: *mut c_void) -> c_int {
    let f = &mut *(user as *mut F);
    if f(done, total) { 0 } else { 1 }
}

unsafe extern "C" fn token_trampoline<F: FnMut(&[u8]) -> bool>(piece: *const c_char, len: usize,
                                                               user: *mut c_void) -> c_int {
    let f = &mut *(user as *mut F);
    let bytes = if len == 0 { &[][..] } else { std::slice::from_raw_parts(piece as *const u8, len) };
    if f(bytes) { 0 } else { 1 }
}

impl<'m> Memory<'m> {
    pub fn new(model: &'m Model) -> Result<Memory<'m>, Error> {
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::msa_memory_create(model.raw, ptr::null(), &mut raw) })?;
        Ok(Memory { raw, model })
    }

    /// Encodes and adds `texts`; `progress(done, total)` returns false to cancel. Returns the ids.
    pub fn add_documents<F: FnMut(i64, i64) -> bool>(&mut self, texts: &[&str], mut progress: F)
        -> Result<Vec<u64>, Error> {
        let docs: Vec<ffi::msa_document> = texts
            .iter()
            .map(|t| ffi::msa_document { text: t.as_ptr() as *const c_char, text_len: t.len(), id: 0, has_id: 0 })
            .collect();
        let mut ids = vec![0u64; docs.len()];
        check(unsafe {
            ffi::msa_memory_add_documents(self.raw, docs.as_ptr(), docs.len(), Some(progress_trampoline::<F>),
                                          &mut progress as *mut F as *mut c_void, ids.as_mut_ptr())
        })?;
        Ok(ids)
    }

    /// Generates an answer; `on_piece(bytes)` receives streamed UTF-8 and returns false to stop. A stopped
    /// generation is Ok with cancelled == true.
    pub fn generate<F: FnMut(&[u8]) -> bool>(&self, prompt: &str, params: &GenerateParams, mut on_piece: F)
        -> Result<Generation, Error> {
        let prompt = c_string(prompt)?;
        let mut raw = ptr::null_mut();
        let st = unsafe {
            ffi::msa_generate(self.model.raw, self.raw, prompt.as_ptr(), &params.raw, Some(token_trampoline::<F>),
                              &mut on_piece as *mut F as *mut c_void, &mut raw)
        };
        let cancelled = st == ffi::MSA_ERR_CANCELLED;
        if !cancelled {
            check(st)?;
        }
        Ok(Generation { raw, cancelled, status: st })
    }
}

impl Drop for Memory<'_> {
    fn drop(&mut self) {
        unsafe { ffi::msa_memory_free(self.raw) }
    }
}

pub struct GenerateParams {
    pub raw: ffi::msa_generate_params,
}

impl GenerateParams {
    /// The library's defaults, written into exactly size_of::<msa_generate_params>() bytes (msa_params_init),
    /// so a newer library with a larger struct cannot write past this copy of the layout.
    pub fn new() -> Result<GenerateParams, Error> {
        let mut raw = std::mem::MaybeUninit::<ffi::msa_generate_params>::zeroed();
        check(unsafe {
            ffi::msa_params_init(ffi::MSA_PARAMS_GENERATE, raw.as_mut_ptr() as *mut c_void,
                                 std::mem::size_of::<ffi::msa_generate_params>())
        })?;
        Ok(GenerateParams { raw: unsafe { raw.assume_init() } })
    }
}

pub struct Generation {
    raw: *mut ffi::msa_result,
    pub cancelled: bool,
    pub status: ffi::msa_status,
}

impl Generation {
    pub fn tokens(&self) -> Vec<i32> {
        let mut p: *const i32 = ptr::null();
        let n = unsafe { ffi::msa_result_tokens(self.raw, &mut p) };
        if p.is_null() || n <= 0 {
            return Vec::new();
        }
        unsafe { std::slice::from_raw_parts(p, n as usize) }.to_vec()
    }
    pub fn stop_reason(&self) -> String {
        cstr(unsafe { ffi::msa_result_stop_reason(self.raw) })
    }
    /// (decoder layer, top-k document ids best first) for every router layer.
    pub fn retrieved(&self) -> Vec<(i32, Vec<u64>)> {
        let n = unsafe { ffi::msa_result_n_router_layers(self.raw) };
        (0..n)
            .map(|slot| {
                let mut ids: *const u64 = ptr::null();
                let k = unsafe { ffi::msa_result_layer_topk(self.raw, slot, &mut ids, ptr::null_mut()) };
                let v = if ids.is_null() || k <= 0 {
                    Vec::new()
                } else {
                    unsafe { std::slice::from_raw_parts(ids, k as usize) }.to_vec()
                };
                (unsafe { ffi::msa_result_router_layer(self.raw, slot) }, v)
            })
            .collect()
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        unsafe { ffi::msa_result_free(self.raw) }
    }
}
