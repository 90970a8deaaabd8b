// Prompts files for `generate` / `run --test-prompts` (docs/architecture.md#datasets-and-prompts): the HW6
// test_prompt.json layout (a JSON array of {id, prompt}) or JSONL of {id?, prompt}. Also the JSON/JSONL record reader
// that preferenceFile.ts shares.
import { readFile } from 'node:fs/promises'
import { StudioError, errorMessage } from '../errors'
import { quoted } from '../messageText'
import { pathProblem } from '../pathProblems'
import { JsonSyntaxError, jsonPathAt, parseJson } from './jsonText'
import type { RecordId } from '../../../src-shared/data/recordId'

export type { RecordId }

export interface PromptRow {
  id: RecordId
  prompt: string
}

/** One parsed record and where it came from: `row` is the 1-based array index (JSON) or line number (JSONL). */
export interface JsonRecord {
  row: number
  value: unknown
}

export interface JsonRecords {
  file: string
  layout: 'json-array' | 'jsonl'
  records: JsonRecord[]
}

/**
 * Reads a JSON array file or a JSONL file. A file whose first non-blank character is '[' is one JSON array;
 * anything else is JSONL (one value per line, blank lines skipped, row = line number).
 */
export async function readJsonRecords(file: string): Promise<JsonRecords> {
  let bytes: Buffer
  try {
    bytes = await readFile(file)
  } catch (e) {
    throw new StudioError('E_BAD_INPUT', `${file}: file ${pathProblem(e)}`, { cause: e, details: { file } })
  }
  // Invalid UTF-8 is an error naming its row and field, never silently U+FFFD (which would train on damaged text).
  const bad = firstInvalidUtf8(bytes)
  if (bad >= 0) throw invalidUtf8Error(file, bytes, bad)
  const text = bytes.toString('utf8').replace(/^\uFEFF/, '')
  if (text.trim() === '') throw inputError(file, 'file is empty')

  if (text.trimStart().startsWith('[')) {
    let value: unknown
    try {
      value = parseJson(text)
    } catch (e) {
      // The message says where, never what: the file may be anything a path points at.
      const at = e instanceof JsonSyntaxError ? e : null
      throw inputError(
        file,
        `${at?.element != null ? `row ${at.element}: ` : ''}${errorMessage(e)}`,
        at ? { row: at.element, line: at.line, column: at.column } : {},
      )
    }
    if (!Array.isArray(value)) throw inputError(file, 'expected a JSON array of rows')
    if (value.length === 0) throw inputError(file, 'the JSON array has no rows')
    return { file, layout: 'json-array', records: value.map((v, i) => ({ row: i + 1, value: v })) }
  }

  const records: JsonRecord[] = []
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    if (line.trim() === '') continue
    try {
      records.push({ row: i + 1, value: parseJson(line) })
    } catch (e) {
      // A pretty-printed single object is not JSONL: say so rather than blame line 1.
      if (records.length === 0 && isWholeJsonObject(text)) {
        throw inputError(
          file,
          'expected a JSON array of rows or JSONL (one JSON object per line), found one JSON object',
        )
      }
      const column = e instanceof JsonSyntaxError ? e.column : undefined
      const what = e instanceof JsonSyntaxError ? `not valid JSON at column ${column}: ${e.what}` : errorMessage(e)
      throw inputError(file, `row ${i + 1}: ${what}`, { row: i + 1, line: i + 1, column })
    }
  }
  return { file, layout: 'jsonl', records }
}

/** Loads prompts: test_prompt.json layout or JSONL of {id?, prompt}. Ids default to the row number. */
export async function loadPromptsFile(file: string): Promise<PromptRow[]> {
  const { records } = await readJsonRecords(file)
  const rows: PromptRow[] = []
  const seen = new Map<string, number>()
  for (const { row, value } of records) {
    if (!isPlainObject(value)) throw rowError(file, row, undefined, 'expected an object with a "prompt" field')
    const id = readId(file, row, value)
    const where = id ?? undefined
    const prompt = value.prompt
    if (prompt === undefined) throw rowError(file, row, where, 'field "prompt" is missing', 'prompt')
    if (typeof prompt !== 'string' || prompt.trim() === '') {
      throw rowError(file, row, where, 'field "prompt" must be a non-empty string', 'prompt')
    }
    const finalId = id ?? row
    checkUniqueId(file, row, finalId, seen)
    rows.push({ id: finalId, prompt })
  }
  return rows
}

// ---------------------------------------------------------------------------------------------------------------
// Shared validation helpers (preferenceFile.ts uses them too).

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** The row's optional id: an integer or a non-empty string. */
export function readId(file: string, row: number, value: Record<string, unknown>): RecordId | null {
  const id = value.id
  if (id === undefined || id === null) return null
  if ((typeof id === 'number' && Number.isFinite(id)) || (typeof id === 'string' && id.trim() !== '')) return id
  throw rowError(file, row, undefined, 'field "id" must be a number or a non-empty string', 'id')
}

export function checkUniqueId(file: string, row: number, id: RecordId, seen: Map<string, number>): void {
  const key = `${typeof id}:${id}`
  const first = seen.get(key)
  if (first !== undefined) {
    throw rowError(file, row, id, `field "id" duplicates the id of row ${first}`, 'id')
  }
  seen.set(key, row)
}

/** `FILE: row N (id X): message`, with file/row/id/field in details for the UI. */
export function rowError(
  file: string,
  row: number,
  id: RecordId | undefined,
  message: string,
  field?: string,
): StudioError {
  const idText = id === undefined ? '' : ` (id ${quoted(id)})`
  return new StudioError('E_BAD_INPUT', `${file}: row ${row}${idText}: ${message}`, {
    details: { file, row, id, field },
  })
}

function inputError(file: string, message: string, details: Record<string, unknown> = {}): StudioError {
  return new StudioError('E_BAD_INPUT', `${file}: ${message}`, { details: { file, ...details } })
}

function isWholeJsonObject(text: string): boolean {
  try {
    return isPlainObject(JSON.parse(text))
  } catch {
    return false
  }
}

/** Byte offset of the first byte that is not part of valid UTF-8 (RFC 3629: no overlongs, surrogates or > U+10FFFF), or -1. */
export function firstInvalidUtf8(b: Uint8Array): number {
  for (let i = 0; i < b.length;) {
    const c = b[i]!
    if (c < 0x80) {
      i++
      continue
    }
    const n = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1
    if (n < 0 || i + n >= b.length) return i // not a lead byte, or the sequence runs past the end
    const c1 = b[i + 1]!
    const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80
    const hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf
    if (c1 < lo || c1 > hi) return i
    for (let k = 2; k <= n; k++) if ((b[i + k]! & 0xc0) !== 0x80) return i
    i += n + 1
  }
  return -1
}

/** "FILE: row N: field "prompt": invalid UTF-8 at byte B": the row and field that hold the bad bytes. */
function invalidUtf8Error(file: string, bytes: Buffer, byteOffset: number): StudioError {
  const text = bytes.toString('utf8')
  const charOffset = bytes.subarray(0, byteOffset).toString('utf8').length
  const start = text.charCodeAt(0) === 0xfeff ? 1 : 0
  let row: number | null
  let field: string | null
  if (text.slice(start).trimStart().startsWith('[')) {
    ;({ element: row, field } = jsonPathAt(text.slice(start), charOffset - start))
  } else {
    const lineStart = text.lastIndexOf('\n', charOffset - 1) + 1
    const lineEnd = text.indexOf('\n', charOffset)
    row = text.slice(0, lineStart).split('\n').length
    field = jsonPathAt(text.slice(lineStart, lineEnd < 0 ? undefined : lineEnd), charOffset - lineStart).field
  }
  // The field path is made of the file's own keys: quoted (escaped, cut) like any value from a file (found by fuzzing).
  const where = `${row !== null ? `row ${row}: ` : ''}${field !== null ? `field ${quoted(field, 200)}: ` : ''}`
  return new StudioError(
    'E_BAD_INPUT',
    `${file}: ${where}invalid UTF-8 at byte ${byteOffset}; save the file as UTF-8`,
    {
      details: { file, row, field, byteOffset },
    },
  )
}
