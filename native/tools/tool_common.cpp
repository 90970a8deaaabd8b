// Argument parsing, load options, timing and JSON text for the dpo-tool commands (see tool_common.h).
#include "tool_common.h"

#include <time.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "cpu/thread_pool.h"
#include "io/json.h"

namespace dpo::tool {

Args parse_args(int argc, char** argv, int from) {
  Args a;
  for (int i = from; i < argc; i++) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) throw EngineError(ErrorCode::BadInput, "unexpected argument " + k);
    a[k.substr(2)] = (i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0) ? argv[++i] : "1";
  }
  return a;
}

std::string get(const Args& a, const std::string& key, const std::string& def) {
  auto it = a.find(key);
  if (it != a.end()) return it->second;
  if (def.empty()) throw EngineError(ErrorCode::BadInput, "missing --" + key);
  return def;
}

int get_int(const Args& a, const std::string& key, const std::string& def) {
  const std::string v = get(a, key, def);
  try {
    size_t used = 0;
    int n = std::stoi(v, &used);
    if (used == v.size()) return n;
  } catch (const std::exception&) {
  }
  throw EngineError(ErrorCode::BadInput, "--" + key + " must be an integer, got '" + v + "'");
}

LoadOptions load_options(const Args& a) {
  LoadOptions o;
  const std::string q = get(a, "quant", "nf4"), b = get(a, "backend", "auto");
  if (q != "nf4" && q != "none") throw EngineError(ErrorCode::BadInput, "--quant must be nf4 or none, got " + q);
  if (b != "auto" && b != "cpu" && b != "cuda")
    throw EngineError(ErrorCode::BadInput, "--backend must be auto, cpu or cuda, got " + b);
  o.quant = q == "none" ? QuantMode::None : QuantMode::Nf4;
  o.backend = b == "cpu" ? BackendChoice::Cpu : b == "cuda" ? BackendChoice::Cuda : BackendChoice::Auto;
  if (a.count("threads")) set_cpu_thread_count(get_int(a, "threads"));  // the CPU backend's pool (default: all cores)
  return o;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

std::string json_quote(const std::string& s) { return dpo::json::quote(s); }

JsonObject& JsonObject::member(const std::string& key, const std::string& json) {
  if (!body_.empty()) body_ += ", ";
  body_ += json_quote(key) + ": " + json;
  return *this;
}

JsonObject& JsonObject::num(const std::string& key, double v) {
  if (!std::isfinite(v)) return member(key, "null");  // JSON has no NaN/inf
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return member(key, buf);
}
JsonObject& JsonObject::integer(const std::string& key, int64_t v) { return member(key, std::to_string(v)); }
JsonObject& JsonObject::str(const std::string& key, const std::string& v) { return member(key, json_quote(v)); }
JsonObject& JsonObject::boolean(const std::string& key, bool v) { return member(key, v ? "true" : "false"); }
JsonObject& JsonObject::raw(const std::string& key, const std::string& json) { return member(key, json); }

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  f.close();
  if (!f) throw EngineError(ErrorCode::Io, "cannot write " + path);
}

}  // namespace dpo::tool
