//! Raw declarations of the msa.h functions and structs this example uses. The structs are #[repr(C)]
//! copies of msa.h's (fields in the same order and types); struct_size makes older/newer layouts safe.
#![allow(non_camel_case_types, dead_code)]
use std::os::raw::{c_char, c_int, c_void};

pub type msa_status = c_int;
pub const MSA_OK: msa_status = 0;
pub const MSA_ERR_CANCELLED: msa_status = 14;
pub const MSA_PARAMS_GENERATE: c_int = 3;

pub const MSA_VERSION_MAJOR: u32 = 0;
pub const MSA_VERSION_MINOR: u32 = 1;
pub const MSA_VERSION_PATCH: u32 = 0;
pub const MSA_VERSION_NUMBER: u32 = MSA_VERSION_MAJOR * 10000 + MSA_VERSION_MINOR * 100 + MSA_VERSION_PATCH;

#[repr(C)]
pub struct msa_model {
    _private: [u8; 0],
}
#[repr(C)]
pub struct msa_memory {
    _private: [u8; 0],
}
#[repr(C)]
pub struct msa_result {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct msa_document {
    pub text: *const c_char,
    pub text_len: usize,
    pub id: u64,
    pub has_id: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct msa_generate_params {
    pub struct_size: u32,
    pub top_k: i32,
    pub max_new_tokens: i32,
    pub temperature: f32,
    pub top_p: f32,
    pub sampling_top_k: i32,
    pub seed: u64,
    pub interleave: i32,
    pub max_rounds: i32,
    pub first_position: i32,
    pub logits_callback: msa_logits_callback,
    pub logits_user_data: *mut c_void,
}

pub type msa_progress_callback =
    Option<unsafe extern "C" fn(i64, i64, i64, i64, *mut c_void) -> c_int>;
pub type msa_logits_callback =
    Option<unsafe extern "C" fn(i32, i64, i64, *mut f32, i64, *mut c_void) -> c_int>;
pub type msa_token_callback = Option<unsafe extern "C" fn(*const c_char, usize, *mut c_void) -> c_int>;

extern "C" {
    pub fn msa_version() -> *const c_char;
    pub fn msa_version_compatible(header_version: u32) -> c_int;
    pub fn msa_status_string(status: msa_status) -> *const c_char;
    pub fn msa_last_error() -> *const c_char;

    pub fn msa_model_load(dir: *const c_char, params: *const c_void, out: *mut *mut msa_model) -> msa_status;
    pub fn msa_model_free(model: *mut msa_model);

    pub fn msa_memory_create(model: *const msa_model, params: *const c_void, out: *mut *mut msa_memory)
        -> msa_status;
    pub fn msa_memory_free(memory: *mut msa_memory);
    pub fn msa_memory_add_documents(memory: *mut msa_memory, docs: *const msa_document, n_docs: usize,
                                    progress: msa_progress_callback, user_data: *mut c_void, out_ids: *mut u64)
        -> msa_status;

    pub fn msa_params_init(kind: c_int, params: *mut c_void, struct_size: usize) -> msa_status;
    pub fn msa_generate(model: *const msa_model, memory: *const msa_memory, prompt: *const c_char,
                        params: *const msa_generate_params, on_token: msa_token_callback, user_data: *mut c_void,
                        out: *mut *mut msa_result) -> msa_status;
    pub fn msa_result_free(result: *mut msa_result);
    pub fn msa_result_tokens(result: *const msa_result, ids: *mut *const i32) -> i64;
    pub fn msa_result_stop_reason(result: *const msa_result) -> *const c_char;
    pub fn msa_result_n_router_layers(result: *const msa_result) -> i32;
    pub fn msa_result_router_layer(result: *const msa_result, slot: i32) -> i32;
    pub fn msa_result_layer_topk(result: *const msa_result, slot: i32, ids: *mut *const u64,
                                 scores: *mut *const f32) -> i64;
}
