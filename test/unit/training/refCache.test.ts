// Reference log-probs cache: what the fingerprint covers, per-pair keys (and the swapped pair's), per-token values
// stored exactly, atomic rewrites merged under a lock across processes, corrupt files and entries whose sums do not
// match their tokens ignored.
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import {
  RefLogpsCache,
  dataFingerprint,
  modelFingerprint,
  pairKey,
  refCacheDir,
  sumInOrder,
  swappedPairKey,
  type RefLogps,
} from '../../../src-main/services/training/refCache'
import { tempDir } from '../../helpers/modelFixtures'
import { repoRoot } from '../../helpers/sharedPath'

function modelDir(): string {
  const dir = tempDir('dpo-refmodel-')
  writeFileSync(path.join(dir, 'config.json'), '{"hidden_size": 64}')
  writeFileSync(path.join(dir, 'model.safetensors'), Buffer.alloc(64))
  writeFileSync(path.join(dir, 'tokenizer.json'), '{}')
  return dir
}

/** Values as the engine gives them: float32 per token, the sum their in-order double sum. */
function logps(chosen: number[], rejected: number[]): RefLogps {
  const chosenTokens = Float32Array.from(chosen)
  const rejectedTokens = Float32Array.from(rejected)
  return { chosen: sumInOrder(chosenTokens), rejected: sumInOrder(rejectedTokens), chosenTokens, rejectedTokens }
}

const model = (dir: string) => ({ modelDir: dir, quant: 'nf4', backend: 'cpu', engineVersion: '0.1.0' })
const pair = (ids: number[], labels = ids.map((x, i) => (i < 2 ? -100 : x))) => ({
  chosen: { ids, labels },
  rejected: { ids: [...ids, 9], labels: [...labels, 9] },
})

describe('modelFingerprint', () => {
  it('changes with config.json text, weight files, quant, backend and engine version, not with other files', () => {
    const dir = modelDir()
    const base = modelFingerprint(model(dir))
    expect(base).toMatch(/^[0-9a-f]{64}$/)
    expect(modelFingerprint(model(dir))).toBe(base)
    expect(modelFingerprint({ ...model(dir), quant: 'none' })).not.toBe(base)
    expect(modelFingerprint({ ...model(dir), backend: 'cuda' })).not.toBe(base)
    expect(modelFingerprint({ ...model(dir), engineVersion: '0.2.0' })).not.toBe(base)
    writeFileSync(path.join(dir, 'tokenizer.json'), '{"changed": true}')
    expect(modelFingerprint(model(dir))).toBe(base)
    // Same size, new mtime: a rewritten checkpoint is a different model as far as the cache knows.
    utimesSync(path.join(dir, 'model.safetensors'), new Date(2001, 1, 1), new Date(2001, 1, 1))
    const touched = modelFingerprint(model(dir))
    expect(touched).not.toBe(base)
    writeFileSync(path.join(dir, 'config.json'), '{"hidden_size": 65}')
    expect(modelFingerprint(model(dir))).not.toBe(touched)
  })
})

describe('pairKey / dataFingerprint', () => {
  it('depends on ids and labels of both sides', () => {
    const k = pairKey(pair([1, 5, 6, 7]))
    expect(pairKey(pair([1, 5, 6, 7]))).toBe(k)
    expect(pairKey({ ...pair([1, 5, 6, 7]), chosen: { ids: [1, 5, 6, 7], labels: [-100, -100, -100, 7] } })).not.toBe(k)
    expect(pairKey(pair([1, 5, 6, 8]))).not.toBe(k)
    // Int32Array and number[] give the same key.
    const p = pair([1, 5, 6, 7])
    expect(
      pairKey({
        chosen: { ids: Int32Array.from(p.chosen.ids), labels: Int32Array.from(p.chosen.labels) },
        rejected: p.rejected,
      }),
    ).toBe(k)
    expect(dataFingerprint([k, 'x'])).not.toBe(dataFingerprint(['x', k]))
  })
})

describe('RefLogpsCache', () => {
  const saved = process.env.DPO_STUDIO_CACHE
  afterEach(() => {
    if (saved === undefined) delete process.env.DPO_STUDIO_CACHE
    else process.env.DPO_STUDIO_CACHE = saved
  })

  it('lives under $DPO_STUDIO_CACHE/ref-logps when set', () => {
    process.env.DPO_STUDIO_CACHE = '/tmp/somewhere'
    expect(refCacheDir()).toBe('/tmp/somewhere/ref-logps')
    delete process.env.DPO_STUDIO_CACHE
    expect(refCacheDir()).toMatch(/dpo-studio[\\/]ref-logps$/)
  })

  it('stores per-pair entries in <fingerprint>.json and serves them to a later open', () => {
    const dir = tempDir('dpo-cache-')
    const m = model(modelDir())
    const c1 = RefLogpsCache.open(dir, m)
    expect(c1.size).toBe(0)
    const p1 = pair([1, 2, 3])
    const k1 = pairKey(p1)
    const k2 = pairKey(pair([1, 2, 4]))
    const v1 = logps([-12.5, -0.1, -3.3333333], [-0.2, -7.25])
    c1.set(k1, v1)
    c1.set(k2, { ...logps([-1], [-2]), chosen: -Infinity }) // not storable: recomputed next time
    c1.set(pairKey(pair([1, 9])), { chosen: -1, rejected: -2 }) // no per-token values: not stored either
    expect(c1.save()).toBeNull()
    expect(readdirSync(dir)).toEqual([`${modelFingerprint(m)}.json`])
    const c2 = RefLogpsCache.open(dir, m)
    expect(c2.size).toBe(1)
    // Exact doubles and float32 token values survive the file; the sums are the tokens' in-order sums.
    expect(c2.get(k1)).toEqual(v1)
    expect(c2.get(k1)!.chosenTokens![2]).toBe(Math.fround(-3.3333333))
    expect(c2.get(k2)).toBeUndefined()
    expect(c2.ignoredReason).toBeNull()
    // The same two sequences as (rejected, chosen): found through the swapped key, sides exchanged back.
    const swapped = { chosen: p1.rejected, rejected: p1.chosen }
    expect(c2.get(pairKey(swapped))).toBeUndefined()
    expect(c2.lookup(pairKey(swapped), swappedPairKey(swapped))).toEqual({
      chosen: v1.rejected,
      rejected: v1.chosen,
      chosenTokens: v1.rejectedTokens,
      rejectedTokens: v1.chosenTokens,
    })
    expect(c2.lookup(k1, swappedPairKey(p1))).toEqual(v1)
    // Another quantization is another file.
    expect(RefLogpsCache.open(dir, { ...m, quant: 'none' }).get(k1)).toBeUndefined()
  })

  it('ignores a corrupt file, says so, and rewrites it on save', () => {
    const dir = tempDir('dpo-cache-')
    const m = model(modelDir())
    const file = path.join(dir, `${modelFingerprint(m)}.json`)
    writeFileSync(file, '{"version": 2, "fingerprint": "abc", "entr')
    const c = RefLogpsCache.open(dir, m)
    expect(c.size).toBe(0)
    expect(c.ignoredReason).toMatch(/ignored the unreadable reference cache/)
    expect(c.save()).toBeNull() // rewritten even with no new entries
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ version: 2, fingerprint: modelFingerprint(m) })
    // Malformed entries are skipped, and so is one whose sum is not the sum of its tokens.
    const good = logps([-1, -0.5], [-2])
    const c1 = RefLogpsCache.open(dir, m)
    c1.set(pairKey(pair([4, 4])), good)
    c1.set(pairKey(pair([4, 5])), good)
    expect(c1.save()).toBeNull()
    const body = JSON.parse(readFileSync(file, 'utf8'))
    body.entries[pairKey(pair([4, 5]))][0] = -1.25
    body.entries.bad = body.entries[pairKey(pair([4, 4]))]
    body.entries[pairKey(pair([5]))] = ['x', 1, '', '']
    writeFileSync(file, JSON.stringify(body))
    const c2 = RefLogpsCache.open(dir, m)
    expect(c2.size).toBe(1)
    expect(c2.get(pairKey(pair([4, 4])))).toEqual(good)
    // A version-1 file (sums only) under this name is not read.
    writeFileSync(
      file,
      JSON.stringify({ version: 1, fingerprint: modelFingerprint(m), entries: { [pairKey(pair([4, 4]))]: [-1, -2] } }),
    )
    expect(RefLogpsCache.open(dir, m).size).toBe(0)
  })

  it('with no folder computes everything and writes nothing', () => {
    const c = RefLogpsCache.open(null, model(modelDir()))
    c.set(pairKey(pair([1])), logps([-1], [-1]))
    expect(c.save()).toBeNull()
    expect(c.file).toBeNull()
  })

  it('reports (does not throw) when the cache cannot be written', () => {
    const blocker = path.join(tempDir('dpo-cache-'), 'file')
    writeFileSync(blocker, 'not a folder')
    const c = RefLogpsCache.open(path.join(blocker, 'sub'), model(modelDir()))
    c.set(pairKey(pair([1])), logps([-1], [-1]))
    expect(c.save()).toMatch(/could not write the reference cache/)
  })
})

describe('RefLogpsCache shared by two processes', () => {
  it("two caches opened on the same file keep each other's entries (merge on save)", () => {
    const dir = tempDir('dpo-refshare-')
    const m = modelDir()
    const a = RefLogpsCache.open(dir, model(m))
    const b = RefLogpsCache.open(dir, model(m))
    const ka = pairKey(pair([1, 2, 3, 4]))
    const kb = pairKey(pair([1, 2, 3, 5]))
    const va = logps([-1, -0.25], [-2])
    const vb = logps([-3], [-4, -0.125, -1.5])
    a.set(ka, va)
    b.set(kb, vb)
    expect(a.save()).toBeNull()
    expect(b.save()).toBeNull()
    // Version-2 entries from the other process are merged whole: sums and per-token values, and the swapped lookup.
    const reread = RefLogpsCache.open(dir, model(m))
    expect(reread.get(ka)).toEqual(va)
    expect(reread.get(kb)).toEqual(vb)
    const sb = { chosen: pair([1, 2, 3, 5]).rejected, rejected: pair([1, 2, 3, 5]).chosen }
    expect(reread.lookup(pairKey(sb), swappedPairKey(sb))).toEqual({
      chosen: vb.rejected,
      rejected: vb.chosen,
      chosenTokens: vb.rejectedTokens,
      rejectedTokens: vb.chosenTokens,
    })
    expect(JSON.parse(readFileSync(reread.file!, 'utf8'))).toMatchObject({ version: 2 })
    expect(readdirSync(dir).filter((f) => f.endsWith('.lock'))).toEqual([])
  })

  it('two real processes saving at the same time lose nothing (lock file + merge)', async () => {
    const dir = tempDir('dpo-refprocs-')
    const m = modelDir()
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm')).href
    const writer = path.join(repoRoot, 'test/helpers/refCacheWriter.ts')
    const run = (tag: string) =>
      new Promise<number | null>((resolve) =>
        spawn(process.execPath, ['--import', tsx, writer, dir, m, tag, '25', '8'], { stdio: 'inherit' }).on(
          'close',
          resolve,
        ),
      )
    expect(await Promise.all([run('a'), run('b')])).toEqual([0, 0])
    const cache = RefLogpsCache.open(dir, model(m))
    expect(cache.size).toBe(2 * 25 * 8)
    // Every entry came back with its per-token values (readEntry drops one whose sums do not match them).
    const k = (tag: string, r: number, i: number) => createHash('sha256').update(`${tag}-${r}-${i}`).digest('hex')
    expect(cache.get(k('b', 24, 7))?.rejectedTokens).toEqual(Float32Array.from([-24, -7 / 16, -1]))
  })
})
