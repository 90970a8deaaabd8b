// Fuzz targets for the dataset readers (src-main/services/data): preference files (HW6 labelled_data.json, TRL
// JSON / JSONL, plain and conversational) and prompts files (test_prompt.json, JSONL).
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { loadPreferenceData, preferencePairs } from '../../../src-main/services/data/preferenceFile'
import { firstInvalidUtf8, loadPromptsFile } from '../../../src-main/services/data/promptsFile'
import { ensure, isNonEmptyText, readOrRefuse } from '../property'
import { text, type JsFuzzTarget } from '../jsTarget'

const BAD_INPUT = ['E_BAD_INPUT']

/** Every id once (a number or a non-empty string), as the readers promise. */
function checkIds(ids: readonly unknown[]): void {
  const seen = new Set<string>()
  for (const id of ids) {
    ensure((typeof id === 'number' && Number.isFinite(id)) || isNonEmptyText(id), `invalid id ${JSON.stringify(id)}`)
    const key = `${typeof id}:${id}`
    ensure(!seen.has(key), `id ${JSON.stringify(id)} appears twice`)
    seen.add(key)
  }
}

/** TRL's conversational roles: a chat template would drop any other without a word. */
const ROLES = new Set(['system', 'user', 'assistant'])

function checkMessages(prompt: unknown): void {
  ensure(Array.isArray(prompt) && prompt.length > 0, 'a conversational prompt is not a non-empty message list')
  for (const m of prompt as unknown[]) {
    const msg = m as { role?: unknown; content?: unknown }
    ensure(typeof msg.role === 'string' && typeof msg.content === 'string', 'a message lacks a string role or content')
    ensure(ROLES.has(msg.role), `a message with role ${JSON.stringify(msg.role)} was accepted`)
  }
}

/** Text with invalid UTF-8 is refused, never read with U+FFFD in place of its bytes (it would train on them). */
function checkUtf8(input: Uint8Array): void {
  const at = firstInvalidUtf8(input)
  ensure(at < 0, `a file with invalid UTF-8 at byte ${at} was accepted`)
}

/** HW6 rows, then the same rows as TRL JSONL, as TRL conversational JSON: the real data in every layout. */
function hw6Seeds(shared: string): Uint8Array[] {
  const file = path.join(shared, 'datasets', 'genai-hw6', 'labelled_data.json')
  if (!existsSync(file)) return []
  const raw = readFileSync(file)
  const rows = (
    JSON.parse(raw.toString('utf8')) as Array<{ id: number; prompt: string; support: string; oppose: string }>
  ).slice(0, 4)
  const trl = rows.map((r) => ({ prompt: r.prompt, chosen: r.support, rejected: r.oppose }))
  const conversational = rows.map((r) => ({
    id: r.id,
    prompt: [
      { role: 'system', content: '回覆請少於20字' },
      { role: 'user', content: r.prompt },
    ],
    chosen: [{ role: 'assistant', content: r.support }],
    rejected: [{ role: 'assistant', content: [{ type: 'text', text: r.oppose }] }],
  }))
  return [
    text(JSON.stringify(rows, null, 4)),
    text(trl.map((r) => JSON.stringify(r)).join('\n')),
    text(JSON.stringify(conversational)),
  ]
}

export const preferenceDataset: JsFuzzTarget = {
  name: 'dataset_preference',
  file: 'a preference dataset (HW6 labelled_data.json, TRL JSON/JSONL, string or conversational)',
  kind: 'json-records',
  seeds: hw6Seeds,
  dictionary: [
    'id',
    'prompt',
    'support',
    'oppose',
    'chosen',
    'rejected',
    'role',
    'content',
    'type',
    'text',
    'system',
    'user',
    'assistant',
    'tool',
    'image',
  ],
  fragments: [
    { id: 7, prompt: 'q', support: 's', oppose: 'o' },
    { prompt: 'q', chosen: 'c', rejected: 'r' },
    {
      prompt: [{ role: 'user', content: 'q' }],
      chosen: [{ role: 'assistant', content: 'c' }],
      rejected: [{ role: 'assistant', content: 'r' }],
    },
    [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: 'a' },
    ],
    { role: 'assistant', content: [{ type: 'text', text: 't' }] },
    [{ type: 'text', text: 't' }, { type: 'image' }],
  ],
  prepare() {},
  async run(input, dir) {
    const file = path.join(dir, 'preference.json')
    writeFileSync(file, input)
    await readOrRefuse(
      () => loadPreferenceData(file),
      (data) => {
        checkUtf8(input)
        ensure(data.file === file && data.rows.length > 0, 'no rows, or the wrong file')
        checkIds(data.rows.map((r) => r.id))
        for (const r of data.rows) {
          if (typeof r.prompt === 'string') ensure(isNonEmptyText(r.prompt), 'an empty prompt was accepted')
          else checkMessages(r.prompt)
          const answers = data.format === 'hw6' ? [r.support, r.oppose] : [r.chosen, r.rejected]
          ensure(answers.every(isNonEmptyText), `a ${data.format} row lacks an answer`)
        }
        ensure(
          data.conversational === data.rows.some((r) => typeof r.prompt !== 'string'),
          'conversational flag is wrong',
        )
        const pairs = preferencePairs(data, { dataSize: data.rows.length, supportRatio: 0.1 })
        ensure(pairs.length === data.rows.length, 'preferencePairs lost rows')
        ensure(
          pairs.every((p) => isNonEmptyText(p.chosen) && isNonEmptyText(p.rejected)),
          'a pair lacks an answer',
        )
      },
      { codes: BAD_INPUT, names: [file] },
    )
  },
}

export const promptsDataset: JsFuzzTarget = {
  name: 'dataset_prompts',
  file: 'a prompts file (HW6 test_prompt.json, JSONL of {id?, prompt})',
  kind: 'json-records',
  seeds(shared) {
    const file = path.join(shared, 'datasets', 'genai-hw6', 'test_prompt.json')
    if (!existsSync(file)) return []
    const rows = JSON.parse(readFileSync(file, 'utf8')) as unknown[]
    return [
      new Uint8Array(readFileSync(file)),
      text(
        rows
          .slice(0, 3)
          .map((r) => JSON.stringify(r))
          .join('\r\n'),
      ),
    ]
  },
  dictionary: ['id', 'prompt'],
  fragments: [{ id: 1, prompt: 'q' }, { prompt: 'q' }, { id: 'a-1', prompt: 'q' }],
  prepare() {},
  async run(input, dir) {
    const file = path.join(dir, 'prompts.jsonl')
    writeFileSync(file, input)
    await readOrRefuse(
      () => loadPromptsFile(file),
      (rows) => {
        checkUtf8(input)
        ensure(rows.length > 0, 'no rows')
        checkIds(rows.map((r) => r.id))
        ensure(
          rows.every((r) => isNonEmptyText(r.prompt)),
          'an empty prompt was accepted',
        )
      },
      { codes: BAD_INPUT, names: [file] },
    )
  },
}
