// Fuzz target for tokenizer_config.json (src-main/services/tokenizer): the special tokens, add_bos/eos flags and
// the chat_template (Jinja, rendered with @huggingface/jinja) beside the demo model's tokenizer.json. A loaded
// tokenizer must render a prompt and encode it to ids inside its vocabulary, or refuse with E_BAD_MODEL.
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { renderPrompt, promptIds } from '../../../src-main/services/tokenizer/chatTemplate'
import { TextTokenizer } from '../../../src-main/services/tokenizer/textTokenizer'
import { repoRoot } from '../../helpers/sharedPath'
import { ensure, readOrRefuse } from '../property'
import type { JsFuzzTarget } from '../jsTarget'

const DEMO = path.join(repoRoot, 'resources', 'demo-model')
const REAL_CONFIGS = [
  'models/stories260K',
  'tokenizers/mistral-v0.1',
  'tokenizers/minimind',
  'tokenizers/qwen2.5',
  'tokenizers/llama-3.1',
]

export const tokenizerConfig: JsFuzzTarget = {
  name: 'tokenizer_config',
  file: 'tokenizer_config.json (special tokens, add_bos_token, chat_template) beside a fixed tokenizer.json',
  kind: 'json',
  seeds(shared) {
    const found = REAL_CONFIGS.map((d) => path.join(shared, d, 'tokenizer_config.json')).filter((f) => existsSync(f))
    return [path.join(DEMO, 'tokenizer_config.json'), ...found].map((f) => new Uint8Array(readFileSync(f)))
  },
  dictionary: [
    'bos_token',
    'eos_token',
    'pad_token',
    'unk_token',
    'add_bos_token',
    'add_eos_token',
    'additional_special_tokens',
    'added_tokens_decoder',
    'content',
    'special',
    'chat_template',
    'name',
    'template',
    'default',
    'tool_use',
    '<s>',
    '</s>',
    '{{ bos_token }}',
    '{% for m in messages %}',
    '{% endfor %}',
    "{{ m['content'] }}",
    '{% if add_generation_prompt %}',
    '{% endif %}',
    "{{ raise_exception('no') }}",
    '{{ messages[0] }}',
    '{%- set x = 1 -%}',
    '{{ x|length }}',
    '{{',
  ],
  fragments: [
    { content: '<s>', special: true },
    [
      { name: 'default', template: '{{ messages[0].content }}' },
      { name: 'tool_use', template: '{{ tools }}' },
    ],
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
  ],
  prepare(dir) {
    copyFileSync(path.join(DEMO, 'tokenizer.json'), path.join(dir, 'tokenizer.json'))
  },
  async run(input, dir) {
    writeFileSync(path.join(dir, 'tokenizer_config.json'), input)
    await readOrRefuse(
      async () => {
        const tok = await TextTokenizer.fromDir(dir)
        const rendered = renderPrompt(tok, 'What is DPO?')
        return { tok, rendered, ids: promptIds(tok, rendered.text) }
      },
      ({ tok, rendered, ids }) => {
        ensure(typeof rendered.text === 'string', 'the rendered prompt is not text')
        ensure(
          ids.every((id) => Number.isInteger(id) && id >= 0 && id < tok.vocabSize),
          'a prompt id lies outside the vocabulary',
        )
        ensure(typeof tok.decode(ids) === 'string', 'decode failed')
      },
      { codes: ['E_BAD_MODEL'], names: [dir, 'chat_template'] },
    )
  },
}
