// Cases of recorded work (Backend::begin_capture, end_capture, replay, abort_capture) on every backend: a backend
// that cannot record says so (the plain CPU backend) and runs nothing differently; one that can (the guarded CPU
// backend, CUDA graphs) stores the ops without running them, replays them on the same buffers as often as asked,
// keeps memory freed while recording until the recording goes, and discards an aborted recording.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend_ops/registry.h"
#include "op_checks.h"
#include "random_data.h"

using namespace dpo;
using namespace dpo_test;
using namespace dpo_test::ops;
using std::vector;

namespace {

// y += a * x for y = 1, x = 0.5, a = 2 applied k times: 1 + k exactly.
struct Buffers {
  Arena a;
  float* y;
  const float* x;
  int64_t n;
  explicit Buffers(Backend& be, int64_t count) : a(be), n(count) {
    y = a.put(vector<float>(size_t(count), 1.0f));
    x = a.put(vector<float>(size_t(count), 0.5f));
  }
  bool all(float v) {
    const vector<float> h = a.get(y, size_t(n));
    for (float f : h)
      if (f != v) return false;
    return true;
  }
};

// Whether this backend records: the plain CPU backend does not, the others do (unless DPO_CUDA_GRAPHS=0 there).
bool records(Backend& be) {
  if (!be.begin_capture()) return false;
  be.abort_capture();
  return true;
}

}  // namespace

OP_CASE(begin_capture) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.all()) {
    const bool can = t.be->begin_capture();
    std::printf("  %s: %s\n", t.name.c_str(), can ? "records" : "does not record");
    if (t.name == "cpu") CHECK(!can);
    if (t.name == "cpu-guarded") CHECK(can);
    if (!can) continue;
    CHECK(!t.be->begin_capture());  // one recording at a time
    t.be->abort_capture();
    CHECK(t.be->begin_capture());   // and a new one once it is over
    t.be->abort_capture();
  }
}

OP_CASE(end_capture) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.all()) {
    CHECK(t.be->end_capture() == nullptr);  // nothing was being recorded
    Buffers b(*t.be, 1000);
    if (!t.be->begin_capture()) continue;
    t.be->axpy(b.y, b.x, 2.0f, b.n);
    const std::shared_ptr<void> rec = t.be->end_capture();
    CHECK(b.all(1.0f));  // recorded, not run
    if (t.name == "cpu-guarded") CHECK(rec != nullptr);
  }
}

OP_CASE(replay) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.all()) {
    Buffers b(*t.be, 1000);
    if (!t.be->begin_capture()) continue;
    // Memory freed while recording stays with the recording: the recorded ops use it at every replay.
    float* tmp = static_cast<float*>(t.be->alloc(size_t(b.n) * sizeof(float)));
    t.be->scale(tmp, b.x, 4.0f, b.n);   // tmp = 2
    t.be->axpy(b.y, tmp, 0.5f, b.n);    // y += 1
    t.be->free(tmp);
    const std::shared_ptr<void> rec = t.be->end_capture();
    if (!rec) continue;  // a GPU may fail to make the graph: nothing was run either way
    CHECK(b.all(1.0f));
    t.be->replay(rec);
    t.be->synchronize();
    CHECK(b.all(2.0f));
    t.be->replay(rec);
    t.be->replay(rec);
    t.be->synchronize();
    CHECK(b.all(4.0f));
  }
}

OP_CASE(abort_capture) {
  if (!ctx.eval()) return;
  for (const Target& t : ctx.all()) {
    t.be->abort_capture();  // nothing being recorded: a no-op
    Buffers b(*t.be, 1000);
    const uint64_t before = t.be->bytes_in_use();
    if (!records(*t.be)) continue;
    CHECK(t.be->begin_capture());
    float* tmp = static_cast<float*>(t.be->alloc(64 * sizeof(float)));
    t.be->axpy(b.y, b.x, 2.0f, b.n);
    t.be->free(tmp);
    t.be->abort_capture();
    t.be->synchronize();
    CHECK(b.all(1.0f));                         // discarded, never run
    CHECK(t.be->bytes_in_use() == before);      // and the memory it kept is back
    CHECK(t.be->end_capture() == nullptr);
    t.be->axpy(b.y, b.x, 2.0f, b.n);            // the backend runs ops again
    CHECK(b.all(2.0f));
  }
}
