// A run's record of its model folder (config.json's model_files), and what changed since (docs/resume.md): small
// files by sha256, large weight files by size and a sampled digest, so a copied model still matches and a rewritten
// one does not, without reading gigabytes of weights.
import { createHash } from 'node:crypto'
import { closeSync, openSync, readFileSync, readSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

export interface ModelFileRecord {
  name: string
  size: number
  /** sha256 of the whole file, or (sampled: true) of its size and SAMPLES slices spread over it. */
  sha256: string
  sampled: boolean
}

const WHOLE_LIMIT = 16 * 1024 * 1024
const SAMPLES = 16
const SAMPLE_BYTES = 64 * 1024

export function sha256File(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex')
}

/** The digest of a large file: its size and 16 slices of 64 KiB from the first to the last byte. */
function sampledSha256(file: string, size: number): string {
  const h = createHash('sha256').update(`size ${size}\n`)
  const buf = Buffer.alloc(SAMPLE_BYTES)
  const fd = openSync(file, 'r')
  try {
    for (let i = 0; i < SAMPLES; i++) {
      const at = Math.floor(((size - SAMPLE_BYTES) * i) / (SAMPLES - 1))
      const n = readSync(fd, buf, 0, SAMPLE_BYTES, at)
      h.update(buf.subarray(0, n))
    }
  } finally {
    closeSync(fd)
  }
  return h.digest('hex')
}

/** What the engine and the tokenizer read: configs, weights, tokenizer and template files (not READMEs, images). */
const MODEL_FILE = /\.(json|safetensors|model|txt|jinja|tiktoken)$/

/** Every such regular file at the top of the model folder (links followed, hidden files skipped), by name. */
export function recordModelFiles(dir: string): ModelFileRecord[] {
  const out: ModelFileRecord[] = []
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith('.') || !MODEL_FILE.test(name)) continue
    const st = statSync(join(dir, name), { throwIfNoEntry: false })
    if (!st?.isFile()) continue
    const sampled = st.size > WHOLE_LIMIT
    out.push({
      name,
      size: st.size,
      sha256: sampled ? sampledSha256(join(dir, name), st.size) : sha256File(join(dir, name)),
      sampled,
    })
  }
  return out
}

/** What differs between a recorded folder and the folder now, one phrase per file; empty when they match. */
export function modelFileChanges(recorded: readonly ModelFileRecord[], dir: string): string[] {
  const now = new Map(recordModelFiles(dir).map((r) => [r.name, r]))
  const changes: string[] = []
  for (const r of recorded) {
    const n = now.get(r.name)
    if (!n) changes.push(`${r.name} is gone`)
    else if (n.size !== r.size) changes.push(`${r.name} changed size (${r.size} -> ${n.size} bytes)`)
    else if (n.sha256 !== r.sha256) changes.push(`${r.name} has other contents`)
    now.delete(r.name)
  }
  for (const name of now.keys()) changes.push(`${name} is new`)
  return changes
}
