// The per-step logs of a run (metrics.jsonl, steps.jsonl), cut back to a checkpoint on resume: rows after the
// checkpoint's step are dropped (they are logged again as the steps are redone), so no step is ever listed twice.
import { existsSync, readFileSync } from 'node:fs'
import { basename } from 'node:path'
import { StudioError } from '../errors'
import { writeFileAtomic } from '../fsAtomic'

/**
 * Rewrites `file` (atomically) with its rows for steps 1..step, in order. A torn last line (a process killed while
 * appending) is dropped. Refuses, naming the file, when one of those rows is missing or out of order: the log and the
 * checkpoint then do not belong together.
 */
export function truncateStepLog(file: string, step: number): void {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : ''
  const kept: string[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length && kept.length < step; i++) {
    const line = lines[i]!
    if (line.trim() === '') continue
    let row: { step?: unknown }
    try {
      row = JSON.parse(line) as { step?: unknown }
    } catch {
      break // a torn line can only be the last one written
    }
    if (row.step !== kept.length + 1) break
    kept.push(line)
  }
  if (kept.length < step) {
    throw new StudioError(
      'E_BAD_INPUT',
      `${file} holds steps 1-${kept.length} in order, but the checkpoint is at step ${step}: ${basename(file)} and the checkpoint do not belong together`,
      { details: { file } },
    )
  }
  writeFileAtomic(file, kept.map((l) => l + '\n').join(''))
}
