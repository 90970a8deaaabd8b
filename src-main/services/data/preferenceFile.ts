// Preference data for `logps` and training (docs/architecture.md#datasets-and-prompts): the HW6 layout
// (labelled_data.json with {id, prompt, support, oppose}) or TRL's {prompt, chosen, rejected} JSON/JSONL, plain or
// conversational. buildPairs applies the notebook's support_ratio rule (datasets/genai-hw6/README.md,
// docs/reference/dpo-data.md#building-pairs-from-the-hw6-data).
import { stat } from 'node:fs/promises'
import { statOrProblem } from '../pathProblems'
import path from 'node:path'
import type { ChatMessage } from '../tokenizer/chatTemplate'
import { StudioError } from '../errors'
import { quoted } from '../messageText'
import { checkUniqueId, isPlainObject, readId, readJsonRecords, rowError, type RecordId } from './promptsFile'

export type PreferenceFormat = 'hw6' | 'trl'

/** One normalised row. HW6 rows have support/oppose; TRL rows have chosen/rejected. */
export interface PreferenceRow {
  id: RecordId
  /** A plain question, or (TRL conversational) the prompt messages. */
  prompt: string | ChatMessage[]
  chosen?: string
  rejected?: string
  support?: string
  oppose?: string
}

export interface PreferenceData {
  /** The file actually read (labelled_data.json inside a directory). */
  file: string
  format: PreferenceFormat
  /** True when at least one prompt is a message list. */
  conversational: boolean
  rows: PreferenceRow[]
}

/** A training / scoring pair. `position` is the notebook's column: which side the pair prefers (HW6 only). */
export interface PreferencePair {
  id: RecordId
  prompt: string | ChatMessage[]
  chosen: string
  rejected: string
  position: 'support' | 'oppose' | null
}

export interface BuildPairsOptions {
  /** The notebook's data_size: how many leading rows to use (default: all). */
  dataSize?: number | undefined
  /** The notebook's support_ratio in [0, 1] (default 0.1, as the notebook). */
  supportRatio?: number | undefined
}

export const HW6_DATA_FILE = 'labelled_data.json'

/**
 * Loads preference data from a file (JSON array or JSONL) or from an HW6 directory holding labelled_data.json.
 * The format is taken from the first row (support/oppose -> HW6, chosen/rejected -> TRL); every row must match it.
 */
export async function loadPreferenceData(fileOrDir: string): Promise<PreferenceData> {
  let file = fileOrDir
  const { stat: info, problem } = statOrProblem(fileOrDir)
  if (info === null) {
    throw new StudioError('E_BAD_INPUT', `${fileOrDir}: ${problem}`, { details: { file: fileOrDir } })
  }
  if (info.isDirectory()) {
    file = path.join(fileOrDir, HW6_DATA_FILE)
    if (!(await stat(file).catch(() => null))?.isFile()) {
      throw new StudioError('E_BAD_INPUT', `dataset directory ${fileOrDir} has no ${HW6_DATA_FILE}`, {
        details: { file: fileOrDir, missing: HW6_DATA_FILE },
      })
    }
  }

  const { records } = await readJsonRecords(file)
  const first = records[0]!
  if (!isPlainObject(first.value)) throw rowError(file, first.row, undefined, 'expected an object')
  const format: PreferenceFormat | null =
    'support' in first.value || 'oppose' in first.value
      ? 'hw6'
      : 'chosen' in first.value || 'rejected' in first.value
        ? 'trl'
        : null
  if (format === null) {
    throw rowError(
      file,
      first.row,
      undefined,
      'expected fields "support" and "oppose" (HW6 layout) or "chosen" and "rejected" (TRL layout)',
    )
  }

  const rows: PreferenceRow[] = []
  const seen = new Map<string, number>()
  for (const { row, value } of records) {
    if (!isPlainObject(value)) throw rowError(file, row, undefined, 'expected an object')
    const explicitId = readId(file, row, value)
    const id = explicitId ?? row
    const at = explicitId ?? undefined
    if (format === 'hw6') {
      rows.push({
        id,
        prompt: requireText(file, row, at, value, 'prompt'),
        support: requireText(file, row, at, value, 'support'),
        oppose: requireText(file, row, at, value, 'oppose'),
      })
    } else {
      rows.push({
        id,
        prompt: readPrompt(file, row, at, value),
        chosen: readAnswer(file, row, at, value, 'chosen'),
        rejected: readAnswer(file, row, at, value, 'rejected'),
      })
    }
    checkUniqueId(file, row, id, seen)
  }
  return { file, format, conversational: rows.some((r) => typeof r.prompt !== 'string'), rows }
}

/**
 * The notebook's pairs: with N = min(dataSize, rows) and s = supportRatio, the first int(N*s) rows prefer support
 * over oppose and the rest prefer oppose over support. Math.floor of the double product equals Python's int() for
 * non-negative values, float error included: int(50*0.1) = int(5.000000000000001) = 5 and
 * int(100*0.29) = int(28.999999999999996) = 28 in both. (The notebook itself computes int(data_size*s) with the
 * requested data_size and fails when it exceeds the rows; we clamp N first.)
 */
export function buildPairs(rows: readonly PreferenceRow[], options: BuildPairsOptions = {}): PreferencePair[] {
  const supportRatio = options.supportRatio ?? 0.1
  const dataSize = options.dataSize ?? rows.length
  if (!Number.isInteger(dataSize) || dataSize < 1) {
    throw new StudioError('E_BAD_INPUT', `dataSize must be a positive integer, got ${dataSize}`, {
      details: { field: 'dataSize' },
    })
  }
  if (!Number.isFinite(supportRatio) || supportRatio < 0 || supportRatio > 1) {
    throw new StudioError('E_BAD_INPUT', `supportRatio must be between 0 and 1, got ${supportRatio}`, {
      details: { field: 'supportRatio' },
    })
  }
  const n = Math.min(dataSize, rows.length)
  const supportCount = Math.floor(n * supportRatio)
  return rows.slice(0, n).map((r, i) => {
    if (r.support === undefined || r.oppose === undefined) {
      const field = r.support === undefined ? 'support' : 'oppose'
      throw new StudioError(
        'E_BAD_INPUT',
        `row ${i + 1} (id ${quoted(r.id)}): field "${field}" is missing; support_ratio pairs need the HW6 layout`,
        {
          details: { row: i + 1, id: r.id, field },
        },
      )
    }
    const preferSupport = i < supportCount
    return {
      id: r.id,
      prompt: r.prompt,
      chosen: preferSupport ? r.support : r.oppose,
      rejected: preferSupport ? r.oppose : r.support,
      position: preferSupport ? 'support' : 'oppose',
    }
  })
}

/**
 * Pairs from any loaded data: HW6 rows through buildPairs; TRL rows as given (first dataSize of them when set;
 * supportRatio does not apply).
 */
export function preferencePairs(data: PreferenceData, options: BuildPairsOptions = {}): PreferencePair[] {
  if (data.format === 'hw6') return buildPairs(data.rows, options)
  const n = Math.min(options.dataSize ?? data.rows.length, data.rows.length)
  return data.rows
    .slice(0, n)
    .map((r) => ({ id: r.id, prompt: r.prompt, chosen: r.chosen!, rejected: r.rejected!, position: null }))
}

// ---------------------------------------------------------------------------------------------------------------

function requireText(
  file: string,
  row: number,
  id: RecordId | undefined,
  value: Record<string, unknown>,
  field: string,
): string {
  const v = value[field]
  if (v === undefined) throw rowError(file, row, id, `field "${field}" is missing`, field)
  if (typeof v !== 'string' || v.trim() === '')
    throw rowError(file, row, id, `field "${field}" must be a non-empty string`, field)
  return v
}

/** TRL prompt: a string, or a conversational list of {role, content}. */
function readPrompt(
  file: string,
  row: number,
  id: RecordId | undefined,
  value: Record<string, unknown>,
): string | ChatMessage[] {
  const v = value.prompt
  if (Array.isArray(v)) {
    const messages = readMessages(file, row, id, v, 'prompt')
    if (messages.length === 0) throw rowError(file, row, id, 'field "prompt" is an empty message list', 'prompt')
    return messages
  }
  return requireText(file, row, id, value, 'prompt')
}

/**
 * TRL answer: a string, or a conversational list whose assistant messages hold the answer (usually exactly one;
 * several are joined with a newline).
 */
function readAnswer(
  file: string,
  row: number,
  id: RecordId | undefined,
  value: Record<string, unknown>,
  field: 'chosen' | 'rejected',
): string {
  const v = value[field]
  if (!Array.isArray(v)) return requireText(file, row, id, value, field)
  const assistant = readMessages(file, row, id, v, field).filter((m) => m.role === 'assistant')
  if (assistant.length === 0) throw rowError(file, row, id, `field "${field}" has no assistant message`, field)
  const text = assistant.map((m) => m.content).join('\n')
  if (text.trim() === '') throw rowError(file, row, id, `field "${field}" has an empty assistant message`, field)
  return text
}

/** The roles of TRL's conversational format; a template would drop anything else without a word. */
const MESSAGE_ROLES = ['system', 'user', 'assistant']

function readMessages(
  file: string,
  row: number,
  id: RecordId | undefined,
  list: unknown[],
  field: string,
): ChatMessage[] {
  return list.map((m, k) => {
    const where = `field "${field}" message ${k + 1}`
    if (!isPlainObject(m) || typeof m.role !== 'string')
      throw rowError(file, row, id, `${where} must be an object with a string "role"`, field)
    if (!MESSAGE_ROLES.includes(m.role)) {
      throw rowError(
        file,
        row,
        id,
        `${where} has role ${quoted(m.role)}; expected "system", "user" or "assistant"`,
        field,
      )
    }
    const content = messageText(m.content)
    if (content === null)
      throw rowError(file, row, id, `${where} must have a string "content" (or a list of text parts)`, field)
    return { role: m.role, content }
  })
}

/** Message content: a string, or the multimodal form [{type: 'text', text}, ...] with text parts only. */
function messageText(content: unknown): string | null {
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) return null
  const parts: string[] = []
  for (const p of content) {
    if (!isPlainObject(p) || p.type !== 'text' || typeof p.text !== 'string') return null
    parts.push(p.text)
  }
  return parts.join('')
}
