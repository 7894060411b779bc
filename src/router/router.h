// Router (spec §5.1-5.3): at one router layer, the routing tokens' router queries are built from the layer's
// activations with backend ops and scored against the layer's routing index resident on the backend
// (Backend::route: scores, reductions and top-k live there; the router never reads the index's storage
// layout). Reductions and numerics: backend/routing_types.h.
//
// Router queries (spec §5.1): Qr = router_q_proj(a) of the routing rows with decouple_router, else the
// attention q (after q_norm + RoPE) of those rows; L2-normalised per head when aux_loss_method == "INFONCE";
// times head_dim^-0.5 unless INFONCE with a decoupled router.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/routing_types.h"
#include "core/status.h"
#include "model/config.h"
#include "model/weights.h"

namespace msa {

// The three reductions of a checkpoint's msa_config.
RouterReductions router_reductions(const MsaConfig& m);

// Backend scratch of route_layer, reused across layers and calls (one per session).
struct RouterScratch {
  DeviceBuffer gathered, qr;
};

// Routes one router layer. a: [n_tokens, hidden] (input_layernorm output) and q: [n_tokens, n_heads*head_dim]
// (after q_norm + RoPE), backend memory; rows: the routing rows' indices into them (backend int32 [n_rows]);
// layer: the layer's weights on the backend (router_q with decouple_router). k: top-k (> 0).
// out: host (top-k by (score desc, id asc); every document's score when want_scores).
// Errors: kMissingTensor (decouple_router without router_q_proj), the backend's.
Status route_layer(Backend* backend, const ModelConfig& config, const LayerWeights& layer, const float* a,
                   const float* q, int64_t n_tokens, const int32_t* rows, int64_t n_rows,
                   const ResidentRoutingIndex& index, int64_t k, bool want_scores, RouterScratch* scratch,
                   RouteSelection* out);

}  // namespace msa
