// Models already downloaded to the local Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub or
// ~/.cache/huggingface/hub): models--{org}--{name}/snapshots/{revision}/ folders that hold a config.json.
import { existsSync } from 'node:fs'
import { readdir, readFile, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'

export interface CachedModelEntry {
  repoId: string
  revision: string
  dir: string
  architecture: string | null
  /** Bytes of the snapshot's files (symlinks into blobs/ followed). */
  sizeBytes: number
}

export function hfHubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE
  if (env.HF_HOME) return join(env.HF_HOME, 'hub')
  const xdg = env.XDG_CACHE_HOME
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), '.cache'), 'huggingface', 'hub')
}

/** Lists cached model snapshots; the revision refs/main points at comes first, newest others after. */
export async function listCachedModels(cacheDir = hfHubCacheDir()): Promise<CachedModelEntry[]> {
  if (!existsSync(cacheDir)) return []
  const out: CachedModelEntry[] = []
  for (const repo of (await readdir(cacheDir)).sort()) {
    if (!repo.startsWith('models--')) continue
    const repoDir = join(cacheDir, repo)
    const repoId = repo.slice('models--'.length).replace('--', '/')
    const main = await readFile(join(repoDir, 'refs', 'main'), 'utf8').then(
      (s) => s.trim(),
      () => null,
    )
    const snapshots = await readdir(join(repoDir, 'snapshots')).catch(() => [] as string[])
    const ordered = main && snapshots.includes(main) ? [main] : snapshots
    for (const revision of ordered) {
      const dir = join(repoDir, 'snapshots', revision)
      const config = await readConfig(join(dir, 'config.json'))
      if (!config) continue
      const archs = config.architectures
      const architecture = Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : null
      out.push({ repoId, revision, dir, architecture, sizeBytes: await folderBytes(dir) })
    }
  }
  return out
}

/** A snapshot's config.json as an object, or null when it is missing or malformed: one broken download in the cache
 * must not hide the others (a parse error used to reject the whole listing). */
async function readConfig(file: string): Promise<Record<string, unknown> | null> {
  const text = await readFile(file, 'utf8').catch(() => null)
  if (text === null) return null
  try {
    const v: unknown = JSON.parse(text)
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null
  } catch {
    return null
  }
}

async function folderBytes(dir: string): Promise<number> {
  let total = 0
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const s = await stat(join(dir, name)).catch(() => null)
    if (s?.isFile()) total += s.size
    else if (s?.isDirectory()) total += await folderBytes(join(dir, name))
  }
  return total
}
