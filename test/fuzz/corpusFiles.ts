// The committed fuzz inputs (docs/fuzzing.md): test/fuzz/seeds/<target>/ (small hand-written seeds) and
// test/fuzz/regressions/<target>/ (inputs that once broke the property, named <kind>-<sha1>); the same layout as
// native/fuzz/. Read by the fuzz runner (as starting corpus) and by the replay test in npm test.
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { repoRoot } from '../helpers/sharedPath'

export const JS_FUZZ_DIR = path.join(repoRoot, 'test', 'fuzz')
export const NATIVE_FUZZ_DIR = path.join(repoRoot, 'native', 'fuzz')

export interface CorpusFile {
  file: string
  bytes: Uint8Array
}

/** Files of <root>/<kind>/<target>/, sorted; none when the folder is absent. */
export function committedInputs(root: string, kind: 'seeds' | 'regressions', target: string): CorpusFile[] {
  const dir = path.join(root, kind, target)
  if (!existsSync(dir)) return []
  return readdirSync(dir)
    .filter((f) => !f.startsWith('.'))
    .sort()
    .map((f) => ({ file: path.join(dir, f), bytes: new Uint8Array(readFileSync(path.join(dir, f))) }))
}

export function sha1(bytes: Uint8Array): string {
  return createHash('sha1').update(bytes).digest('hex')
}

/** Saves an input that broke the property as <root>/regressions/<target>/<kind>-<sha1>; false when it was there. */
export function saveRegression(
  root: string,
  target: string,
  kind: string,
  bytes: Uint8Array,
): { file: string; isNew: boolean } {
  const dir = path.join(root, 'regressions', target)
  const file = path.join(dir, `${kind}-${sha1(bytes)}`)
  if (existsSync(file)) return { file, isNew: false }
  mkdirSync(dir, { recursive: true })
  writeFileSync(file, bytes)
  return { file, isNew: true }
}
