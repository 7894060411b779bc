#include "router/router.h"

#include <cmath>

namespace msa {

RouterReductions router_reductions(const MsaConfig& m) {
  RouterReductions red;
  red.head = m.head_reduce;
  red.query = m.query_reduce;
  red.chunk = m.chunk_reduce;
  return red;
}

Status route_layer(Backend* be, const ModelConfig& c, const LayerWeights& layer, const float* a, const float* q,
                   int64_t n_tokens, const int32_t* rows, int64_t n_rows, const ResidentRoutingIndex& index,
                   int64_t k, bool want_scores, RouterScratch* scratch, RouteSelection* out) {
  const MsaConfig& m = c.msa;
  const int64_t hq = c.num_attention_heads, d = c.head_dim, qw = hq * d, hidden = c.hidden_size;
  MSA_RETURN_IF_ERROR(be->ensure(&scratch->qr, static_cast<size_t>(n_rows * qw) * sizeof(float)));
  float* qr = scratch->qr.as<float>();
  if (m.decouple_router) {
    if (layer.router_q.empty()) {
      return Error(StatusCode::kMissingTensor, "router layer has no router_q_proj weight");
    }
    MSA_RETURN_IF_ERROR(be->ensure(&scratch->gathered, static_cast<size_t>(n_rows * hidden) * sizeof(float)));
    MSA_RETURN_IF_ERROR(be->gather_rows(a, n_tokens, hidden, rows, n_rows, scratch->gathered.as<float>()));
    MSA_RETURN_IF_ERROR(be->matmul(scratch->gathered.as<float>(), n_rows, layer.router_q, qr));
  } else {
    MSA_RETURN_IF_ERROR(be->gather_rows(q, n_tokens, qw, rows, n_rows, qr));
  }
  if (m.normalize_routing()) be->l2_normalize(qr, n_rows * hq, d);
  if (m.scale_routing()) be->scale(qr, static_cast<float>(1.0 / std::sqrt(static_cast<double>(d))), n_rows * qw);

  RouteRequest req;
  req.query.q = qr;
  req.query.n_tokens = n_rows;
  req.query.n_heads = hq;
  req.query.n_kv_heads = c.num_key_value_heads;
  req.query.head_dim = d;
  req.reductions = router_reductions(m);
  req.k = k;
  req.want_scores = want_scores;
  return be->route(req, index, out);
}

}  // namespace msa
