// What every native fuzz target shares: how a property violation is reported and what a clean refusal looks like.
#include <string>

#include "cpu/thread_pool.h"
#include "fuzz_targets.h"

namespace dpo::fuzz {

void violation(const std::string& what) { throw Violation(what); }

void expect_clean_refusal(const EngineError& e, ErrorCode code, const std::string& where) {
  const std::string msg = e.what();
  require(e.code() == code, std::string("refused with ") + e.code_name() + " instead of " + error_code_name(code) +
                                ": " + msg.substr(0, 300));
  require(msg.find(where) != std::string::npos,
          "the error does not name its file or tensor: " + where + " | " + msg.substr(0, 300));
  // A control character (a name's NUL or newline, copied raw) cuts a message short or forges another line.
  for (size_t i = 0; i < msg.size(); i++) {
    const unsigned char ch = (unsigned char)msg[i];
    const bool c1 =
        ch == 0xC2 && i + 1 < msg.size() && (unsigned char)msg[i + 1] >= 0x80 && (unsigned char)msg[i + 1] <= 0x9F;
    require(ch >= 0x20 && ch != 0x7F && !c1, "control character in the error message: " + msg.substr(0, 300));
  }
  // Names from the file appear in messages; they must not turn a short refusal into a wall of text.
  require(msg.size() <= 2048,
          "error message over 2 KB: " + std::to_string(msg.size()) + " bytes | " + msg.substr(0, 300));
}

void use_one_thread() {
  static const bool once = [] {
    set_cpu_thread_count(1);
    return true;
  }();
  (void)once;
}

}  // namespace dpo::fuzz
