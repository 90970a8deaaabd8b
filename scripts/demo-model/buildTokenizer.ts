// The demo model's tokenizer, built by the project itself: one token per character of the sample data plus Llama-style
// byte fallback, written as tokenizer.json + tokenizer_config.json that @huggingface/tokenizers (and HF's Rust library) load.
//
// Why this shape (checked against @huggingface/tokenizers 0.2.0's BPE, Tokenizer and decoders):
// - model BPE with no merges and byte_fallback: BPE splits a piece into code points, keeps those in the vocabulary and
//   turns every other one into its UTF-8 bytes <0xNN>, so any text encodes and nothing maps to <unk>.
// - no normalizer and no pre-tokenizer: spaces and newlines are ordinary characters, so there is no "▁" to add and
//   strip again (Metaspace would prepend one to every piece after a special token and break exact round trips).
// - decoder ByteFallback + Fuse: byte runs become text again and tokens are joined with nothing in between.
// - clean_up_tokenization_spaces false: the JS library defaults it to true, which would turn " ." into ".".
import { DEFAULT_SYSTEM_MESSAGE } from '../../src-main/services/tokenizer/chatTemplate'

export const UNK_TOKEN = '<unk>'
export const BOS_TOKEN = '<s>'
export const EOS_TOKEN = '</s>'
/** Ids 0..2, as in Llama/Mistral, so pad = eos = 2 matches the notebook. */
export const DEMO_SPECIAL_TOKENS = [UNK_TOKEN, BOS_TOKEN, EOS_TOKEN] as const
/** <0x00> has this id, <0xFF> this + 255. */
export const BYTE_TOKEN_OFFSET = DEMO_SPECIAL_TOKENS.length
/** First id of the character tokens. */
export const CHAR_TOKEN_OFFSET = BYTE_TOKEN_OFFSET + 256

/**
 * The chat template: "<s>{system}\n問：{question}\n答：{answer}</s>". Every character is a token on a model this small,
 * so markers are kept to five characters a turn (an [INST] template costs 16); the prompt rendered with
 * add_generation_prompt is a prefix of the full conversation, which TRL-style prompt/answer splitting needs. The
 * template has no "[/INST]", so answerText.ts decodes the generated ids alone.
 */
export const DEMO_CHAT_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n" +
  "{% elif m['role'] == 'user' %}問：{{ m['content'] }}\n" +
  "{% elif m['role'] == 'assistant' %}答：{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}" +
  '{% if add_generation_prompt %}答：{% endif %}'

/** Text the template itself writes, so its markers never fall back to bytes. */
const TEMPLATE_TEXT = '問：答：\n'

/** Printable ASCII and newline: English prompts, numbers and code-like text then cost one token a character. */
const ASCII_TEXT = '\n' + String.fromCharCode(...Array.from({ length: 0x7f - 0x20 }, (_, i) => 0x20 + i))

export interface DemoTokenizerFiles {
  /** tokenizer.json */
  tokenizerJson: Record<string, unknown>
  /** tokenizer_config.json */
  tokenizerConfig: Record<string, unknown>
}

/** The <0xNN> spelling both the HF libraries use for byte tokens. */
export function byteToken(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`
}

/**
 * Builds the tokenizer from the texts it will be trained on. The result depends only on the set of characters
 * (sorted by code point), so the same data always gives the same ids.
 */
export function buildDemoTokenizer(texts: string[]): DemoTokenizerFiles {
  const chars = new Set<string>()
  for (const text of [...texts, TEMPLATE_TEXT, DEFAULT_SYSTEM_MESSAGE, ASCII_TEXT]) {
    for (const ch of text) {
      const cp = ch.codePointAt(0)!
      // A lone surrogate is not a character UTF-8 can carry; it must go through bytes (as U+FFFD) like the libraries do.
      if (cp >= 0xd800 && cp <= 0xdfff) continue
      chars.add(ch)
    }
  }
  const sorted = [...chars].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!)

  const vocab: Record<string, number> = {}
  DEMO_SPECIAL_TOKENS.forEach((t, i) => {
    vocab[t] = i
  })
  for (let b = 0; b < 256; b++) vocab[byteToken(b)] = BYTE_TOKEN_OFFSET + b
  sorted.forEach((ch, i) => {
    vocab[ch] = CHAR_TOKEN_OFFSET + i
  })

  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    // Added tokens are matched in raw text before the model runs, so a literal "<s>" in a template is the BOS id.
    added_tokens: DEMO_SPECIAL_TOKENS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: null,
    // No post-processor: add_special_tokens adds nothing, the chat template writes <s> itself.
    post_processor: null,
    decoder: { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Fuse' }] },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: UNK_TOKEN,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: [] as string[][],
    },
  }

  const tokenizerConfig = {
    add_bos_token: false,
    add_eos_token: false,
    bos_token: BOS_TOKEN,
    eos_token: EOS_TOKEN,
    unk_token: UNK_TOKEN,
    pad_token: EOS_TOKEN,
    clean_up_tokenization_spaces: false,
    model_max_length: 512,
    // The generic fast class: Python transformers then reads tokenizer.json as is, with no slow-tokenizer file.
    tokenizer_class: 'PreTrainedTokenizerFast',
    chat_template: DEMO_CHAT_TEMPLATE,
  }

  return { tokenizerJson, tokenizerConfig }
}
