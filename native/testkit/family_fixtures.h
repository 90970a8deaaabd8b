// The model families DPO Studio is tested on, as published: each family's real config.json and
// generation_config.json (every semantic field kept: RoPE scaling block, head_dim, tied embeddings, bos/eos ids,
// sliding-window fields), the sizes its tiny test twin shrinks to, and which real tokenizer and chat template the
// twin gets. Sources are cited per family in family_fixtures.cpp; docs/model-families.md summarises them.
#pragma once
#include <string>
#include <vector>

namespace dpo::testkit {

struct Shrink {
  int hidden, layers, heads, kv_heads;
  int head_dim;  // written only when the real config has head_dim (0: absent, derived as hidden / heads)
  int intermediate;
};

struct FamilyFixture {
  const char* name;               // "qwen3-0.6b", ...: the name `dpo-tool make-model --family` takes
  const char* repo;               // the Hugging Face repository it mirrors
  const char* config_json;        // the real config.json
  const char* generation_json;    // the real generation_config.json
  Shrink shrink;                  // the tiny twin's sizes (everything else stays as published)
  const char* tokenizer;          // folder under shared/tokenizers with the family's real tokenizer
  const char* chat_template;      // the template to put into tokenizer_config.json: nullptr keeps the tokenizer's;
                              // "breeze" takes shared/tokenizers/breeze-7b-instruct/chat_templates.json's
  const char* sources;  // where the config facts come from
};

const std::vector<FamilyFixture>& families();
// The fixture called `name`; throws E_BAD_INPUT listing the known names otherwise.
const FamilyFixture& family(const std::string& name);

// Meta's Llama 3.1 and 3.2 chat templates (tokenizer_config.json "chat_template"): 3.1 prints "Today Date:" from
// date_string (default "26 Jul 2024"), 3.2 from strftime_now("%d %b %Y") when the renderer defines it.
extern const char* const kLlama31ChatTemplate;
extern const char* const kLlama32ChatTemplate;

}  // namespace dpo::testkit
