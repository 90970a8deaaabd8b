// Engine errors: every failure leaves the engine as a C++ exception carrying a stable code,
// which the addon maps to a JS Error with `.code` (docs/architecture.md#errors). Never exit()/abort().
#pragma once
#include <stdexcept>
#include <string>

namespace dpo {

enum class ErrorCode {
  BadInput,   // E_BAD_INPUT: arguments or data supplied by the user are invalid
  BadModel,   // E_BAD_MODEL: a model directory, config or weight file is malformed or unsupported
  NoCuda,     // E_NO_CUDA: CUDA was requested but no usable GPU / driver exists
  Oom,        // E_OOM: an allocation failed
  Cancelled,  // E_CANCELLED: the caller cancelled a long operation
  Io,         // E_IO: a file could not be read or written
  Internal,   // E_INTERNAL: a bug; the message says where
  DeviceFault,  // E_DEVICE_FAULT: the GPU faulted; its context is unusable until the process restarts
  TooLong,  // E_TOO_LONG: a sequence or a generation would run past the model's context (max_position_embeddings)
};

inline const char* error_code_name(ErrorCode c) {
  switch (c) {
    case ErrorCode::BadInput: return "E_BAD_INPUT";
    case ErrorCode::BadModel: return "E_BAD_MODEL";
    case ErrorCode::NoCuda: return "E_NO_CUDA";
    case ErrorCode::Oom: return "E_OOM";
    case ErrorCode::Cancelled: return "E_CANCELLED";
    case ErrorCode::Io: return "E_IO";
    case ErrorCode::Internal: return "E_INTERNAL";
    case ErrorCode::DeviceFault: return "E_DEVICE_FAULT";
    case ErrorCode::TooLong: return "E_TOO_LONG";
  }
  return "E_INTERNAL";
}

class EngineError : public std::runtime_error {
 public:
  EngineError(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }
  const char* code_name() const { return error_code_name(code_); }

 private:
  ErrorCode code_;
};

[[noreturn]]
inline void fail(ErrorCode code, const std::string& message) {
  throw EngineError(code, message);
}

}  // namespace dpo
