// The pair inspector and token view of a run, read from its run directory (docs/insights.md): pairs.jsonl,
// pairs_tokens.jsonl and responses_tokens.jsonl. No engine: past runs open as they are.
import { createReadStream, existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { createInterface } from 'node:readline'
import type { AnswerTokensRow, PairInsightRow, PairTokensRow, RunPairs } from '../../src-shared/api/contract'
import { ANSWER_TOKENS_FILE, PAIRS_FILE, PAIRS_TOKENS_FILE } from '../../src-shared/insights/insightTypes'
import { StudioError } from '../services/errors'

function parseLines<T>(text: string, file: string): T[] {
  const out: T[] = []
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return
    try {
      out.push(JSON.parse(line) as T)
    } catch {
      throw new StudioError('E_BAD_INPUT', `${file}: line ${i + 1} is not valid JSON`, {
        details: { file, line: i + 1 },
      })
    }
  })
  return out
}

/** Line `index` (0-based) of a JSONL file, read without loading the whole file (token files can be large). */
async function jsonlLine<T>(file: string, index: number): Promise<T | null> {
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity })
  let i = 0
  try {
    for await (const line of lines) {
      if (line.trim() === '') continue
      if (i++ === index) return JSON.parse(line) as T
    }
  } finally {
    lines.close()
  }
  return null
}

export async function runPairs(dir: string): Promise<RunPairs> {
  // A run directory without a readable config still shows its pairs.
  const config = await readFile(join(dir, 'config.json'), 'utf8')
    .then((t) => JSON.parse(t) as { params?: { beta?: number; lossType?: string } })
    .catch(() => null)
  const pairsFile = join(dir, PAIRS_FILE)
  const pairs = existsSync(pairsFile) ? parseLines<PairInsightRow>(await readFile(pairsFile, 'utf8'), pairsFile) : null
  const answersFile = join(dir, ANSWER_TOKENS_FILE)
  const answers = existsSync(answersFile)
    ? parseLines<AnswerTokensRow>(await readFile(answersFile, 'utf8'), answersFile).map((a) => ({
        index: a.index,
        id: a.id,
        prompt: a.prompt,
      }))
    : []
  if (pairs === null && !existsSync(join(dir, 'config.json')) && !existsSync(join(dir, 'metrics.jsonl'))) {
    throw new StudioError(
      'E_BAD_INPUT',
      `${dir} is not a run directory (no config.json, metrics.jsonl or ${PAIRS_FILE})`,
    )
  }
  return {
    runId: basename(dir),
    dir,
    beta: config?.params?.beta ?? null,
    lossType: config?.params?.lossType ?? null,
    pairs,
    answers,
  }
}

export async function runPairTokens(dir: string, index: number): Promise<PairTokensRow> {
  const file = join(dir, PAIRS_TOKENS_FILE)
  if (!existsSync(file))
    throw new StudioError(
      'E_BAD_INPUT',
      `run ${basename(dir)} has no ${PAIRS_TOKENS_FILE} (it has not finished training, or predates the token view)`,
    )
  const row = await jsonlLine<PairTokensRow>(file, index)
  if (!row) throw new StudioError('E_BAD_INPUT', `run ${basename(dir)} has no pair ${index + 1}`)
  return row
}

export async function runAnswerTokens(dir: string, index: number): Promise<AnswerTokensRow> {
  const file = join(dir, ANSWER_TOKENS_FILE)
  if (!existsSync(file))
    throw new StudioError('E_BAD_INPUT', `run ${basename(dir)} has no ${ANSWER_TOKENS_FILE} (no trained answers yet)`)
  const row = await jsonlLine<AnswerTokensRow>(file, index)
  if (!row) throw new StudioError('E_BAD_INPUT', `run ${basename(dir)} has no answer ${index + 1}`)
  return row
}
