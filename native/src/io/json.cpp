// The strict RFC 8259 JSON reader behind json.h: a recursive-descent parser over the whole document.
// Strict on purpose: a malformed safetensors header must fail loudly, not be half-read.
#include "io/json.h"

#include <cerrno>
#include <clocale>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace dpo::json {

// ---- Value accessors --------------------------------------------------------------------------------

static const char* type_name(Value::Type t) {
  switch (t) {
    case Value::Type::Null: return "null";
    case Value::Type::Bool: return "a boolean";
    case Value::Type::Number: return "a number";
    case Value::Type::String: return "a string";
    case Value::Type::Array: return "an array";
    case Value::Type::Object: return "an object";
  }
  return "?";
}

[[noreturn]]
static void type_mismatch(Value::Type want, Value::Type got) {
  throw std::runtime_error(std::string("json: expected ") + type_name(want) + ", got " + type_name(got));
}

bool Value::as_bool() const {
  if (type_ != Type::Bool) type_mismatch(Type::Bool, type_);
  return b_;
}

double Value::as_number() const {
  if (type_ != Type::Number) type_mismatch(Type::Number, type_);
  return n_;
}

int64_t Value::as_int() const {
  double d = as_number();
  // 2^63 itself is not representable in int64_t; every double below it in magnitude that is integral is.
  if (d != std::floor(d) || d >= 9223372036854775808.0 || d < -9223372036854775808.0)
    throw std::runtime_error("json: expected an integer, got " + std::to_string(d));
  return int64_t(d);
}

const std::string& Value::as_string() const {
  if (type_ != Type::String) type_mismatch(Type::String, type_);
  return s_;
}

const std::vector<Value>& Value::as_array() const {
  if (type_ != Type::Array) type_mismatch(Type::Array, type_);
  return *a_;
}

const std::map<std::string, Value>& Value::as_object() const {
  if (type_ != Type::Object) type_mismatch(Type::Object, type_);
  return *o_;
}

const std::vector<std::string>& Value::keys() const {
  if (type_ != Type::Object) type_mismatch(Type::Object, type_);
  return *keys_;
}

const Value* Value::find(const std::string& key) const {
  if (type_ != Type::Object) return nullptr;
  auto it = o_->find(key);
  return it == o_->end() ? nullptr : &it->second;
}

Value Value::make_null() { return Value(); }

Value Value::make_bool(bool b) {
  Value v;
  v.type_ = Type::Bool;
  v.b_ = b;
  return v;
}

Value Value::make_number(double d) {
  Value v;
  v.type_ = Type::Number;
  v.n_ = d;
  return v;
}

Value Value::make_string(std::string s) {
  Value v;
  v.type_ = Type::String;
  v.s_ = std::move(s);
  return v;
}

Value Value::make_array(std::vector<Value> a) {
  Value v;
  v.type_ = Type::Array;
  v.a_ = std::make_shared<std::vector<Value>>(std::move(a));
  return v;
}

Value Value::make_object(std::map<std::string, Value> o, std::vector<std::string> keys) {
  Value v;
  v.type_ = Type::Object;
  v.o_ = std::make_shared<std::map<std::string, Value>>(std::move(o));
  v.keys_ = std::make_shared<std::vector<std::string>>(std::move(keys));
  return v;
}

// ---- Parser -----------------------------------------------------------------------------------------

namespace {

// Deep enough for any config or header; shallow enough that hostile input cannot exhaust the stack.
constexpr int kMaxDepth = 64;

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text) {}

  Value document() {
    // RFC 8259 §8.1 lets a parser ignore a leading UTF-8 byte order mark; editors on Windows add one.
    if (s_.compare(0, 3, "\xEF\xBB\xBF") == 0) pos_ = 3;
    skip_space();
    Value v = value(0);
    skip_space();
    if (pos_ != s_.size()) error("unexpected text after the document");
    return v;
  }

 private:
  const std::string& s_;
  size_t pos_ = 0;

  [[noreturn]]
  void error(const std::string& what) const {
    throw std::runtime_error("json: " + what + " at byte " + std::to_string(pos_));
  }

  // A byte for a message: a printable ASCII character quoted, anything else (NUL, control, a UTF-8 lead byte) in
  // hex, so that a message stays one line of valid text and NUL cannot cut it short in what().
  static std::string describe(char c) {
    const unsigned char u = (unsigned char)c;
    if (u >= 0x20 && u < 0x7F) return std::string("character '") + c + "'";
    char buf[16];
    std::snprintf(buf, sizeof buf, "byte 0x%02X", u);
    return buf;
  }

  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }

  void skip_space() {
    while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) pos_++;
  }

  void expect(char c) {
    if (peek() != c || at_end()) error(std::string("expected '") + c + "'");
    pos_++;
  }

  void literal(const char* word) {
    for (const char* p = word; *p; ++p, ++pos_)
      if (at_end() || s_[pos_] != *p) error(std::string("invalid literal (expected '") + word + "')");
  }

  Value value(int depth) {
    if (at_end()) error("unexpected end of input");
    switch (s_[pos_]) {
      case '{': return object(depth + 1);
      case '[': return array(depth + 1);
      case '"': return Value::make_string(string());
      case 't': literal("true"); return Value::make_bool(true);
      case 'f': literal("false"); return Value::make_bool(false);
      case 'n': literal("null"); return Value::make_null();
      default:
        if (s_[pos_] == '-' || (s_[pos_] >= '0' && s_[pos_] <= '9')) return Value::make_number(number());
        error("unexpected " + describe(s_[pos_]));
    }
  }

  Value object(int depth) {
    if (depth > kMaxDepth) error("nesting deeper than " + std::to_string(kMaxDepth));
    expect('{');
    std::map<std::string, Value> members;
    std::vector<std::string> keys;
    skip_space();
    if (peek() == '}') {
      pos_++;
      return Value::make_object(std::move(members), std::move(keys));
    }
    for (;;) {
      skip_space();
      if (peek() != '"') error("expected a string key");
      size_t key_pos = pos_;
      std::string key = string();
      // A duplicate key would silently shadow a tensor or a setting; refuse it instead.
      if (members.count(key)) {
        pos_ = key_pos;
        error("duplicate key " + quote(key));
      }
      skip_space();
      expect(':');
      skip_space();
      members.emplace(key, value(depth));
      keys.push_back(std::move(key));
      skip_space();
      if (peek() == ',') {
        pos_++;
        continue;
      }
      if (peek() == '}') {
        pos_++;
        break;
      }
      error("expected ',' or '}'");
    }
    return Value::make_object(std::move(members), std::move(keys));
  }

  Value array(int depth) {
    if (depth > kMaxDepth) error("nesting deeper than " + std::to_string(kMaxDepth));
    expect('[');
    std::vector<Value> items;
    skip_space();
    if (peek() == ']') {
      pos_++;
      return Value::make_array(std::move(items));
    }
    for (;;) {
      skip_space();
      items.push_back(value(depth));
      skip_space();
      if (peek() == ',') {
        pos_++;
        continue;
      }
      if (peek() == ']') {
        pos_++;
        break;
      }
      error("expected ',' or ']'");
    }
    return Value::make_array(std::move(items));
  }

  // Validates the RFC 8259 grammar first (strtod alone would accept "1.", ".5", "0x10", "inf"),
  // then lets strtod do the correctly rounded conversion.
  double number() {
    size_t start = pos_;
    auto digits = [&] {
      size_t n = 0;
      while (!at_end() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        pos_++;
        n++;
      }
      return n;
    };
    if (peek() == '-') pos_++;
    if (peek() == '0') {
      pos_++;
    } else if (digits() == 0) {
      error("invalid number");
    }
    if (peek() == '.') {
      pos_++;
      if (digits() == 0) error("expected a digit after '.'");
    }
    if (peek() == 'e' || peek() == 'E') {
      pos_++;
      if (peek() == '+' || peek() == '-') pos_++;
      if (digits() == 0) error("expected a digit in the exponent");
    }
    std::string text = s_.substr(start, pos_ - start);
    // strtod reads the locale's decimal point; a host that called setlocale() may use ','.
    const char* point = std::localeconv()->decimal_point;
    if (point && point[0] != '.' && point[0] != '\0') {
      size_t dot = text.find('.');
      if (dot != std::string::npos) text.replace(dot, 1, point);
    }
    errno = 0;
    double d = std::strtod(text.c_str(), nullptr);
    if (errno == ERANGE && std::isinf(d)) {
      pos_ = start;
      error("number out of range");
    }
    return d;
  }

  unsigned hex4() {
    unsigned v = 0;
    for (int i = 0; i < 4; ++i, ++pos_) {
      char c = peek();
      v <<= 4;
      if (c >= '0' && c <= '9') v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
      else error("expected 4 hex digits after \\u");
    }
    return v;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  // \uXXXX, combining a UTF-16 surrogate pair into one code point; lone surrogates are not text.
  unsigned unicode_escape() {
    size_t start = pos_ - 2;  // at the backslash
    unsigned cp = hex4();
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
      pos_ = start;
      error("unpaired low surrogate");
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (peek() != '\\' || pos_ + 1 >= s_.size() || s_[pos_ + 1] != 'u') {
        pos_ = start;
        error("unpaired high surrogate");
      }
      pos_ += 2;
      unsigned lo = hex4();
      if (lo < 0xDC00 || lo > 0xDFFF) {
        pos_ = start;
        error("high surrogate not followed by a low surrogate");
      }
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    return cp;
  }

  // Copies one raw UTF-8 sequence, rejecting overlong forms, surrogates and truncation (RFC 8259 §8.1).
  void utf8_sequence(std::string& out) {
    auto byte = [&](size_t i) { return (unsigned char)(i < s_.size() ? s_[i] : 0); };
    unsigned char c = byte(pos_);
    int len;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else error("invalid UTF-8");
    for (int i = 1; i < len; ++i) {
      unsigned char cc = byte(pos_ + i);
      if ((cc & 0xC0) != 0x80) error("invalid UTF-8");
      cp = (cp << 6) | (cc & 0x3F);
    }
    bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) error("invalid UTF-8");
    out.append(s_, pos_, len);
    pos_ += len;
  }

  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (at_end()) error("unterminated string");
      unsigned char c = (unsigned char)s_[pos_];
      if (c == '"') {
        pos_++;
        return out;
      }
      if (c < 0x20) error("control character in string");
      if (c >= 0x80) {
        utf8_sequence(out);
        continue;
      }
      if (c != '\\') {
        out += char(c);
        pos_++;
        continue;
      }
      pos_++;
      char e = peek();
      pos_++;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': append_utf8(out, unicode_escape()); break;
        default: pos_--; error("invalid escape");
      }
    }
  }
};

}  // namespace

Value parse(const std::string& text) { return Parser(text).document(); }

namespace {

// escape()'s text, stopping before the first character whose escaped form would pass max_bytes (npos: never); sets
// *clipped when it stopped early. Each input character is appended whole (an escape sequence, or a UTF-8 character's
// bytes), so the result is never cut inside one.
std::string escape_up_to(const std::string& s, size_t max_bytes, bool* clipped) {
  std::string out;
  char buf[8];
  *clipped = false;
  size_t last_start = 0;  // out's length where the last character began (each earlier start was within max_bytes)
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = (unsigned char)s[i];
    if (c < 0x80 || c >= 0xC0) {  // a character starts here (not a UTF-8 continuation byte)
      if (out.size() > max_bytes) {  // the last character passed the limit: drop it whole
        out.resize(last_start);
        *clipped = true;
        return out;
      }
      last_start = out.size();
    }
    const unsigned char c1 = i + 1 < s.size() ? (unsigned char)s[i + 1] : 0,
                        c2 = i + 2 < s.size() ? (unsigned char)s[i + 2] : 0;
    // C1 controls (U+0080-U+009F) and bidirectional overrides (U+202A-U+202E, U+2066-U+2069) are valid text, but in
    // a message they can drive a terminal or reorder what the reader sees: escaped like the C0 controls.
    unsigned wide = 0;
    if (c == 0xC2 && c1 >= 0x80 && c1 <= 0x9F) wide = c1;
    else if (c == 0xE2 && c1 == 0x80 && c2 >= 0xAA && c2 <= 0xAE) wide = 0x2000u + (c2 - 0x80);
    else if (c == 0xE2 && c1 == 0x81 && c2 >= 0xA6 && c2 <= 0xA9) wide = 0x2040u + (c2 - 0x80);
    if (wide) {
      std::snprintf(buf, sizeof buf, "\\u%04x", wide);
      out += buf;
      i += wide < 0x100 ? 1 : 2;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7F) {  // DEL too: valid raw in JSON, but these strings also go into messages
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += char(c);
        }
    }
  }
  if (out.size() > max_bytes) {
    out.resize(last_start);
    *clipped = true;
  }
  return out;
}

}  // namespace

std::string quote(const std::string& s) {
  bool clipped = false;
  return "\"" + escape_up_to(s, std::string::npos, &clipped) + "\"";
}

std::string escape(const std::string& s) {
  bool clipped = false;
  std::string out = escape_up_to(s, kMessageNameBytes, &clipped);
  if (clipped) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

}  // namespace dpo::json
