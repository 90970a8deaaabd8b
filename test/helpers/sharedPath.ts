// Where tests find the real shared data (tokenizers, models, HW6 dataset): env DPO_SHARED, else ../shared beside
// the repository root (docs/architecture.md#testing-and-gpu-builds). Nothing from there is ever copied into the
// project.
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository root (this file is test/helpers/sharedPath.ts). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

/** The shared directory: $DPO_SHARED or <repo>/../shared. */
export function sharedDir(): string {
  const fromEnv = process.env.DPO_SHARED
  return fromEnv && fromEnv.length > 0 ? path.resolve(fromEnv) : path.resolve(repoRoot, '../shared')
}

/** A path inside the shared directory. */
export function sharedPath(...parts: string[]): string {
  return path.join(sharedDir(), ...parts)
}
