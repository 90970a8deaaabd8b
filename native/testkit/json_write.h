// JSON output for the test kit: a parsed json::Value back to text (key order kept, numbers in their shortest exact
// form) and the small edits the checkpoint generator makes to real config files.
#pragma once
#include <string>

#include "io/json.h"

namespace dpo::testkit {

std::string json_dump(const json::Value& v, int indent = 2);

// A copy of object `obj` with `key` set to `value` (appended when new, replaced in place otherwise).
json::Value json_with(const json::Value& obj, const std::string& key, json::Value value);
// A copy of `obj` without `key`.
json::Value json_without(const json::Value& obj, const std::string& key);

}  // namespace dpo::testkit
