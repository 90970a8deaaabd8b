// Writes the HW6 benchmark workload as token ids for `dpo-tool bench-hw6` and scripts/bench/peer_peft_dpo.py, using
// the app's own pipeline: the notebook's pairs (data_size 50, support_ratio 0.1: DEFAULT_TRAIN_PARAMS), each prompt
// chat-templated with the system message and tokenized as the trainer does (TRL 0.9 tokenize_row,
// docs/reference/dpo-data.md#tokenizing-a-row), and the 10 test prompts templated and tokenized as generation does
// (docs/reference/chat-template.md#bos-in-generation-prompts, one BOS).
//   npx tsx scripts/bench/makeWorkload.ts [--tokenizer DIR] [--dataset DIR] [--template breeze-v0_1|tokenizer]
//                                         [--out FILE] [--write-tokenizer DIR]
// Defaults: ../shared/tokenizers/mistral-v0.1 (Breeze's base vocabulary; $DPO_SHARED overrides ../shared), the HW6
// data in ../shared/datasets/genai-hw6, build/bench/hw6-workload.json. That tokenizer has no chat template, so
// Breeze-7B-Instruct-v0_1's (docs/reference/chat-template.md#the-breeze-template, verbatim) is used unless --template
// tokenizer says otherwise.
// --write-tokenizer DIR also writes that tokenizer (tokenizer.json + tokenizer_config.json with the template used),
// so a random checkpoint can get it and the CLI tokenizes exactly as this workload was made.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { loadPreferenceData, preferencePairs } from '../../src-main/services/data/preferenceFile'
import { loadPromptsFile } from '../../src-main/services/data/promptsFile'
import { promptText } from '../../src-main/services/session/promptText'
import { DEFAULT_TRAIN_PARAMS } from '../../src-shared/params/trainParams'
import { tokenizeTrainingPair } from '../../src-main/services/training/tokenizePair'
import { promptIds } from '../../src-main/services/tokenizer/chatTemplate'
import { TextTokenizer } from '../../src-main/services/tokenizer/textTokenizer'
import { repoRoot, sharedPath } from '../../test/helpers/sharedPath'

/**
 * Breeze-7B-Instruct-v0_1's chat_template, verbatim from docs/reference/chat-template.md#the-breeze-template (the model
 * of the HW6 run).
 */
export const BREEZE_V0_1_TEMPLATE =
  "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'].strip() %}{% else %}{% set loop_messages = messages %}{% set system_message = 'You are a helpful AI assistant built by MediaTek Research. The user you are helping speaks Traditional Chinese and comes from Taiwan.' %}{% endif %}{{ bos_token }}{{ system_message }}   {% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/... or system/user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST] ' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"

export interface WorkloadSide {
  ids: number[]
  labels: number[]
}
export interface Workload {
  tokenizer: string
  template: string
  system: string
  pad_id: number
  eos_ids: number[]
  pairs: { chosen: WorkloadSide; rejected: WorkloadSide }[]
  prompts: number[][]
  stats: Record<string, number>
}

/** tokenizer_config.json as the workload uses it: the file's own, with Breeze's template unless told otherwise. */
function tokenizerConfig(dir: string, template: 'breeze-v0_1' | 'tokenizer'): Record<string, unknown> {
  const config = JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>
  return template === 'tokenizer' ? config : { ...config, chat_template: BREEZE_V0_1_TEMPLATE }
}

async function loadTokenizer(dir: string, template: 'breeze-v0_1' | 'tokenizer'): Promise<TextTokenizer> {
  if (template === 'tokenizer') return TextTokenizer.fromDir(dir)
  const json = JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')) as unknown
  return TextTokenizer.fromObjects(json, tokenizerConfig(dir, template), { source: dir })
}

/** Copies tokenizer.json and writes tokenizer_config.json (with the workload's template) into outDir. */
export function writeTokenizer(tokenizerDir: string, template: 'breeze-v0_1' | 'tokenizer', outDir: string): void {
  mkdirSync(outDir, { recursive: true })
  copyFileSync(path.join(tokenizerDir, 'tokenizer.json'), path.join(outDir, 'tokenizer.json'))
  writeFileSync(
    path.join(outDir, 'tokenizer_config.json'),
    JSON.stringify(tokenizerConfig(tokenizerDir, template), null, 2) + '\n',
  )
}

export async function makeWorkload(
  tokenizerDir: string,
  datasetDir: string,
  template: 'breeze-v0_1' | 'tokenizer',
): Promise<Workload> {
  const tok = await loadTokenizer(tokenizerDir, template)
  const params = DEFAULT_TRAIN_PARAMS
  const padId = tok.padId ?? tok.eosId
  if (padId === null) throw new Error(`${tokenizerDir}: the tokenizer defines neither a pad nor an EOS token`)

  // The trainer's tokenization, with the same function and parameters.
  const data = await loadPreferenceData(datasetDir)
  const pairs = preferencePairs(data, { dataSize: params.dataSize, supportRatio: params.supportRatio }).map((p) => {
    const t = tokenizeTrainingPair(tok, p, params)
    return {
      chosen: { ids: t.chosen.ids, labels: t.chosen.labels },
      rejected: { ids: t.rejected.ids, labels: t.rejected.labels },
    }
  })
  // Generation's prompts (generateResponses.ts): template with the default system message, one BOS.
  const rows = await loadPromptsFile(path.join(datasetDir, 'test_prompt.json'))
  const prompts = rows.map((r) => promptIds(tok, promptText(tok, r.prompt, { system: params.systemMessage })))

  const lengths = pairs.flatMap((p) => [p.chosen.ids.length, p.rejected.ids.length])
  const answers = pairs.flatMap((p) => [p.chosen, p.rejected].map((s) => s.labels.filter((l) => l !== -100).length))
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0)
  return {
    tokenizer: path.basename(path.resolve(tokenizerDir)),
    template,
    system: params.systemMessage,
    pad_id: padId,
    eos_ids: [...tok.eosIds],
    pairs,
    prompts,
    stats: {
      pairs: pairs.length,
      mean_sequence_tokens: sum(lengths) / lengths.length,
      max_sequence_tokens: Math.max(...lengths),
      mean_answer_tokens: sum(answers) / answers.length,
      mean_prompt_tokens: sum(prompts.map((p) => p.length)) / prompts.length,
    },
  }
}

/** Writes the workload, one pair and one prompt per line (small, and still readable); returns the bytes written. */
export function writeWorkload(file: string, w: Workload): number {
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true })
  const text = JSON.stringify({ ...w, pairs: [], prompts: [] })
    .replace('"pairs":[]', `"pairs":[\n${w.pairs.map((p) => JSON.stringify(p)).join(',\n')}\n]`)
    .replace('"prompts":[]', `"prompts":[\n${w.prompts.map((p) => JSON.stringify(p)).join(',\n')}\n]`)
  writeFileSync(file, text + '\n')
  return Buffer.byteLength(text) + 1
}

/** One line saying what the workload holds. */
export function describeWorkload(w: Workload): string {
  const s = w.stats
  return (
    `${s.pairs} pairs (${s.mean_sequence_tokens!.toFixed(1)} tokens per sequence, max ${s.max_sequence_tokens}; ` +
    `${s.mean_answer_tokens!.toFixed(1)} answer tokens), ${w.prompts.length} prompts (${s.mean_prompt_tokens!.toFixed(1)} ` +
    `tokens), tokenizer ${w.tokenizer}, template ${w.template}`
  )
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      tokenizer: { type: 'string', default: sharedPath('tokenizers', 'mistral-v0.1') },
      dataset: { type: 'string', default: sharedPath('datasets', 'genai-hw6') },
      template: { type: 'string', default: 'breeze-v0_1' },
      out: { type: 'string', default: path.join(repoRoot, 'build/bench/hw6-workload.json') },
      'write-tokenizer': { type: 'string' },
    },
  })
  if (values.template !== 'breeze-v0_1' && values.template !== 'tokenizer') {
    throw new Error(`--template must be breeze-v0_1 or tokenizer, got ${values.template}`)
  }
  const w = await makeWorkload(values.tokenizer, values.dataset, values.template)
  const bytes = writeWorkload(values.out, w)
  console.log(`wrote ${values.out}: ${describeWorkload(w)}, ${(bytes / 1024).toFixed(0)} KiB`)
  if (values['write-tokenizer']) {
    writeTokenizer(values.tokenizer, values.template, values['write-tokenizer'])
    console.log(`wrote the tokenizer (template ${values.template}) to ${values['write-tokenizer']}`)
  }
}

if (process.argv[1] && /makeWorkload\.ts$/.test(process.argv[1])) await main()
