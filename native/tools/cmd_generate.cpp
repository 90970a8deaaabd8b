// `dpo-tool generate --model DIR --ids 1,2,3 [--max-new N]`: greedy ids for one prompt of token ids (no tokenizer:
// the tool sees ids only, like the engine).
#include <cstdio>
#include <sstream>

#include "commands.h"

namespace dpo::tool {

int cmd_generate(const Args& a) {
  auto model = Model::load(get(a, "model"), load_options(a));
  std::vector<int32_t> ids;
  std::stringstream ss(get(a, "ids"));
  for (std::string x; std::getline(ss, x, ',');) ids.push_back(std::stoi(x));
  GenerateOptions opt;
  opt.max_new_tokens = get_int(a, "max-new", "32");
  opt.eos_ids = model->info().config.eos_token_ids;
  auto r = model->generate({ids}, opt);
  for (size_t i = 0; i < r.tokens[0].size(); i++) std::printf("%s%d", i ? "," : "", r.tokens[0][i]);
  std::printf("\n");
  return 0;
}

}  // namespace dpo::tool
