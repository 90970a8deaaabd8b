// Whole-file reads for the small JSON files of a model directory.
#include "io/text_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "dpo/errors.h"

namespace dpo {

std::string read_text_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail(ErrorCode::Io, "cannot open " + path + ": " + std::strerror(errno));
  std::string text;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  bool failed = std::ferror(f);
  std::fclose(f);
  if (failed) fail(ErrorCode::Io, "cannot read " + path);
  return text;
}

}  // namespace dpo
