// Fuzz target `json`: io/json's reader on any bytes. A document either parses, and then survives a write + re-read
// unchanged (strings, numbers, key order), or is refused with "json: ... at byte N" for an N inside the input.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz_targets.h"
#include "io/json.h"

namespace dpo::fuzz {
namespace {

// A canonical text for v: json::quote for strings, %.17g (round-trips a double) for numbers.
void write(const json::Value& v, std::string& out) {
  switch (v.type()) {
    case json::Value::Type::Null: out += "null"; return;
    case json::Value::Type::Bool: out += v.as_bool() ? "true" : "false"; return;
    case json::Value::Type::Number: {
      require(std::isfinite(v.as_number()), "a parsed number is not finite");
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.17g", v.as_number());
      out += buf;
      return;
    }
    case json::Value::Type::String: out += json::quote(v.as_string()); return;
    case json::Value::Type::Array: {
      out += '[';
      const auto& items = v.as_array();
      for (size_t i = 0; i < items.size(); i++) {
        if (i) out += ',';
        write(items[i], out);
      }
      out += ']';
      return;
    }
    case json::Value::Type::Object: {
      out += '{';
      const auto& keys = v.keys();
      require(keys.size() == v.as_object().size(), "an object's key list and map disagree");
      for (size_t i = 0; i < keys.size(); i++) {
        if (i) out += ',';
        const json::Value* member = v.find(keys[i]);
        require(member != nullptr, "an object lost a key: " + json::quote(keys[i]));
        out += json::quote(keys[i]) + ':';
        write(*member, out);
      }
      out += '}';
      return;
    }
  }
}

}  // namespace

void fuzz_json(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  json::Value v;
  try {
    v = json::parse(text);
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    const size_t at = msg.rfind(" at byte ");
    require(msg.rfind("json: ", 0) == 0 && at != std::string::npos, "unclear JSON error: " + msg.substr(0, 300));
    const unsigned long long byte = std::strtoull(msg.c_str() + at + 9, nullptr, 10);
    require(byte <= size, "JSON error points past the input: " + msg.substr(0, 300));
    return;
  }
  std::string once, twice;
  write(v, once);
  json::Value again;
  try {
    again = json::parse(once);
  } catch (const std::runtime_error& e) {
    violation(std::string("the reader refuses what it accepted, once written back: ") + e.what());
  }
  write(again, twice);
  require(once == twice, "a document changes when written and read back");
}

}  // namespace dpo::fuzz
