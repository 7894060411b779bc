// The template prefix of MSA (spec §3.5, §4.6): the chat template's head tokens run alone through the model;
// their K/V prefix every document (stage 1) and every query (stages 2-3). Shared by the Encoder and the Session.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"
#include "model/device_model.h"
#include "model/model.h"

namespace msa {

// Template-prefix K/V of every layer: the tokens `head` (Qwen3: [151644, 872, 198]) run alone at positions
// 0..n-1 through the whole model. k/v receive one [n * width] vector per layer. Errors: those of forward().
Status compute_template_kv(const DeviceWeights& weights, const std::vector<int32_t>& head,
                           std::vector<std::vector<float>>* k, std::vector<std::vector<float>>* v);

// The template head ids the engine uses: chat_template_ids(tokenizer).head, which must be 3 tokens (the
// reference hard-codes 3, spec §3.5). Errors: kInvalidArgument (no tokenizer), kUnsupported (another length).
Status template_head_ids(const Model& model, std::vector<int32_t>* head);

}  // namespace msa
