// A small, strict JSON reader (RFC 8259) for config.json, safetensors headers and index files.
// Only what the engine reads: objects, arrays, strings, numbers, booleans, null.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace dpo::json {

class Value {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  bool as_bool() const;                       // throws std::runtime_error on a type mismatch
  double as_number() const;
  int64_t as_int() const;                     // the number must be integral
  const std::string& as_string() const;
  const std::vector<Value>& as_array() const;
  const std::map<std::string, Value>& as_object() const;
  // Insertion order of object keys (safetensors tensors are reported in file order).
  const std::vector<std::string>& keys() const;

  const Value* find(const std::string& key) const;  // nullptr when not an object or key absent

  static Value make_null();
  static Value make_bool(bool b);
  static Value make_number(double d);
  static Value make_string(std::string s);
  static Value make_array(std::vector<Value> a);
  static Value make_object(std::map<std::string, Value> o, std::vector<std::string> keys);

 private:
  Type type_ = Type::Null;
  bool b_ = false;
  double n_ = 0;
  std::string s_;
  std::shared_ptr<std::vector<Value>> a_;
  std::shared_ptr<std::map<std::string, Value>> o_;
  std::shared_ptr<std::vector<std::string>> keys_;
};

// Parses a whole document; trailing non-space text is an error.
// Throws std::runtime_error("... at byte N") on malformed input.
Value parse(const std::string& text);

// s as a JSON string literal, quotes included (control characters escaped: names and metadata are user-visible).
std::string quote(const std::string& s);
// The same escaping without the quotes: how a name read from a user's file goes into an error message, so that a
// NUL cannot cut the message short and a newline cannot forge another line. At most kMessageNameBytes of escaped text
// (whole characters), then "... (N bytes)": a megabyte-long name must not make a megabyte-long message.
constexpr size_t kMessageNameBytes = 256;
std::string escape(const std::string& s);

}  // namespace dpo::json
