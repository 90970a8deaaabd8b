// Test helper: temp folders for the native tests, made under $TMPDIR (else /tmp) and removed when the test process
// exits. Before this, every ctest run left its tiny models behind: thousands of folders, tens of GB, on a machine
// that runs the suite often. DPO_KEEP_TEST_TMP=1 keeps them (and prints where) to look at after a failure; a test
// that aborts skips the exit handlers and so keeps its folders too, which is the evidence wanted then.
#pragma once
#include <ftw.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace dpo_test {

// The folders this process made, removed depth-first (links not followed) by the destructor at exit.
struct TempDirRegistry {
  std::vector<std::string> dirs;
  ~TempDirRegistry() {
    const char* keep = std::getenv("DPO_KEEP_TEST_TMP");
    if (keep && std::string(keep) == "1") {
      for (const std::string& d : dirs) std::fprintf(stderr, "test temp folder kept: %s\n", d.c_str());
      return;
    }
    auto remove_one = [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); };
    for (const std::string& d : dirs) nftw(d.c_str(), remove_one, 16, FTW_DEPTH | FTW_PHYS);
  }
};

inline TempDirRegistry& temp_dir_registry() {
  static TempDirRegistry registry;
  return registry;
}

// A new empty folder "<tmp>/dpo-test-<prefix>XXXXXX"; aborts the test when it cannot be made.
inline std::string make_temp_dir(const std::string& prefix = "") {
  const char* env = std::getenv("TMPDIR");
  std::string tmpl = std::string(env && *env ? env : "/tmp") + "/dpo-test-" + prefix + "XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) {
    std::perror(("mkdtemp " + tmpl).c_str());
    std::abort();
  }
  TempDirRegistry& registry = temp_dir_registry();  // constructed before the first folder is recorded
  registry.dirs.emplace_back(buf.data());
  return registry.dirs.back();
}

}  // namespace dpo_test
