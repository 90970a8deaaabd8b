// JSON writing for the test kit (see json_write.h).
#include "json_write.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace dpo::testkit {

namespace {

// The shortest %.*g form that reads back as the same double; integral values keep a ".0" only if the source had
// no way to say so (JSON does not distinguish), so they are written as integers.
std::string number_text(double d) {
  if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", d);
    return buf;
  }
  char buf[40];
  for (int p = 1; p <= 17; p++) {
    std::snprintf(buf, sizeof buf, "%.*g", p, d);
    if (std::strtod(buf, nullptr) == d) break;
  }
  return buf;
}

void dump(std::string& out, const json::Value& v, int indent, int depth) {
  const std::string pad(size_t(indent * (depth + 1)), ' '), end_pad(size_t(indent * depth), ' ');
  const char* nl = indent ? "\n" : "";
  switch (v.type()) {
    case json::Value::Type::Null: out += "null"; return;
    case json::Value::Type::Bool: out += v.as_bool() ? "true" : "false"; return;
    case json::Value::Type::Number: out += number_text(v.as_number()); return;
    case json::Value::Type::String: out += json::quote(v.as_string()); return;
    case json::Value::Type::Array: {
      const auto& a = v.as_array();
      if (a.empty()) {
        out += "[]";
        return;
      }
      out += "[";
      out += nl;
      for (size_t i = 0; i < a.size(); i++) {
        out += pad;
        dump(out, a[i], indent, depth + 1);
        out += i + 1 < a.size() ? "," : "";
        out += nl;
      }
      out += end_pad + "]";
      return;
    }
    case json::Value::Type::Object: {
      const auto& keys = v.keys();
      if (keys.empty()) {
        out += "{}";
        return;
      }
      out += "{";
      out += nl;
      for (size_t i = 0; i < keys.size(); i++) {
        out += pad + json::quote(keys[i]) + (indent ? ": " : ":");
        dump(out, *v.find(keys[i]), indent, depth + 1);
        out += i + 1 < keys.size() ? "," : "";
        out += nl;
      }
      out += end_pad + "}";
      return;
    }
  }
}

}  // namespace

std::string json_dump(const json::Value& v, int indent) {
  std::string out;
  dump(out, v, indent, 0);
  return out;
}

json::Value json_with(const json::Value& obj, const std::string& key, json::Value value) {
  std::map<std::string, json::Value> m = obj.as_object();
  std::vector<std::string> keys = obj.keys();
  if (!m.count(key)) keys.push_back(key);
  m[key] = std::move(value);
  return json::Value::make_object(std::move(m), std::move(keys));
}

json::Value json_without(const json::Value& obj, const std::string& key) {
  std::map<std::string, json::Value> m = obj.as_object();
  std::vector<std::string> keys;
  for (const std::string& k : obj.keys())
    if (k != key) keys.push_back(k);
  m.erase(key);
  return json::Value::make_object(std::move(m), std::move(keys));
}

}  // namespace dpo::testkit
