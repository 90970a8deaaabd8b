// TextTokenizer: a Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) loaded with @huggingface/tokenizers,
// with transformers' special-token rules (BOS/EOS/PAD ids, add_bos_token) and a streaming decoder
// (docs/reference/chat-template.md#tokenizer-facts, docs/reference/generation.md#answer-text).
//
// How @huggingface/tokenizers 0.2.0 behaves (checked against its source and the real Mistral/stories260K files):
// - It follows tokenizer.json only. `legacy`, `add_bos_token` and `add_eos_token` in tokenizer_config.json are ignored:
//   the post-processor in tokenizer.json alone decides what add_special_tokens adds.
// - Text is first split on added tokens (trie, longest match), so the literal "<s>" in text is id 1 even with
//   add_special_tokens=false (docs/reference/chat-template.md#tokenizer-facts). Each remaining piece is normalized on
//   its own: with the Llama/Mistral "legacy" tokenizer.json (normalizer Prepend "▁" + Replace " "->"▁", no
//   pre-tokenizer) every piece after a special token gets a "▁" prefix, as in the Rust library: "<s>Hello" ->
//   [1, 22557("▁Hello")], and "<s> Hello" -> [1, 28705("▁"), 22557]. A Metaspace pre-tokenizer with prepend_scheme
//   "first" prepends only to the first piece (the Rust library checks "starts at offset 0 of the input": same result).
// - decode() throws on an empty id list, maps unknown ids to the unk token (the Rust library drops them), and its
//   ByteFallback decoder uses a lenient TextDecoder (one U+FFFD per maximal invalid subpart) where the Rust
//   library turns a whole run of byte tokens that is not valid UTF-8 into one U+FFFD per byte. The wrapper below
//   works around all three so answers decode as transformers would (docs/reference/generation.md#answer-text).
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { ByteFallbackDecoder, SequenceDecoder, Tokenizer } from '@huggingface/tokenizers'
import { StudioError, errorMessage } from '../errors'
import { parseJson } from '../data/jsonText'

export interface EncodeOptions {
  /** transformers' add_special_tokens; default true, as `tokenizer(text)` does. */
  addSpecialTokens?: boolean | undefined
}

export interface DecodeOptions {
  /** transformers' skip_special_tokens; default false. */
  skipSpecialTokens?: boolean | undefined
}

/** Extra inputs for {@link TextTokenizer.fromObjects}. */
export interface TokenizerSources {
  /** config.json of the model: eos_token_id / pad_token_id fall-backs (never BOS: see bosId). */
  modelConfig?: Record<string, unknown> | null
  /** generation_config.json: its eos_token_id(s) also stop generation. */
  generationConfig?: Record<string, unknown> | null
  /** A chat template from chat_template.jinja / chat_template.json when tokenizer_config.json has none. */
  chatTemplate?: unknown
  /** Where the tokenizer came from, for messages. */
  source?: string
}

type JsonObject = Record<string, unknown>

const REPLACEMENT_CHAR = '\uFFFD'

export class TextTokenizer {
  /** The raw tokenizer_config.json. */
  readonly config: Readonly<JsonObject>
  /** Directory or label the tokenizer was loaded from. */
  readonly source: string
  readonly bosToken: string | null
  readonly eosToken: string | null
  readonly padToken: string | null
  readonly unkToken: string | null
  /**
   * The tokenizer's own BOS (tokenizer_config.json bos_token), as transformers' tokenizer.bos_token_id: null when the
   * tokenizer defines none (Qwen), even if config.json has a bos_token_id. Prompts get this BOS and no other
   * (docs/model-families.md).
   */
  readonly bosId: number | null
  readonly eosId: number | null
  /**
   * pad_token, else config.json pad_token_id, else EOS: the notebook sets `tokenizer.pad_token = eos_token`
   * (docs/reference/model.md#special-tokens: pad = 2), and TRL pads with it
   * (docs/reference/dpo-data.md#collation-and-padding).
   */
  readonly padId: number | null
  /**
   * Every id that ends generation: eosId plus config.json / generation_config.json eos_token_id(s)
   * (docs/reference/generation.md#stopping).
   */
  readonly eosIds: readonly number[]
  /** Whether add_special_tokens=true prepends BOS / appends EOS. */
  readonly addBosToken: boolean
  readonly addEosToken: boolean
  /** The chat_template value as found: a string, an array of {name, template}, or null. */
  readonly chatTemplateSource: unknown

  private readonly lib: Tokenizer
  private readonly specialIdSet: Set<number>
  private readonly vocabLimit: number
  /** True when add_bos_token / add_eos_token were given in tokenizer_config.json and we apply them ourselves. */
  private readonly explicitSpecialFlags: boolean

  private constructor(lib: Tokenizer, config: JsonObject, sources: TokenizerSources) {
    this.lib = lib
    this.config = config
    this.source = sources.source ?? '<memory>'
    const modelConfig = sources.modelConfig ?? {}
    const generationConfig = sources.generationConfig ?? {}

    this.bosToken = tokenContent(config.bos_token)
    this.eosToken = tokenContent(config.eos_token)
    this.padToken = tokenContent(config.pad_token)
    this.unkToken = tokenContent(config.unk_token)

    const idOf = (t: string | null) => (t === null ? undefined : lib.token_to_id(t))
    this.bosId = idOf(this.bosToken) ?? null
    this.eosId = idOf(this.eosToken) ?? firstId(modelConfig.eos_token_id) ?? null
    this.padId = idOf(this.padToken) ?? firstId(modelConfig.pad_token_id) ?? this.eosId
    // When the config names only an EOS id, show the matching token text (used by templates as eos_token).
    if (this.eosToken === null && this.eosId !== null) this.eosToken = lib.id_to_token(this.eosId) ?? null

    const eos = new Set<number>()
    if (this.eosId !== null) eos.add(this.eosId)
    for (const id of allIds(modelConfig.eos_token_id)) eos.add(id)
    for (const id of allIds(generationConfig.eos_token_id)) eos.add(id)
    this.eosIds = [...eos]

    // transformers' LlamaTokenizerFast (and the slow tokenizers) rebuild their post-processor from add_bos_token /
    // add_eos_token, so when the config states them they win over tokenizer.json; otherwise tokenizer.json's
    // post-processor is what `tokenizer(text)` does, and we probe it once.
    const flagBos = typeof config.add_bos_token === 'boolean' ? config.add_bos_token : undefined
    const flagEos = typeof config.add_eos_token === 'boolean' ? config.add_eos_token : undefined
    this.explicitSpecialFlags = flagBos !== undefined || flagEos !== undefined
    const probeWith = lib.encode('a', { add_special_tokens: true }).ids
    const probeWithout = lib.encode('a', { add_special_tokens: false }).ids
    const libAddsBos = this.bosId !== null && probeWith.length > probeWithout.length && probeWith[0] === this.bosId
    const libAddsEos =
      this.eosId !== null && probeWith.length > probeWithout.length && probeWith[probeWith.length - 1] === this.eosId
    this.addBosToken = this.bosId !== null && (flagBos ?? libAddsBos)
    this.addEosToken = this.eosId !== null && (flagEos ?? libAddsEos)

    this.specialIdSet = new Set<number>()
    for (const [id, tok] of lib.get_added_tokens_decoder()) if (tok.special) this.specialIdSet.add(id)
    for (const t of [
      this.bosToken,
      this.eosToken,
      this.padToken,
      this.unkToken,
      ...stringList(config.additional_special_tokens),
    ]) {
      const id = idOf(t)
      if (id !== undefined) this.specialIdSet.add(id)
    }

    let maxId = -1
    for (const id of lib.get_vocab(true).values()) if (id > maxId) maxId = id
    this.vocabLimit = maxId + 1

    this.chatTemplateSource = sources.chatTemplate ?? config.chat_template ?? null
    useRustByteFallback(lib)
  }

  /**
   * Loads tokenizer.json + tokenizer_config.json from a model directory (config.json, generation_config.json and
   * chat_template.jinja / chat_template.json are optional extras).
   */
  static async fromDir(dir: string): Promise<TextTokenizer> {
    const tokenizerJson = await readJsonFile(dir, 'tokenizer.json', true)
    const tokenizerConfig = await readJsonFile(dir, 'tokenizer_config.json', true)
    const modelConfig = await readJsonFile(dir, 'config.json', false)
    const generationConfig = await readJsonFile(dir, 'generation_config.json', false)
    // Newer transformers save the template beside tokenizer_config.json instead of inside it; such a file wins
    // over tokenizer_config.json's entry, as transformers loads it (tokenization_utils_base.py, "chat template
    // file(s) ... take priority").
    let chatTemplate: unknown = undefined
    const jinja = await readTextFile(dir, 'chat_template.jinja')
    if (jinja !== null) chatTemplate = jinja
    else {
      const tplJson = await readJsonFile(dir, 'chat_template.json', false)
      if (tplJson && typeof tplJson === 'object') chatTemplate = (tplJson as JsonObject).chat_template
    }
    return TextTokenizer.fromObjects(tokenizerJson as JsonObject, tokenizerConfig as JsonObject, {
      modelConfig: modelConfig as JsonObject | null,
      generationConfig: generationConfig as JsonObject | null,
      chatTemplate,
      source: dir,
    })
  }

  /** Builds a tokenizer from already-parsed JSON objects. */
  static fromObjects(tokenizerJson: unknown, tokenizerConfig: unknown, sources: TokenizerSources = {}): TextTokenizer {
    const where = sources.source ?? 'the given tokenizer'
    if (!isObject(tokenizerJson)) {
      throw new StudioError('E_BAD_MODEL', `${where}: tokenizer.json is not a JSON object`)
    }
    const config = tokenizerConfig ?? {}
    if (!isObject(config)) {
      throw new StudioError('E_BAD_MODEL', `${where}: tokenizer_config.json is not a JSON object`)
    }
    let lib: Tokenizer
    try {
      lib = new Tokenizer(tokenizerJson, config)
    } catch (e) {
      throw new StudioError(
        'E_BAD_MODEL',
        `${where}: cannot build the tokenizer from tokenizer.json: ${errorMessage(e)}`,
        {
          cause: e,
        },
      )
    }
    return new TextTokenizer(lib, config, sources)
  }

  /** Vocabulary size including added tokens (max id + 1). */
  get vocabSize(): number {
    return this.vocabLimit
  }

  /** Ids of special tokens (added tokens marked special, plus bos/eos/pad/unk/additional_special_tokens). */
  get specialIds(): ReadonlySet<number> {
    return this.specialIdSet
  }

  isSpecial(id: number): boolean {
    return this.specialIdSet.has(id)
  }

  tokenToId(token: string): number | undefined {
    return this.lib.token_to_id(token)
  }

  idToToken(id: number): string | undefined {
    return this.lib.id_to_token(id)
  }

  /** Token strings for ids, as Python's convert_ids_to_tokens (for debugging views). */
  idsToTokens(ids: readonly number[]): string[] {
    return ids.map((id) => this.lib.id_to_token(id) ?? `<id ${id}>`)
  }

  /** `tokenizer(text, add_special_tokens=...).input_ids`. Special-token text inside `text` always maps to its id. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const addSpecial = options.addSpecialTokens ?? true
    if (!addSpecial || !this.explicitSpecialFlags) {
      return this.lib.encode(text, { add_special_tokens: addSpecial }).ids
    }
    const ids = this.lib.encode(text, { add_special_tokens: false }).ids
    if (this.addBosToken && this.bosId !== null) ids.unshift(this.bosId)
    if (this.addEosToken && this.eosId !== null) ids.push(this.eosId)
    return ids
  }

  /** `tokenizer.decode(ids, skip_special_tokens=...)`. Ids outside the vocabulary are dropped, as in the Rust library. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const known = ids.filter(
      (id) => Number.isInteger(id) && id >= 0 && id < this.vocabLimit && this.lib.id_to_token(id) !== undefined,
    )
    const kept = options.skipSpecialTokens ? known.filter((id) => !this.specialIdSet.has(id)) : known
    if (kept.length === 0) return '' // the library throws on an empty list
    return this.lib.decode(kept, { skip_special_tokens: options.skipSpecialTokens ?? false })
  }

  /** A decoder for streaming: feed it all ids so far, get back only the new text. */
  createStreamDecoder(options: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this, options)
  }
}

/**
 * Incremental decoding for live generation. Each call decodes every id so far and returns the text past what was
 * already returned; a trailing U+FFFD is held back because it is usually an incomplete multi-byte character whose
 * remaining byte tokens have not been generated yet (byte fallback, docs/reference/model.md#special-tokens). `flush`
 * releases what was held. Whole-sequence decoding costs O(n) per token, fine for the few hundred tokens of an answer.
 */
export class StreamDecoder {
  private emitted = ''
  private lastIds: readonly number[] = []

  constructor(
    private readonly tokenizer: Pick<TextTokenizer, 'decode'>,
    private readonly options: DecodeOptions = {},
  ) {}

  /** Text returned so far. */
  get text(): string {
    return this.emitted
  }

  /** `ids`: every id generated so far (not only the new ones). Returns the new text, possibly ''. */
  next(ids: readonly number[]): string {
    this.lastIds = ids
    let full = this.tokenizer.decode(ids, this.options)
    let end = full.length
    while (end > 0 && full[end - 1] === REPLACEMENT_CHAR) end--
    full = full.slice(0, end)
    return this.advance(full)
  }

  /** Returns whatever was held back (a trailing U+FFFD that never completed). `ids` defaults to the last call's. */
  flush(ids: readonly number[] = this.lastIds): string {
    this.lastIds = ids
    return this.advance(this.tokenizer.decode(ids, this.options))
  }

  private advance(full: string): string {
    // Decoding is append-only for the decoders in use (Fuse, ByteFallback, Strip of the first char only), so the
    // new text extends what was returned. If a decoder ever rewrites earlier text (clean_up_tokenization_spaces
    // turning " ." into "."), what was returned cannot be taken back: we emit only text past the returned length,
    // and the final answer should come from a fresh decode (answerText.ts), not from the concatenated deltas.
    if (full.length <= this.emitted.length) return ''
    const delta = full.slice(this.emitted.length)
    this.emitted += delta
    return delta
  }
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * Workaround: make ByteFallback decode like the Rust library. The Rust decoder joins a run of <0xNN> tokens and,
 * if the bytes are not valid UTF-8, emits one U+FFFD per byte; @huggingface/tokenizers uses a lenient TextDecoder
 * (one U+FFFD per invalid subpart, and it strips a leading U+FEFF). Only matters for ill-formed output, but keeps
 * answer text byte-for-byte with transformers.
 */
function useRustByteFallback(lib: Tokenizer): void {
  const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
  const rustLike = {
    decode(bytes: Uint8Array): string {
      try {
        return strict.decode(bytes)
      } catch {
        return REPLACEMENT_CHAR.repeat(bytes.length)
      }
    },
  } as unknown as ByteFallbackDecoder['text_decoder']
  const visit = (d: unknown): void => {
    if (d instanceof ByteFallbackDecoder) d.text_decoder = rustLike
    else if (d instanceof SequenceDecoder) d.decoders.forEach(visit)
  }
  visit(lib.decoder)
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** tokenizer_config token fields are a string, an AddedToken dict {content, ...}, or null. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v
  if (isObject(v) && typeof v.content === 'string') return v.content
  return null
}

function allIds(v: unknown): number[] {
  if (Number.isInteger(v)) return [v as number]
  if (Array.isArray(v)) return v.filter((x): x is number => Number.isInteger(x))
  return []
}

function firstId(v: unknown): number | undefined {
  return allIds(v)[0]
}

function stringList(v: unknown): (string | null)[] {
  return Array.isArray(v) ? v.map(tokenContent) : []
}

async function readTextFile(dir: string, name: string): Promise<string | null> {
  try {
    return await readFile(path.join(dir, name), 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new StudioError('E_BAD_MODEL', `model directory ${dir}: cannot read ${name}: ${errorMessage(e)}`, {
      cause: e,
    })
  }
}

async function readJsonFile(dir: string, name: string, required: boolean): Promise<unknown> {
  const text = await readTextFile(dir, name)
  if (text === null) {
    if (required) {
      throw new StudioError('E_BAD_MODEL', `model directory ${dir} has no ${name}`, { details: { dir, file: name } })
    }
    return null
  }
  const json = text.replace(/^\uFEFF/, '')
  try {
    return parseJson(json)
  } catch (e) {
    throw new StudioError('E_BAD_MODEL', `model directory ${dir}: ${name} is ${errorMessage(e)}`, {
      cause: e,
      details: { dir, file: name },
    })
  }
}
