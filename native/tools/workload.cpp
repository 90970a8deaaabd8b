// Reads the HW6 benchmark workload JSON with the engine's own JSON reader (io/json.h); see workload.h.
#include "workload.h"

#include "io/json.h"
#include "io/text_file.h"

namespace dpo::tool {

namespace {

[[noreturn]]
void bad(const std::string& path, const std::string& what) {
  throw EngineError(ErrorCode::BadInput, "workload " + path + ": " + what);
}

const json::Value& field(const std::string& path, const json::Value& obj, const std::string& key,
                         const std::string& where) {
  const json::Value* v = obj.find(key);
  if (!v) bad(path, where + "is missing \"" + key + "\"");
  return *v;
}

std::vector<int32_t> ids_of(const std::string& path, const json::Value& v, const std::string& where) {
  if (!v.is_array()) bad(path, where + " must be a list of token ids");
  std::vector<int32_t> out;
  out.reserve(v.as_array().size());
  for (const json::Value& x : v.as_array()) {
    if (!x.is_number()) bad(path, where + " holds a non-number");
    out.push_back(int32_t(x.as_int()));
  }
  return out;
}

ScoredSequence side_of(const std::string& path, const json::Value& pair, const std::string& key, size_t i) {
  const std::string where = "pairs[" + std::to_string(i) + "]." + key;
  const json::Value& s = field(path, pair, key, where + " ");
  ScoredSequence seq;
  seq.ids = ids_of(path, field(path, s, "ids", where + " "), where + ".ids");
  seq.labels = ids_of(path, field(path, s, "labels", where + " "), where + ".labels");
  if (seq.ids.empty() || seq.ids.size() != seq.labels.size()) bad(path, where + ": ids and labels differ in length");
  return seq;
}

}  // namespace

Workload read_workload(const std::string& path) {
  json::Value root;
  try {
    root = json::parse(read_text_file(path));
  } catch (const std::runtime_error& e) {
    bad(path, std::string("not valid JSON: ") + e.what());
  }
  if (!root.is_object()) bad(path, "expected a JSON object");
  Workload w;
  if (const json::Value* t = root.find("tokenizer"); t && t->is_string()) w.tokenizer = t->as_string();
  w.pad_id = int32_t(field(path, root, "pad_id", "").as_int());
  for (int32_t id : ids_of(path, field(path, root, "eos_ids", ""), "eos_ids")) w.eos_ids.push_back(id);
  const json::Value& pairs = field(path, root, "pairs", "");
  if (!pairs.is_array() || pairs.as_array().empty()) bad(path, "\"pairs\" must be a non-empty list");
  for (size_t i = 0; i < pairs.as_array().size(); i++) {
    DpoPair p;
    p.chosen = side_of(path, pairs.as_array()[i], "chosen", i);
    p.rejected = side_of(path, pairs.as_array()[i], "rejected", i);
    w.pairs.push_back(std::move(p));
  }
  const json::Value& prompts = field(path, root, "prompts", "");
  if (!prompts.is_array() || prompts.as_array().empty()) bad(path, "\"prompts\" must be a non-empty list");
  for (size_t i = 0; i < prompts.as_array().size(); i++)
    w.prompts.push_back(ids_of(path, prompts.as_array()[i], "prompts[" + std::to_string(i) + "]"));
  return w;
}

}  // namespace dpo::tool
