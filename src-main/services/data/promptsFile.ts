// Prompts files for `generate` / `run --test-prompts` (architecture.md §3): the HW6 test_prompt.json layout (a JSON
// array of {id, prompt}) or JSONL of {id?, prompt}. Also the JSON/JSONL record reader that preferenceFile.ts shares.
import { readFile } from 'node:fs/promises';
import { StudioError, errorMessage } from '../errors';
import { findJsonFault } from '../jsonSyntax';
import { quoted } from '../messageText';

export type RecordId = number | string;

export interface PromptRow {
  id: RecordId;
  prompt: string;
}

/** One parsed record and where it came from: `row` is the 1-based array index (JSON) or line number (JSONL). */
export interface JsonRecord {
  row: number;
  value: unknown;
}

export interface JsonRecords {
  file: string;
  layout: 'json-array' | 'jsonl';
  records: JsonRecord[];
}

/**
 * Reads a JSON array file or a JSONL file. A file whose first non-blank character is '[' is one JSON array;
 * anything else is JSONL (one value per line, blank lines skipped, row = line number).
 */
export async function readJsonRecords(file: string): Promise<JsonRecords> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EISDIR' ? 'is a directory' : `cannot be read: ${errorMessage(e)}`;
    throw new StudioError('E_BAD_INPUT', `${file}: file ${why}`, { cause: e, details: { file } });
  }
  text = text.replace(/^\uFEFF/, '');
  if (text.trim() === '') throw inputError(file, 'file is empty');

  if (text.trimStart().startsWith('[')) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      // Where, in our words: the engine's own message pastes file content (control characters included).
      const f = findJsonFault(text);
      const row = f?.element ?? undefined;
      const where = f ? ` at line ${f.line}, column ${f.column}${row ? ` (in row ${row})` : ''}: ${f.reason}` : '';
      throw inputError(file, `not valid JSON${where}`, { row, line: f?.line, column: f?.column });
    }
    if (!Array.isArray(value)) throw inputError(file, 'expected a JSON array of rows');
    if (value.length === 0) throw inputError(file, 'the JSON array has no rows');
    return { file, layout: 'json-array', records: value.map((v, i) => ({ row: i + 1, value: v })) };
  }

  const records: JsonRecord[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    try {
      records.push({ row: i + 1, value: JSON.parse(line) });
    } catch {
      // A pretty-printed single object is not JSONL: say so rather than blame line 1.
      if (records.length === 0 && isWholeJsonObject(text)) {
        throw inputError(file, 'expected a JSON array of rows or JSONL (one JSON object per line), found one JSON object');
      }
      const f = findJsonFault(line);
      throw inputError(file, `row ${i + 1}: not valid JSON${f ? ` at column ${f.column}: ${f.reason}` : ''}`, { row: i + 1, column: f?.column });
    }
  }
  return { file, layout: 'jsonl', records };
}

/** Loads prompts: test_prompt.json layout or JSONL of {id?, prompt}. Ids default to the row number. */
export async function loadPromptsFile(file: string): Promise<PromptRow[]> {
  const { records } = await readJsonRecords(file);
  const rows: PromptRow[] = [];
  const seen = new Map<string, number>();
  for (const { row, value } of records) {
    if (!isPlainObject(value)) throw rowError(file, row, undefined, 'expected an object with a "prompt" field');
    const id = readId(file, row, value);
    const where = id ?? undefined;
    const prompt = value.prompt;
    if (prompt === undefined) throw rowError(file, row, where, 'field "prompt" is missing', 'prompt');
    if (typeof prompt !== 'string' || prompt.trim() === '') {
      throw rowError(file, row, where, 'field "prompt" must be a non-empty string', 'prompt');
    }
    const finalId = id ?? row;
    checkUniqueId(file, row, finalId, seen);
    rows.push({ id: finalId, prompt });
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------------------
// Shared validation helpers (preferenceFile.ts uses them too).

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The row's optional id: an integer or a non-empty string. */
export function readId(file: string, row: number, value: Record<string, unknown>): RecordId | null {
  const id = value.id;
  if (id === undefined || id === null) return null;
  if ((typeof id === 'number' && Number.isFinite(id)) || (typeof id === 'string' && id.trim() !== '')) return id;
  throw rowError(file, row, undefined, 'field "id" must be a number or a non-empty string', 'id');
}

export function checkUniqueId(file: string, row: number, id: RecordId, seen: Map<string, number>): void {
  const key = `${typeof id}:${id}`;
  const first = seen.get(key);
  if (first !== undefined) {
    throw rowError(file, row, id, `field "id" duplicates the id of row ${first}`, 'id');
  }
  seen.set(key, row);
}

/** `FILE: row N (id X): message`, with file/row/id/field in details for the UI. */
export function rowError(file: string, row: number, id: RecordId | undefined, message: string, field?: string): StudioError {
  const idText = id === undefined ? '' : ` (id ${quoted(id)})`;
  return new StudioError('E_BAD_INPUT', `${file}: row ${row}${idText}: ${message}`, { details: { file, row, id, field } });
}

function inputError(file: string, message: string, details: Record<string, unknown> = {}): StudioError {
  return new StudioError('E_BAD_INPUT', `${file}: ${message}`, { details: { file, ...details } });
}

function isWholeJsonObject(text: string): boolean {
  try {
    return isPlainObject(JSON.parse(text));
  } catch {
    return false;
  }
}
