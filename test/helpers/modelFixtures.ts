// Broken and copied model directories for error tests, made in a temp folder from the shared stories260K files
// (copied at test time, never committed).
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { sharedPath } from './sharedPath'

const FILES = ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']

export function tempDir(prefix = 'dpo-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix))
}

/** A copy of stories260K, optionally without some files. */
export function copyStories(omit: string[] = []): string {
  const dir = tempDir('dpo-model-')
  for (const f of FILES) if (!omit.includes(f)) copyFileSync(sharedPath('models/stories260K', f), path.join(dir, f))
  return dir
}

/** Header length (8 bytes LE) and header JSON of a safetensors file. */
export function readSafetensorsHeader(file: string): { headerLen: number; header: Record<string, any>; bytes: Buffer } {
  const bytes = readFileSync(file)
  const headerLen = Number(bytes.readBigUInt64LE(0))
  const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8'))
  return { headerLen, header, bytes }
}

/** Rewrites a safetensors file with a modified header (padded to the same length so data offsets stay valid). */
export function rewriteHeader(file: string, edit: (h: Record<string, any>) => void): void {
  const { headerLen, header, bytes } = readSafetensorsHeader(file)
  edit(header)
  let text = JSON.stringify(header)
  if (text.length > headerLen) throw new Error('edited header is longer than the original')
  text = text.padEnd(headerLen, ' ')
  const out = Buffer.concat([bytes.subarray(0, 8), Buffer.from(text, 'utf8'), bytes.subarray(8 + headerLen)])
  writeFileSync(file, out)
}
