// Shared plumbing of the dpo-tool commands: `--flag value` parsing, load options, a wall clock and a small JSON
// writer for the result files (the engine's io/json.h only reads).
#pragma once
#include <chrono>
#include <map>
#include <string>

#include "dpo/engine.h"

namespace dpo::tool {

using Args = std::map<std::string, std::string>;

// `--key value` pairs after the command; a flag followed by another flag (or nothing) reads as "1".
Args parse_args(int argc, char** argv, int from);

// The flag's value, or `def`; with no default the flag is required (E_BAD_INPUT "missing --key").
std::string get(const Args& a, const std::string& key, const std::string& def = "");
int get_int(const Args& a, const std::string& key, const std::string& def = "");

// --quant nf4|none and --backend auto|cpu|cuda (anything else is E_BAD_INPUT).
LoadOptions load_options(const Args& a);

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0);
// CPU seconds of this process so far (all threads): on a shared machine, work per CPU-second is steadier than wall
// time.
double process_cpu_seconds();

// Appends `"key": value` members to a JSON object being built as text; enough for flat result files.
class JsonObject {
 public:
  JsonObject& num(const std::string& key, double v);
  JsonObject& integer(const std::string& key, int64_t v);
  JsonObject& str(const std::string& key, const std::string& v);
  JsonObject& boolean(const std::string& key, bool v);
  JsonObject& raw(const std::string& key, const std::string& json);  // an already-serialised value
  std::string text() const { return "{" + body_ + "}"; }

 private:
  JsonObject& member(const std::string& key, const std::string& json);
  std::string body_;
};
std::string json_quote(const std::string& s);

// Writes `text` to `path` (E_IO naming the path on failure).
void write_file(const std::string& path, const std::string& text);

}  // namespace dpo::tool
