//! libmsa from Zig through @cImport of msa.h: encode documents, generate greedily with streaming, print
//! what was retrieved, cancel from a callback. usage: msa-example <checkpoint dir>
//! Zig 0.14 (pinned by scripts/examples.sh: later releases removed @cImport).
const std = @import("std");
const c = @cImport({
    @cInclude("msa/msa.h");
});

const docs = [_][:0]const u8{
    "The capital of France is Paris.",         "Mount Everest is 8849 metres tall.",
    "Python was created by Guido van Rossum.", "Bananas are rich in potassium.",
};
const prompt = "How tall is Mount Everest?";

const MsaError = error{Msa};

fn check(st: c.msa_status) MsaError!void {
    if (st == c.MSA_OK) return;
    std.debug.print("error: {s}: {s}\n", .{ std.mem.span(c.msa_status_string(st)), std.mem.span(c.msa_last_error()) });
    return MsaError.Msa;
}

fn onProgress(done: i64, total: i64, tokens_done: i64, tokens_total: i64, user: ?*anyopaque) callconv(.C) c_int {
    _ = done;
    _ = total;
    _ = tokens_done;
    _ = tokens_total;
    const calls: *i32 = @ptrCast(@alignCast(user.?));
    calls.* += 1;
    return 0; // non-zero would cancel
}

fn onPiece(piece: [*c]const u8, len: usize, user: ?*anyopaque) callconv(.C) c_int {
    _ = user;
    std.io.getStdOut().writer().writeAll(piece[0..len]) catch return 1;
    return 0;
}

fn cancelAfterFirst(piece: [*c]const u8, len: usize, user: ?*anyopaque) callconv(.C) c_int {
    _ = piece;
    _ = len;
    const pieces: *i32 = @ptrCast(@alignCast(user.?));
    pieces.* += 1;
    return 1; // stop: msa_generate returns MSA_ERR_CANCELLED
}

pub fn main() !u8 {
    var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
    defer arena.deinit();
    const args = try std.process.argsAlloc(arena.allocator());
    if (args.len != 2) {
        std.debug.print("usage: {s} <checkpoint dir>\n", .{args[0]});
        return 2;
    }
    if (c.MSA_CHECK_VERSION() == 0) {
        std.debug.print("libmsa {s} cannot serve this program\n", .{std.mem.span(c.msa_version())});
        return 1;
    }
    const out = std.io.getStdOut().writer();
    try out.print("libmsa {s}\n", .{std.mem.span(c.msa_version())});

    var model: ?*c.msa_model = null;
    try check(c.msa_model_load(args[1].ptr, null, &model));
    defer c.msa_model_free(model);
    var memory: ?*c.msa_memory = null;
    try check(c.msa_memory_create(model, null, &memory));
    defer c.msa_memory_free(memory); // defers run in reverse: the bank is freed before its model

    var cdocs: [docs.len]c.msa_document = undefined;
    for (docs, 0..) |d, i| {
        cdocs[i] = std.mem.zeroes(c.msa_document);
        cdocs[i].text = d.ptr;
        cdocs[i].text_len = d.len;
    }
    var progress_calls: i32 = 0;
    try check(c.msa_memory_add_documents(memory, &cdocs, cdocs.len, onProgress, &progress_calls, null));
    try out.print("documents: 4 added, progress calls: {d}\n", .{progress_calls});

    var params: c.msa_generate_params = undefined;
    // size-safe defaults: exactly @sizeOf(params) bytes, also when the installed library is newer
    try check(c.msa_params_init(c.MSA_PARAMS_GENERATE, &params, @sizeOf(c.msa_generate_params)));
    params.top_k = 2;
    params.max_new_tokens = 16;
    params.temperature = 0.0;
    params.seed = 7;
    params.interleave = 0;
    try out.writeAll("stream: ");
    var result: ?*c.msa_result = null;
    try check(c.msa_generate(model, memory, prompt, &params, onPiece, null, &result));
    defer c.msa_result_free(result);
    try out.writeAll("\ntokens:");
    var tokens: [*c]const i32 = null;
    const n_tokens: usize = @intCast(c.msa_result_tokens(result, &tokens));
    for (0..n_tokens) |i| try out.print(" {d}", .{tokens[i]});
    try out.print("\nstop: {s}\n", .{std.mem.span(c.msa_result_stop_reason(result))});
    var slot: i32 = 0;
    while (slot < c.msa_result_n_router_layers(result)) : (slot += 1) {
        var ids: [*c]const u64 = null;
        const n: usize = @intCast(c.msa_result_layer_topk(result, slot, &ids, null));
        for (0..n) |k| {
            try out.print("retrieved: layer {d} [{d}] {s}\n", .{ c.msa_result_router_layer(result, slot), ids[k], docs[@intCast(ids[k])] });
        }
    }

    var pieces: i32 = 0;
    var stopped: ?*c.msa_result = null;
    const st = c.msa_generate(model, memory, prompt, &params, cancelAfterFirst, &pieces, &stopped);
    defer c.msa_result_free(stopped);
    try out.print("cancelled: {s} after {d} piece(s), {d} token(s)\n", .{ std.mem.span(c.msa_status_string(st)), pieces, c.msa_result_tokens(stopped, null) });
    return if (st == c.MSA_ERR_CANCELLED) 0 else 1;
}
