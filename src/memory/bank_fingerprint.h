// The fingerprint of a loaded model that a memory bank records and checks on open (docs/FORMAT.md).
#pragma once

#include "memory/bank_format.h"
#include "model/model.h"

namespace msa {

// Shape fields of the config, aux_loss_method, xxh64 of <dir>/tokenizer.json (0 when absent) and a digest of a
// strided sample of the weights that shape the memory (embeddings, every layer's norms and q/k/v/router
// projections): 64 samples of 64 bytes per tensor, so a different checkpoint of the same shape is refused at
// the cost of ~10^5 bytes read. page_dtype / template_len are left for the bank to fill.
bankfmt::Fingerprint model_fingerprint(const Model& model);

}  // namespace msa
