// Concurrency stress ([concurrency]; the ThreadSanitizer tier of scripts/test.sh runs this tag): N reader
// threads route and generate (greedy) on one model and one on-disk bank while a writer thread adds, removes
// and compacts in a fixed sequence. Every concurrent result must equal, bit for bit, the single-threaded
// result of one of the bank states the writer passes through (a call holds the bank's read lock for its whole
// duration, so it sees exactly one state), and each reader sees the states in order. At the end the bank
// verifies (every checksum) and, reopened, routes like the final state.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/encoder.h"
#include "engine/session.h"
#include "memory/bank_fingerprint.h"
#include "memory/memory_bank.h"
#include "test_engine_common.h"

using namespace msa;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kInitial = {
    "The Eiffel Tower is in Paris and was completed in 1889.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "Mount Everest is the highest mountain above sea level.",
    "Water boils at 100 degrees Celsius at sea level.",
};
const std::vector<uint64_t> kInitialIds = {10, 20, 30, 40};
const std::vector<std::string> kQuestions = {
    "Where is the Eiffel Tower?",
    "How high is Mount Everest?",
    "What does photosynthesis do?",
};

// The writer's fixed sequence. State 0 is the opened bank; state i is the bank after op i.
struct WriterOp {
  enum Kind { kAdd, kRemove, kCompact } kind;
  std::vector<uint64_t> ids;
  std::vector<std::string> texts;  // kAdd
};
const std::vector<WriterOp> kOps = {
    {WriterOp::kAdd, {50}, {"The Great Wall of China is thousands of kilometres long."}},
    {WriterOp::kRemove, {10}, {}},
    {WriterOp::kAdd, {60, 70}, {"Honey never spoils.", "The Moon orbits the Earth every 27 days."}},
    {WriterOp::kCompact, {}, {}},
    {WriterOp::kRemove, {50, 20}, {}},
    {WriterOp::kCompact, {}, {}},
    {WriterOp::kAdd, {80}, {"Paris is the capital of France."}},
};

Status apply(const Model& model, const WriterOp& op, MemoryBank* bank) {
  switch (op.kind) {
    case WriterOp::kAdd: {
      Encoder enc(model);
      std::vector<std::string_view> v(op.texts.begin(), op.texts.end());
      return enc.add_documents(bank, v, &op.ids);
    }
    case WriterOp::kRemove: return bank->remove(op.ids);
    case WriterOp::kCompact: return bank->compact();
  }
  return Status::Ok();
}

// One call's observable result, serialised: every routed document (index, id, score bits) and every score of
// every router layer for route(); the generated ids, answer and first round's routing for generate().
std::string route_sig(const RouteResult& r) {
  std::ostringstream o;
  o << "route prompt=" << r.prompt_tokens << " routing=" << r.routing_tokens;
  for (const LayerRouting& l : r.layers) {
    o << " | layer " << l.layer << " top";
    for (const ScoredDocument& d : l.top) {
      uint32_t b;
      std::memcpy(&b, &d.score, 4);
      o << " " << d.index << ":" << d.id << ":" << b;
    }
    o << " scores";
    for (float s : l.scores) {
      uint32_t b;
      std::memcpy(&b, &s, 4);
      o << " " << b;
    }
  }
  return o.str();
}

std::string generate_sig(const GenerateResult& r) {
  std::ostringstream o;
  o << "generate stop=" << static_cast<int>(r.stop) << " ids";
  for (int32_t id : r.generated_ids) o << " " << id;
  o << " answer=" << r.answer.size() << ":" << r.answer;
  for (const LayerRouting& l : r.routing) {
    o << " | layer " << l.layer;
    for (const ScoredDocument& d : l.top) o << " " << d.index << ":" << d.id;
  }
  return o.str();
}

// Call `c` of a reader: even calls route, odd calls generate; question c / 2 % 3.
Status call(Session* s, int c, std::string* sig) {
  const std::string& q = kQuestions[static_cast<size_t>(c / 2) % kQuestions.size()];
  if (c % 2 == 0) {
    RouteOptions o;
    o.doc_top_k = 2;
    o.record_scores = true;
    RouteResult r;
    MSA_RETURN_IF_ERROR(s->route(q, o, &r));
    *sig = route_sig(r);
  } else {
    GenerateOptions o;
    o.mode = GenerateMode::kPlain;
    o.sampling.use_model_defaults = false;
    o.sampling.do_sample = false;
    o.max_new_tokens = 4;
    o.doc_top_k = 2;
    GenerateResult r;
    MSA_RETURN_IF_ERROR(s->generate(q, o, &r));
    *sig = generate_sig(r);
  }
  return Status::Ok();
}
constexpr int kCallKinds = 6;  // (route, generate) x 3 questions: call c and c + 6 are the same call

std::unique_ptr<MemoryBank> new_bank_dir(const Model& model, const fs::path& dir) {
  {
    std::unique_ptr<MemoryBank> b;
    ENGINE_REQUIRE_OK(create_memory_bank(model, nullptr, &b, PageDType::kBF16));
    std::vector<std::string_view> v(kInitial.begin(), kInitial.end());
    Encoder enc(model);
    ENGINE_REQUIRE_OK(enc.add_documents(b.get(), v, &kInitialIds));
    ENGINE_REQUIRE_OK(b->save(dir.string()));
  }
  const bankfmt::Fingerprint fp = model_fingerprint(model);
  std::unique_ptr<MemoryBank> b;
  ENGINE_REQUIRE_OK(MemoryBank::open(dir.string(), model.config(), &fp, BankOpenOptions(), &b));
  return b;
}

}  // namespace

TEST_CASE("concurrency: readers route and generate while a writer adds, removes and compacts an on-disk bank",
          "[concurrency]") {
  const Model& model = engine_test::micro();
  const int n_states = static_cast<int>(kOps.size()) + 1;

  // Reference: the single-threaded result of every call kind in every state, on a bank of its own.
  std::vector<std::vector<std::string>> ref(static_cast<size_t>(n_states));
  {
    auto bank = new_bank_dir(model, engine_test::new_temp_dir("conc_ref"));
    Session s(model, bank.get());
    for (int st = 0; st < n_states; ++st) {
      if (st > 0) ENGINE_REQUIRE_OK(apply(model, kOps[static_cast<size_t>(st - 1)], bank.get()));
      for (int c = 0; c < kCallKinds; ++c) {
        std::string sig;
        ENGINE_REQUIRE_OK(call(&s, c, &sig));
        ref[static_cast<size_t>(st)].push_back(sig);
      }
    }
    ENGINE_REQUIRE_OK(bank->verify());
  }
  // The states must be told apart by some call (else "which state" would mean nothing).
  for (int st = 1; st < n_states; ++st) {
    INFO("state " << st);
    CHECK(ref[static_cast<size_t>(st)] != ref[static_cast<size_t>(st - 1)]);
  }

  // The stress run on a second bank directory built the same way.
  const fs::path dir = engine_test::new_temp_dir("conc_bank");
  auto bank = new_bank_dir(model, dir);
  constexpr int kReaders = 4;
  struct Observed {
    int call = 0;
    std::string sig;
    Status status;
  };
  std::vector<std::vector<Observed>> seen(kReaders);
  // Pacing (no timing): the writer runs op i during epoch 2i+1 and bumps the epoch when it is done.
  //  * In a stable (even) epoch all readers call at once, at most kPerEpoch calls each, and the writer starts
  //    the next op (or stops) only once every reader has started 2 calls (a route and a generate) in it: every
  //    state is observed by every reader.
  //  * While an op is in flight (odd epoch) the readers call one at a time, in turns, for as long as the op
  //    lasts: calls keep starting while the writer holds the lock (what a reader may do before it takes the
  //    shared lock then runs concurrently with the write), and the gaps between the calls let the writer take
  //    the lock (pthread rwlocks prefer readers: overlapping readers could starve it).
  constexpr int kPerEpoch = 4;
  std::atomic<int> epoch{0};
  std::atomic<int> turn{0};  // odd epochs: reader turn % kReaders calls next
  std::vector<std::atomic<int>> ready(kReaders);  // the last epoch in which the reader started its 2nd call
  for (auto& r : ready) r.store(-1);
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < kReaders; ++t) {
    readers.emplace_back([&, t] {
      Session s(model, bank.get());
      int my_epoch = -1, n = 0;
      for (int c = t; !stop.load();) {  // threads start at different call kinds
        const int e = epoch.load();
        if (e != my_epoch) {
          my_epoch = e;
          n = 0;
        }
        const bool in_flight = e % 2 == 1;
        if (in_flight ? turn.load() % kReaders != t : n >= kPerEpoch) {
          std::this_thread::sleep_for(std::chrono::microseconds(50));
          continue;
        }
        Observed o;
        o.call = c++ % kCallKinds;
        o.status = call(&s, o.call, &o.sig);
        seen[static_cast<size_t>(t)].push_back(std::move(o));
        if (in_flight) turn.fetch_add(1);
        if (++n == 2) ready[static_cast<size_t>(t)].store(my_epoch);
      }
    });
  }
  std::vector<Status> op_status;
  auto wait_readers = [&]() {
    const int e = epoch.load();
    for (auto& r : ready) {
      while (r.load() < e) std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  };
  std::thread writer([&] {
    for (const WriterOp& op : kOps) {
      wait_readers();
      epoch.fetch_add(1);
      op_status.push_back(apply(model, op, bank.get()));
      epoch.fetch_add(1);
    }
    wait_readers();
    stop.store(true);
  });
  writer.join();
  for (std::thread& r : readers) r.join();

  for (size_t i = 0; i < op_status.size(); ++i) {
    INFO("writer op " << i << ": " << op_status[i].to_string());
    REQUIRE(op_status[i].ok());
  }
  std::vector<int> per_state(static_cast<size_t>(n_states), 0);
  int total = 0;
  for (int t = 0; t < kReaders; ++t) {
    int state = 0;  // the earliest state consistent with this reader's results so far
    for (size_t i = 0; i < seen[static_cast<size_t>(t)].size(); ++i) {
      const Observed& o = seen[static_cast<size_t>(t)][i];
      INFO("reader " << t << " call " << i << " (kind " << o.call << "): " << o.status.to_string() << "\n" << o.sig);
      REQUIRE(o.status.ok());
      int match = -1;
      for (int st = state; st < n_states && match < 0; ++st) {
        if (ref[static_cast<size_t>(st)][static_cast<size_t>(o.call)] == o.sig) match = st;
      }
      if (match < 0) {
        for (int st = 0; st < state; ++st) {
          if (ref[static_cast<size_t>(st)][static_cast<size_t>(o.call)] == o.sig) {
            FAIL_CHECK("the result is that of state " << st << ", older than the state " << state
                                                      << " this reader has already seen");
          }
        }
      }
      REQUIRE(match >= 0);  // equal to the single-threaded result of a state the writer passed through
      state = match;
      ++per_state[static_cast<size_t>(match)];
      ++total;
    }
  }
  std::ostringstream log;
  for (int st = 0; st < n_states; ++st) log << " s" << st << "=" << per_state[static_cast<size_t>(st)];
  WARN("concurrency: " << total << " reader calls matched a state (first match in order):" << log.str());
  CHECK(per_state.front() > 0);
  CHECK(per_state.back() > 0);

  ENGINE_REQUIRE_OK(bank->verify());
  // Reopened from disk, the bank answers like the final state.
  const bankfmt::Fingerprint fp = model_fingerprint(model);
  std::unique_ptr<MemoryBank> reopened;
  BankOpenOptions oo;
  oo.verify_content = true;
  ENGINE_REQUIRE_OK(MemoryBank::open(dir.string(), model.config(), &fp, oo, &reopened));
  Session s(model, reopened.get());
  for (int c = 0; c < kCallKinds; ++c) {
    std::string sig;
    ENGINE_REQUIRE_OK(call(&s, c, &sig));
    CHECK(sig == ref.back()[static_cast<size_t>(c)]);
  }
}
