// Reads a whole (small) text file such as config.json or a safetensors index; I/O failures are E_IO naming the path.
#pragma once
#include <string>

namespace dpo {

std::string read_text_file(const std::string& path);

}  // namespace dpo
